"""Recovery never goes silent: a session whose history reads fail, hang or cannot fill a gap ends in
``recovered:false`` (or, when its buffer would outgrow its bound, the overflow signal the gateway turns
into a close), and ``recovered:true`` only when every missed offset was sent.

The broker is a real MemoryBroker whose ``recover`` the test makes fail or wait; pauses between
attempts go through the policy's ``sleep``, recorded here instead of waited.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime.broker import Recovery, Resync, StreamPosition
from realtime.broker_memory import MemoryBroker
from realtime.hub import Hub
from realtime.send_queue import SendQueue
from realtime.session import RECOVERY_FAILED, RecoveryPolicy, Session
from tests.unit.test_session import drain, offsets, pump, subscribe


class FlakyBroker(MemoryBroker):
    """A memory broker whose next ``fail`` recoveries raise, and whose recoveries wait for ``gate``
    while it is set to an unset event."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.fail = 0
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def recover(self, channel: str, since: StreamPosition) -> Recovery:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Redis went away")
        return await super().recover(channel, since)


class World:
    """A flaky broker, its hub and one session with a recording policy."""

    def __init__(self, **policy: Any) -> None:
        self.broker = FlakyBroker()
        self.hub = Hub(self.broker)
        self.pauses: list[float] = []
        self.overflows = 0
        self.send_queue = SendQueue(max_frames=10_000, max_bytes=1 << 24)

        async def record(seconds: float) -> None:
            self.pauses.append(seconds)
            await asyncio.sleep(0)

        def overflow() -> None:
            self.overflows += 1

        self.policy = RecoveryPolicy(sleep=record, **policy)
        self.session = Session("s", self.broker, self.send_queue, overflow, recovery=self.policy)

    async def live_on(self, channel: str) -> None:
        await subscribe(self.hub, self.session, channel)
        await self.broker.publish(channel, "t", {"i": 1})
        await pump(self.hub, self.broker)

    async def lose(self, channel: str, count: int) -> None:
        """``count`` publications that never reach this process live (dropped pub/sub messages)."""
        for i in range(count):
            await self.broker.publish(channel, "t", {"lost": i})
            await self.broker.receive()


def subscribed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in items if f["op"] == "subscribed"]


async def test_a_failing_recovery_is_retried_then_answers_recovered_false_and_delivery_goes_on() -> None:
    world = World()
    await world.live_on("dispatch")
    await drain(world.send_queue)
    await world.lose("dispatch", 2)  # offsets 2, 3
    world.broker.fail = 10  # every history read fails

    await world.broker.publish("dispatch", "t", {"i": 4})  # the jump starts a recovery
    await pump(world.hub, world.broker)
    items = await drain(world.send_queue)

    assert world.broker.calls == world.policy.attempts == 3
    assert world.pauses == [0.1, 0.5]
    [told] = subscribed(items)
    assert told["recovered"] is False and told["reason"] == RECOVERY_FAILED
    assert told["position"]["offset"] == 3  # just before the buffered 4, which follows
    assert offsets(items, "dispatch") == [4]
    await world.broker.publish("dispatch", "t", {"i": 5})  # and the channel is live again
    await pump(world.hub, world.broker)
    assert offsets(await drain(world.send_queue), "dispatch") == [5]


async def test_a_failed_attempt_followed_by_a_good_one_recovers_everything_once() -> None:
    world = World()
    await world.live_on("dispatch")
    await world.lose("dispatch", 2)
    world.broker.fail = 1

    world.hub.dispatch(Resync(frozenset({"dispatch"}), "reconnect"))
    await pump(world.hub, world.broker)
    await world.broker.publish("dispatch", "t", {"i": 4})
    await pump(world.hub, world.broker)
    items = await drain(world.send_queue)

    assert world.pauses == [0.1]
    assert subscribed(items)[1:] == []  # only the subscribe's own answer: nothing was given up
    assert offsets(items, "dispatch") == [1, 2, 3, 4]


