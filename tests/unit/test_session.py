"""Sessions and the hub on a real (memory) broker: gap-free, duplicate-free delivery per channel,
recovery on gaps and broker resyncs, ephemeral coalescing, and the slow-consumer signal."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from realtime.broker import HistoryPolicy, Publication, StreamPosition
from realtime.broker_memory import MemoryBroker
from realtime.hub import Hub
from realtime.send_queue import SendQueue
from realtime.session import Session


async def drain(send_queue: SendQueue) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while len(send_queue):
        items.extend(orjson.loads(f) for f in await send_queue.get())
    return items


async def pump(hub: Hub, broker: MemoryBroker) -> None:
    """Hand every queued broker delivery to the hub, then let recovery tasks run."""
    for _ in range(3):
        while True:
            try:
                delivery = await asyncio.wait_for(broker.receive(), 0.05)
            except TimeoutError:
                break
            hub.dispatch(delivery)
        await asyncio.sleep(0.01)


def offsets(items: list[dict[str, Any]], channel: str) -> list[int]:
    return [f["offset"] for f in items if f.get("op") == "event" and f["ch"] == channel and "offset" in f]


def new_session(
    broker: MemoryBroker, name: str = "s", max_frames: int = 1000
) -> tuple[Session, SendQueue, list[str]]:
    send_queue = SendQueue(max_frames=max_frames)
    overflowed: list[str] = []
    return Session(name, broker, send_queue, lambda: overflowed.append(name)), send_queue, overflowed


async def subscribe(hub: Hub, session: Session, channel: str, since: StreamPosition | None = None) -> None:
    session.begin(channel)
    await hub.add(channel, session)
    await session.start(channel, since, ref=None)


async def test_live_delivery_is_in_order_and_starts_after_the_subscription() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    await broker.publish("sos", "t", {"before": True})
    session, send_queue, _ = new_session(broker)
    await subscribe(hub, session, "sos")
    for i in range(5):
        await broker.publish("sos", "t", {"i": i})
    await pump(hub, broker)
    items = await drain(send_queue)
    assert items[0]["op"] == "subscribed" and items[0]["position"]["offset"] == 1
    assert offsets(items, "sos") == [2, 3, 4, 5, 6]


async def test_subscribe_with_since_recovers_exactly_what_was_missed() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    first = [await broker.publish("dispatch", "t", {"i": i}) for i in range(6)]
    session, send_queue, _ = new_session(broker)
    await subscribe(hub, session, "dispatch", since=first[2].position)
    await broker.publish("dispatch", "t", {"i": 6})
    await pump(hub, broker)
    items = await drain(send_queue)
    assert items[0]["recovered"] is True
    assert offsets(items, "dispatch") == [4, 5, 6, 7]


async def test_a_gap_in_live_delivery_is_filled_from_history() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    session, send_queue, _ = new_session(broker)
    await subscribe(hub, session, "sos")
    await broker.publish("sos", "t", {"i": 1})
    await pump(hub, broker)
    # Publications 2 and 3 never reach this process live (as if Redis pub/sub dropped them) ...
    lost = [await broker.publish("sos", "t", {"i": i}) for i in (2, 3)]
    for _ in lost:
        await broker.receive()
    # ... and 4 arrives: the session sees the jump and recovers 2 and 3 before delivering 4.
    await broker.publish("sos", "t", {"i": 4})
    await pump(hub, broker)
    items = await drain(send_queue)
    assert offsets(items, "sos") == [1, 2, 3, 4]


async def test_an_unrecoverable_gap_tells_the_client_to_reread() -> None:
    broker = MemoryBroker(history=HistoryPolicy(size=2))
    hub = Hub(broker)
    session, send_queue, _ = new_session(broker)
    await subscribe(hub, session, "sos")
    for i in range(5):  # 1..5 published, none delivered live; history keeps only 4 and 5
        await broker.publish("sos", "t", {"i": i})
        await broker.receive()
    await broker.publish("sos", "t", {"i": 5})
    await pump(hub, broker)
    items = await drain(send_queue)
    told = [f for f in items if f["op"] == "subscribed" and f["recovered"] is False and "reason" in f]
    assert told and told[0]["reason"] == "offset_too_old"
    # The client re-reads the state (which includes everything up to the position) and continues
    # after it: nothing at or below the position is sent, everything after it is.
    assert told[0]["position"]["offset"] == 6
    assert offsets(items, "sos") == []
    await broker.publish("sos", "t", {"i": 6})
    await pump(hub, broker)
    assert offsets(await drain(send_queue), "sos") == [7]


async def test_broker_overflow_resync_recovers_every_session() -> None:
    broker = MemoryBroker(queue_size=3)
    hub = Hub(broker)
    a, box_a, _ = new_session(broker, "a")
    b, box_b, _ = new_session(broker, "b")
    await subscribe(hub, a, "dispatch")
    await subscribe(hub, b, "dispatch")
    for i in range(10):  # the process's delivery queue holds 3: most are dropped, then a Resync comes
        await broker.publish("dispatch", "t", {"i": i})
    assert broker.dropped > 0
    await pump(hub, broker)
    assert offsets(await drain(box_a), "dispatch") == list(range(1, 11))
    assert offsets(await drain(box_b), "dispatch") == list(range(1, 11))


async def test_ephemeral_positions_coalesce_and_never_trigger_recovery() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    session, send_queue, _ = new_session(broker)
    await subscribe(hub, session, "call:1")
    await broker.publish("call:1", "call.status", {"s": "assigned"})
    for i in range(20):
        await broker.publish_ephemeral("call:1", "doctor.position", {"i": i})
    await broker.publish("call:1", "call.status", {"s": "en_route"})
    await pump(hub, broker)
    items = await drain(send_queue)
    positions = [f["data"]["i"] for f in items if f.get("type") == "doctor.position"]
    assert positions == [19]  # the reader was slow: it gets the latest position, not 20 of them
    assert offsets(items, "call:1") == [1, 2]


async def test_overflow_signals_once_and_stops_queueing() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    session, send_queue, overflowed = new_session(broker, max_frames=5)
    await subscribe(hub, session, "sos")
    for i in range(20):
        await broker.publish("sos", "t", {"i": i})
    await pump(hub, broker)
    assert overflowed == ["s"]
    assert len(send_queue) == 5


async def test_unsubscribed_sessions_get_nothing_more() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    session, send_queue, _ = new_session(broker)
    await subscribe(hub, session, "sos")
    session.forget("sos")
    await hub.remove("sos", session)
    assert broker.subscriptions() == {}
    await broker.publish("sos", "t", {})
    await pump(hub, broker)
    assert offsets(await drain(send_queue), "sos") == []


async def test_watched_event_types_are_reported_after_their_frame_live_and_recovered() -> None:
    """``Session.watch`` (the gateway ends call subscriptions with it): the callback sees every
    regular publication of a watched type the client gets, live, recovered with ``since`` or filled
    in after a gap, right after its frame was queued; other types and ephemeral ones never."""
    broker = MemoryBroker()
    hub = Hub(broker)
    seen: list[tuple[int, int]] = []  # (offset of the watched publication, frames queued when called)

    def watched(session: Session, publication: Publication) -> None:
        seen.append((publication.offset, len(session.send_queue)))

    send_queue = SendQueue()
    session = Session("s", broker, send_queue, lambda: None, {"call.unassigned": watched})
    first = await broker.publish("doctor:d", "call.unassigned", {"call": "c0"})  # offset 1
    await broker.publish("doctor:d", "doctor.status", {})  # 2
    await subscribe(hub, session, "doctor:d", since=StreamPosition(0, first.epoch))  # recovers 1, 2
    await broker.publish("doctor:d", "call.unassigned", {"call": "c1"})  # 3, live
    await broker.publish_ephemeral("doctor:d", "call.unassigned", {"call": "c2"})  # no offset: ignored
    await pump(hub, broker)
    lost = await broker.publish("doctor:d", "call.unassigned", {"call": "c3"})  # 4, never delivered live
    assert (await broker.receive()) == lost
    await broker.publish("doctor:d", "doctor.status", {})  # 5: the gap is filled from history
    await pump(hub, broker)
    assert [offset for offset, _ in seen] == [1, 3, 4]
    # Each time, the event's own frame was already queued (after `subscribed`; nothing drained).
    assert [queued for _, queued in seen] == [2, 4, 6]
    items = await drain(send_queue)
    assert offsets(items, "doctor:d") == [1, 2, 3, 4, 5]