async def test_a_hanging_history_read_times_out_and_ends_in_recovered_false() -> None:
    world = World(attempt_timeout_s=0.01, attempts=2)
    await world.live_on("dispatch")
    await drain(world.send_queue)
    world.broker.gate = asyncio.Event()  # never set: every read hangs

    world.hub.dispatch(Resync(frozenset({"dispatch"}), "reconnect"))
    await world.broker.publish("dispatch", "t", {"i": 2})
    async with asyncio.timeout(5):
        while not subscribed(items := await drain(world.send_queue)):
            await pump(world.hub, world.broker)

    [told] = subscribed(items)
    assert (told["recovered"], told["reason"], told["position"]["offset"]) == (False, RECOVERY_FAILED, 1)
    assert world.broker.calls == 2


async def test_the_buffer_kept_while_recovering_is_bounded() -> None:
    world = World(max_buffer=5)
    await world.live_on("dispatch")
    world.broker.gate = asyncio.Event()  # the recovery waits on history
    world.hub.dispatch(Resync(frozenset({"dispatch"}), "reconnect"))
    await asyncio.sleep(0)

    for i in range(5):
        await world.broker.publish("dispatch", "t", {"i": i})
    await pump(world.hub, world.broker)
    assert world.overflows == 0
    assert len(world.session.channels["dispatch"].buffer) == 5

    for i in range(20):  # one more than the bound is enough; the rest must not pile up either
        await world.broker.publish("dispatch", "t", {"more": i})
    await pump(world.hub, world.broker)

    assert world.overflows == 1  # the gateway closes the connection (4499): never unbounded growth
    assert all(len(state.buffer) <= 5 for state in world.session.channels.values())
    world.broker.gate.set()
    await pump(world.hub, world.broker)
    assert world.overflows == 1


async def test_a_resync_during_a_recovery_asks_for_one_more_pass_without_duplicates() -> None:
    world = World()
    await world.live_on("dispatch")
    await world.lose("dispatch", 1)  # 2
    world.broker.gate = asyncio.Event()
    world.hub.dispatch(Resync(frozenset({"dispatch"}), "reconnect"))
    await asyncio.sleep(0)
    await world.lose("dispatch", 1)  # 3, lost after the first read began
    world.hub.dispatch(Resync(frozenset({"dispatch"}), "overflow"))
    world.broker.gate.set()
    await pump(world.hub, world.broker)

    items = await drain(world.send_queue)
    assert offsets(items, "dispatch") == [1, 2, 3]
    assert subscribed(items)[1:] == []


async def test_a_live_publication_of_a_new_epoch_past_offset_1_is_a_gap() -> None:
    world = World()
    await world.live_on("call:c1")
    await drain(world.send_queue)
    # The memory engine restarts (history lost): a new broker, and the session still at the old epoch.
    restarted = FlakyBroker()
    world.session.broker = restarted
    hub = Hub(restarted)
    await hub.add("call:c1", world.session)
    await restarted.publish("call:c1", "t", {"new": 1})
    await restarted.receive()  # lost live
    await restarted.publish("call:c1", "t", {"new": 2})
    await pump(hub, restarted)

    items = await drain(world.send_queue)
    [told] = subscribed(items)
    assert (told["recovered"], told["reason"]) == (False, "epoch_mismatch")
    assert told["position"]["offset"] == 2
    assert offsets(items, "call:c1") == []  # 2 is at the position the client re-reads from


@pytest.mark.parametrize("lost_live", [0, 1])
async def test_subscribe_with_since_is_recovered_only_when_every_offset_was_sent(lost_live: int) -> None:
    world = World()
    first = [await world.broker.publish("sos", "t", {"i": i}) for i in range(3)]
    world.session.begin("sos")
    await world.hub.add("sos", world.session)
    # Published after the subscription, before the history read: live, possibly lost live.
    await world.lose("sos", lost_live)
    await world.broker.publish("sos", "t", "live")
    start = asyncio.create_task(world.session.start("sos", first[0].position, ref=1))
    await pump(world.hub, world.broker)
    await start

    items = await drain(world.send_queue)
    assert subscribed(items)[0]["recovered"] is True
    assert offsets(items, "sos") == list(range(2, 5 + lost_live))
