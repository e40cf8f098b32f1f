"""Contract of the Broker, run against MemoryBroker and RedisBroker.

History age is driven by a manual clock shared by the instances under test; live delivery is awaited
with a generous timeout, never timed. "Another process" is another RedisBroker over its own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot

from realtime.broker import (
    Broker,
    BrokerClosedError,
    HistoryPolicy,
    Outgoing,
    Publication,
    RecoveryFailure,
    Resync,
    StreamPosition,
)
from realtime.broker_memory import MemoryBroker
from realtime.broker_redis import PUBLISH_BATCH, RedisBroker
from realtime.keys import Keys
from tests.clock import ManualClock
from tests.conftest import redis_flush_url, redis_test_url

WAIT_S = 10.0  # generous: only bounds a hang, never measures speed


class BrokerFactory(Protocol):
    def __call__(self, *, client: aioredis.Redis | None = None, **options: Any) -> Broker: ...


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def new_client() -> AsyncIterator[Callable[..., aioredis.Redis]]:
    """Open extra Redis clients (another process's connections); closed at teardown."""
    made: list[aioredis.Redis] = []

    def open_client(**kwargs: Any) -> aioredis.Redis:
        client = aioredis.Redis.from_url(redis_test_url(), **kwargs)
        made.append(client)
        return client

    yield open_client
    for client in made:
        await client.aclose()


@pytest.fixture
async def make(
    backend: str,
    keys: Keys,
    clock: ManualClock,
    new_client: Callable[..., aioredis.Redis],
) -> AsyncIterator[BrokerFactory]:
    """Build brokers of the backend under test (closed at teardown). For Redis, each broker gets its
    own client unless one is given; all share the test's key prefix and clock."""
    made: list[Broker] = []

    def factory(*, client: aioredis.Redis | None = None, **options: Any) -> Broker:
        options.setdefault("clock", clock)
        broker: Broker
        if backend == "memory":
            broker = MemoryBroker(**options)
        else:
            broker = RedisBroker(client or new_client(), keys, **options)
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        await broker.aclose()


async def next_delivery(broker: Broker) -> Publication | Resync:
    return await asyncio.wait_for(broker.receive(), WAIT_S)


async def next_publication(broker: Broker) -> Publication:
    item = await next_delivery(broker)
    assert isinstance(item, Publication), item
    return item


async def eventually(predicate: Callable[[], bool]) -> None:
    """Wait (up to WAIT_S) until ``predicate`` holds; for effects of another task, not for timing."""
    async with asyncio.timeout(WAIT_S):
        # Polling on purpose: the conditions are counters inside the code under test, which has no
        # event to wait on (and should not grow one for tests).
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


# --- publishing and the wire frame ---------------------------------------------------------------------


async def test_publish_assigns_gap_free_offsets_and_encodes_the_frame_once(make: BrokerFactory) -> None:
    broker = make()
    data = {"offer": "o-1", "eta_s": 420, "doctor": {"name": "Dr. Ivanova"}}

    pubs = [await broker.publish("call:c1", "offer.created", data) for _ in range(3)]
    data["eta_s"] = 0  # the frame was encoded at publish time; later changes do not leak in

    assert [p.offset for p in pubs] == [1, 2, 3]
    assert len({p.epoch for p in pubs}) == 1
    assert pubs[0].epoch
    assert pubs[1].decode() == {
        "op": "event",
        "ch": "call:c1",
        "offset": 2,
        "epoch": pubs[1].epoch,
        "type": "offer.created",
        "data": {"offer": "o-1", "eta_s": 420, "doctor": {"name": "Dr. Ivanova"}},
    }
    assert pubs[1].frame == orjson.dumps(pubs[1].decode())  # compact orjson, keys in wire order
    assert pubs[0].type == "offer.created"
    assert await broker.position("call:c1") == StreamPosition(3, pubs[0].epoch)


async def test_channels_have_independent_offsets(make: BrokerFactory) -> None:
    broker = make()
    a1 = await broker.publish("call:a", "t", 1)
    b1 = await broker.publish("call:b", "t", 1)
    a2 = await broker.publish("call:a", "t", 2)

    assert (a1.offset, b1.offset, a2.offset) == (1, 1, 2)


async def test_invalid_publications_are_refused(make: BrokerFactory) -> None:
    broker = make(max_frame_bytes=1_000)
    for channel in ["", "call c1", "call:{c1}", "x" * 201]:
        with pytest.raises(ValueError):
            await broker.publish(channel, "t", {})
    with pytest.raises(ValueError):
        await broker.publish("call:c1", "Bad Type", {})
    with pytest.raises(ValueError):
        await broker.publish("call:c1", "t", {"text": "x" * 1_000})
    with pytest.raises(TypeError):
        await broker.publish("call:c1", "t", {"not json": object()})

    assert await broker.position("call:c1") == StreamPosition(0, (await broker.position("call:c1")).epoch)


# --- batches ---------------------------------------------------------------------------------------------


async def test_publish_many_is_a_loop_of_publishes(make: BrokerFactory) -> None:
    """Offsets, frames, history and live order of a batch are those of ``publish`` called in order,
    continuing the channels' streams; more events than one Redis pipeline takes, over several
    channels, some of them not subscribed."""
    broker = make(history=HistoryPolicy(size=PUBLISH_BATCH * 3))
    channels = ["doctor:a", "doctor:b", "sos", "doctor:unwatched"]
    for channel in channels[:3]:
        await broker.subscribe(channel)
    before = await broker.publish("doctor:a", "sos.nearby", {"i": -1})
    assert (await next_publication(broker)) == before
    rng = random.Random(11)
    events = [Outgoing(rng.choice(channels), "sos.nearby", {"i": i}) for i in range(PUBLISH_BATCH * 2 + 17)]

    pubs = await broker.publish_many(events)

    assert [(p.channel, p.type) for p in pubs] == [(e.channel, e.type) for e in events]
    assert [p.decode()["data"] for p in pubs] == [e.data for e in events]
    for channel in channels:
        mine = [p for p in pubs if p.channel == channel]
        first = 2 if channel == "doctor:a" else 1
        assert [p.offset for p in mine] == list(range(first, first + len(mine)))
        assert len({p.epoch for p in mine}) == 1
        for p in mine:  # the same wire frame as publish() makes
            assert p.frame == orjson.dumps(p.decode())
            assert p.decode()["offset"] == p.offset
            assert p.decode()["epoch"] == p.epoch
        recovered = await broker.recover(channel, StreamPosition(first - 1, mine[0].epoch))
        assert recovered.recovered
        assert list(recovered.publications) == mine
    watched = [p for p in pubs if p.channel != "doctor:unwatched"]
    received = [await next_publication(broker) for _ in watched]
    assert received == watched  # one publisher: live order is publish order
    assert (await broker.publish("doctor:a", "t", 1)).offset == 2 + sum(p.channel == "doctor:a" for p in pubs)


async def test_publish_many_of_nothing_publishes_nothing(make: BrokerFactory) -> None:
    broker = make()
    assert await broker.publish_many([]) == []


async def test_a_bad_event_fails_the_whole_batch_before_anything_is_published(make: BrokerFactory) -> None:
    broker = make(max_frame_bytes=1_000)
    await broker.subscribe("doctor:a")
    good = Outgoing("doctor:a", "sos.nearby", {"i": 1})
    for bad in [
        Outgoing("doctor a", "sos.nearby", {}),
        Outgoing("doctor:a", "Bad Type", {}),
        Outgoing("doctor:a", "t", {"text": "x" * 1_000}),
    ]:
        with pytest.raises(ValueError):
            await broker.publish_many([good, bad, good])
    with pytest.raises(TypeError):
        await broker.publish_many([good, Outgoing("doctor:a", "t", {"not json": object()})])

    assert (await broker.position("doctor:a")).offset == 0
    sentinel = await broker.publish("doctor:a", "t", "after")
    assert (await next_publication(broker)) == sentinel  # nothing of the failed batches was delivered


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_batch_reaches_a_subscriber_in_another_process(make: BrokerFactory) -> None:
    publisher, subscriber = make(), make()
    await subscriber.subscribe("doctor:far")

    pubs = await publisher.publish_many([Outgoing("doctor:far", "sos.nearby", {"i": i}) for i in range(3)])

    assert [await next_publication(subscriber) for _ in pubs] == pubs


# --- live delivery ---------------------------------------------------------------------------------------


async def test_subscriber_receives_the_published_bytes(make: BrokerFactory) -> None:
    broker = make()
    assert await broker.subscribe("doctor:d1")

    published = await broker.publish("doctor:d1", "offer.created", {"offer": "o-1"})
    received = await next_publication(broker)

    assert received == published  # same channel, offset, epoch, type, time and frame bytes


async def test_per_channel_order_is_offset_order(make: BrokerFactory) -> None:
    broker = make()
    channels = ["call:a", "call:b", "dispatch"]
    for channel in channels:
        await broker.subscribe(channel)
    rng = random.Random(7)
    published: dict[str, list[bytes]] = {c: [] for c in channels}
    for i in range(90):
        channel = rng.choice(channels)
        published[channel].append((await broker.publish(channel, "call.status", {"i": i})).frame)

    received: dict[str, list[Publication]] = {c: [] for c in channels}
    for _ in range(90):
        pub = await next_publication(broker)
        received[pub.channel].append(pub)

    for channel in channels:
        assert [p.offset for p in received[channel]] == list(range(1, len(published[channel]) + 1))
        assert [p.frame for p in received[channel]] == published[channel]


async def test_subscriptions_are_reference_counted(make: BrokerFactory) -> None:
    broker = make()
    assert await broker.subscribe("call:a")
    assert not await broker.subscribe("call:a")
    assert await broker.subscribe("sentinel")
    assert broker.subscriptions() == {"call:a": 2, "sentinel": 1}

    assert not await broker.unsubscribe("call:a")  # one interest remains
    await broker.publish("call:a", "t", 1)
    assert (await next_publication(broker)).channel == "call:a"

    assert await broker.unsubscribe("call:a")  # the last interest
    assert not await broker.unsubscribe("call:a")  # extra unsubscribes are no-ops
    await broker.publish("call:a", "t", 2)
    marker = await broker.publish("sentinel", "t", 0)
    # Delivery is in publish order, so had call:a still been received it would come first.
    assert await next_publication(broker) == marker
    assert broker.subscriptions() == {"sentinel": 1}


async def test_concurrent_first_subscriptions_share_one_confirmation(make: BrokerFactory) -> None:
    broker = make()
    firsts = await asyncio.gather(*(broker.subscribe("call:a") for _ in range(3)))

    assert sorted(firsts) == [False, False, True]
    published = await broker.publish("call:a", "t", 1)
    marker = await broker.publish("call:a", "t", 2)
    assert [await next_publication(broker), await next_publication(broker)] == [published, marker]


async def test_full_queue_drops_newest_then_resyncs(make: BrokerFactory) -> None:
    broker = make(queue_size=3)
    await broker.subscribe("call:a")
    pubs = [await broker.publish("call:a", "t", i) for i in range(5)]
    await eventually(lambda: broker.dropped == 2)

    got = [await next_delivery(broker) for _ in range(4)]

    assert got[:3] == pubs[:3]
    assert got[3] == Resync(frozenset({"call:a"}), "overflow")
    # The consumer recovers what it missed from history, from the last offset it saw.
    recovery = await broker.recover("call:a", pubs[2].position)
    assert recovery.recovered
    assert [p.frame for p in recovery.publications] == [p.frame for p in pubs[3:]]
    later = await broker.publish("call:a", "t", 5)
    assert await next_publication(broker) == later


async def test_close_wakes_the_receiver_and_refuses_work(make: BrokerFactory) -> None:
    broker = make()
    await broker.subscribe("call:a")
    waiting = asyncio.create_task(broker.receive())
    await asyncio.sleep(0)

    await broker.aclose()
    await broker.aclose()  # idempotent

    with pytest.raises(BrokerClosedError):
        await asyncio.wait_for(waiting, WAIT_S)
    with pytest.raises(BrokerClosedError):
        await broker.receive()
    with pytest.raises(BrokerClosedError):
        await broker.publish("call:a", "t", 1)
    with pytest.raises(BrokerClosedError):
        await broker.publish_many([Outgoing("call:a", "t", 1)])
    with pytest.raises(BrokerClosedError):
        await broker.subscribe("call:a")


# --- ephemeral publications ---------------------------------------------------------------------------


def ephemeral_frame(channel: str, event_type: str, data: Any) -> bytes:
    """The wire frame an ephemeral publication must carry: no offset, no epoch, keys in wire order."""
    return orjson.dumps({"op": "event", "ch": channel, "type": event_type, "data": data})


async def test_ephemeral_is_delivered_live_without_offset_or_epoch(make: BrokerFactory) -> None:
    broker = make()
    await broker.subscribe("doctor:d1")
    data = {"lat": 55.75, "lon": 37.61, "heading": 90}

    published = await broker.publish_ephemeral("doctor:d1", "doctor.position", data)
    data["lat"] = 0.0  # encoded at publish time
    received = await next_publication(broker)

    assert received == published  # same channel, offset, epoch, type, time and frame bytes
    assert published.frame == ephemeral_frame(
        "doctor:d1", "doctor.position", {"lat": 55.75, "lon": 37.61, "heading": 90}
    )
    assert "offset" not in received.decode() and "epoch" not in received.decode()
    assert (received.offset, received.epoch, received.type) == (0, "", "doctor.position")
    assert received.ephemeral and not (await broker.publish("doctor:d1", "t", 1)).ephemeral


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_ephemeral_reaches_a_subscriber_in_another_process(make: BrokerFactory) -> None:
    subscriber, publisher = make(), make()
    await subscriber.subscribe("doctor:d1")

    sent = [await publisher.publish_ephemeral("doctor:d1", "doctor.position", {"i": i}) for i in range(3)]
    received = [await next_publication(subscriber) for _ in sent]

    assert received == sent
    assert [p.frame for p in received] == [
        ephemeral_frame("doctor:d1", "doctor.position", {"i": i}) for i in range(3)
    ]
    assert all((p.offset, p.epoch) == (0, "") for p in received)
    assert subscriber.dropped == 0


async def test_ephemeral_takes_no_offset_and_stays_out_of_history(make: BrokerFactory) -> None:
    broker = make()
    await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": 0})
    start = await broker.position("doctor:d1")
    assert start.offset == 0  # an ephemeral publication on a fresh channel started no stream

    first = await broker.publish("doctor:d1", "doctor.status", "busy")
    for i in range(1, 4):
        await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": i})
    middle = await broker.position("doctor:d1")
    second = await broker.publish("doctor:d1", "doctor.status", "free")
    await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": 4})

    assert (first.offset, second.offset) == (1, 2)  # no gap for the ephemeral ones in between
    assert first.epoch == second.epoch == start.epoch
    assert middle == first.position
    assert await broker.position("doctor:d1") == second.position
    recovery = await broker.recover("doctor:d1", start)
    assert recovery.recovered
    assert list(recovery.publications) == [first, second]
    assert recovery.position == second.position


async def test_mixed_regular_and_ephemeral_publications_keep_publish_order(
    backend: str, make: BrokerFactory
) -> None:
    publisher = make()
    # The publisher's own process receives its publications too; on Redis, so does another process.
    subscribers = [publisher] if backend == "memory" else [publisher, make()]
    for subscriber in subscribers:
        await subscriber.subscribe("doctor:d1")
    rng = random.Random(11)
    sent: list[Publication] = []
    for i in range(60):
        if rng.random() < 0.5:
            sent.append(await publisher.publish_ephemeral("doctor:d1", "doctor.position", {"i": i}))
        else:
            sent.append(await publisher.publish("doctor:d1", "doctor.status", {"i": i}))
    regular = sum(not p.ephemeral for p in sent)
    assert 0 < regular < len(sent)

    for subscriber in subscribers:
        received = [await next_publication(subscriber) for _ in sent]
        assert [p.frame for p in received] == [p.frame for p in sent]
        assert [p.offset for p in received if not p.ephemeral] == list(range(1, regular + 1))


async def test_full_queue_drops_ephemeral_publications_without_resync(make: BrokerFactory) -> None:
    broker = make(queue_size=2)
    await broker.subscribe("doctor:d1")
    sent = [await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": i}) for i in range(5)]
    await eventually(lambda: broker.dropped == 3)

    got = [await next_delivery(broker) for _ in range(2)]
    after = await broker.publish("doctor:d1", "doctor.status", "free")

    assert got == sent[:2]
    # Had the drops been remembered, a Resync would have been queued when the first item was taken.
    assert await next_delivery(broker) == after
    assert broker.dropped == 3


async def test_overflow_resyncs_only_channels_that_lost_regular_publications(make: BrokerFactory) -> None:
    broker = make(queue_size=1)
    for channel in ("doctor:d1", "call:a"):
        await broker.subscribe(channel)
    first = await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": 0})
    await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": 1})  # dropped
    await broker.publish("call:a", "call.status", "en_route")  # dropped: must be recovered
    await eventually(lambda: broker.dropped == 2)

    assert await next_delivery(broker) == first
    assert await next_delivery(broker) == Resync(frozenset({"call:a"}), "overflow")


async def test_invalid_ephemeral_publications_are_refused(make: BrokerFactory) -> None:
    broker = make(max_frame_bytes=1_000)
    for channel in ["", "call c1", "call:{c1}", "x" * 201]:
        with pytest.raises(ValueError):
            await broker.publish_ephemeral(channel, "t", {})
    with pytest.raises(ValueError):
        await broker.publish_ephemeral("doctor:d1", "Bad Type", {})
    with pytest.raises(TypeError):
        await broker.publish_ephemeral("doctor:d1", "t", {"not json": object()})
    # The limit applies to the whole ephemeral frame: exactly max_frame_bytes passes, one more fails.
    fill = 1_000 - len(ephemeral_frame("doctor:d1", "t", {"text": ""}))
    fits = await broker.publish_ephemeral("doctor:d1", "t", {"text": "x" * fill})
    assert len(fits.frame) == 1_000
    with pytest.raises(ValueError):
        await broker.publish_ephemeral("doctor:d1", "t", {"text": "x" * (fill + 1)})

    await broker.aclose()
    with pytest.raises(BrokerClosedError):
        await broker.publish_ephemeral("doctor:d1", "t", {})


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_ephemeral_publish_writes_no_redis_keys(
    make: BrokerFactory, keys: Keys, redis_client: aioredis.Redis
) -> None:
    async def snapshot() -> dict[bytes, Any]:
        found: dict[bytes, Any] = {}
        async for key in redis_client.scan_iter(match=f"{keys.prefix}*", count=1_000):
            kind = await redis_client.type(key)
            found[key] = await (redis_client.hgetall(key) if kind == b"hash" else redis_client.xrange(key))
        return found

    broker = make(history=HistoryPolicy(size=10, max_age_ms=120_000, meta_ttl_ms=3_600_000))
    await broker.subscribe("doctor:d1")
    await broker.publish_ephemeral("doctor:fresh", "doctor.position", {"i": 0})
    assert await snapshot() == {}  # a fresh channel gets no meta, no history

    await broker.publish("doctor:d1", "doctor.status", "busy")
    assert (await next_publication(broker)).offset == 1
    # Shorten the TTLs by hand: a write that refreshed them would set them back to the policy's.
    for key in (keys.broker_meta("doctor:d1"), keys.broker_history("doctor:d1")):
        assert await redis_client.pexpire(key, 50_000)
    before = await snapshot()

    sent = [await broker.publish_ephemeral("doctor:d1", "doctor.position", {"i": i}) for i in range(3)]
    assert [await next_publication(broker) for _ in sent] == sent  # really published

    assert await snapshot() == before
    assert 0 < await redis_client.pttl(keys.broker_meta("doctor:d1")) <= 50_000
    assert 0 < await redis_client.pttl(keys.broker_history("doctor:d1")) <= 50_000


# --- idempotent publish (publication keys) -------------------------------------------------------------


async def test_a_key_seen_again_returns_the_first_publication_and_publishes_nothing(
    make: BrokerFactory,
) -> None:
    broker = make()
    await broker.subscribe("call:c1")
    first = await broker.publish("call:c1", "call.status", {"status": "arrived"}, key="outbox:1")
    assert await next_publication(broker) == first

    again = await broker.publish("call:c1", "call.status", {"status": "other data"}, key="outbox:1")
    marker = await broker.publish("call:c1", "t", "marker")

    assert again == first  # same offset, epoch, type, time and frame bytes (the stored ones)
    assert marker.offset == first.offset + 1  # no offset was taken by the duplicate
    assert await next_publication(broker) == marker  # and nothing was delivered live
    recovery = await broker.recover("call:c1", StreamPosition(0, first.epoch))
    assert list(recovery.publications) == [first, marker]  # nor kept in history


async def test_unkeyed_and_differently_keyed_publications_are_never_deduplicated(make: BrokerFactory) -> None:
    broker = make()
    a = await broker.publish("call:c1", "t", 1, key="outbox:1")
    b = await broker.publish("call:c1", "t", 1, key="outbox:2")
    c = await broker.publish("call:c1", "t", 1)
    d = await broker.publish("call:c1", "t", 1)

    assert [p.offset for p in (a, b, c, d)] == [1, 2, 3, 4]


async def test_the_same_key_on_two_channels_names_two_publications(make: BrokerFactory) -> None:
    broker = make()
    on_a = await broker.publish("call:a", "t", 1, key="outbox:7")
    on_b = await broker.publish("call:b", "t", 1, key="outbox:7")

    assert (on_a.channel, on_a.offset) == ("call:a", 1)
    assert (on_b.channel, on_b.offset) == ("call:b", 1)
    assert await broker.publish("call:b", "t", 1, key="outbox:7") == on_b


async def test_a_key_is_remembered_while_its_publication_is_in_history_by_size(make: BrokerFactory) -> None:
    broker = make(history=HistoryPolicy(size=3))
    keyed = await broker.publish("call:c1", "t", "keyed", key="outbox:1")
    await broker.publish("call:c1", "t", 2)
    await broker.publish("call:c1", "t", 3)
    assert await broker.publish("call:c1", "t", "keyed", key="outbox:1") == keyed  # oldest of 3 kept

    await broker.publish("call:c1", "t", 4)  # pushes the keyed publication out of history
    again = await broker.publish("call:c1", "t", "keyed", key="outbox:1")

    assert again.offset == 5 and again.epoch == keyed.epoch  # forgotten: published anew
    assert await broker.publish("call:c1", "t", "keyed", key="outbox:1") == again


async def test_a_key_is_remembered_while_its_publication_is_in_history_by_age(
    make: BrokerFactory, clock: ManualClock
) -> None:
    broker = make(history=HistoryPolicy(size=100, max_age_ms=60_000))
    keyed = await broker.publish("call:c1", "t", "keyed", key="outbox:1")

    clock.advance(59_999)
    assert await broker.publish("call:c1", "t", "keyed", key="outbox:1") == keyed
    clock.advance(1)  # exactly max_age old: no longer recoverable, no longer remembered
    again = await broker.publish("call:c1", "t", "keyed", key="outbox:1")

    assert again.offset == 2
    assert (await broker.recover("call:c1", StreamPosition(1, keyed.epoch))).publications == (again,)


async def test_a_channel_without_history_remembers_no_key(make: BrokerFactory) -> None:
    broker = make(namespaces={"map": HistoryPolicy(size=0)})
    first = await broker.publish("map:881f1d4811fffff", "t", 1, key="k")
    second = await broker.publish("map:881f1d4811fffff", "t", 1, key="k")

    assert (first.offset, second.offset) == (1, 2)


async def test_a_lost_epoch_forgets_its_keys(
    make: BrokerFactory, redis_client_or_none: aioredis.Redis | None, keys: Keys
) -> None:
    broker = make()
    old = await broker.publish("call:c1", "t", "keyed", key="outbox:1")

    if redis_client_or_none is not None:
        # Only the meta is lost (evicted, say): history and keys left behind must not answer for the
        # new epoch, whose offset 1 is another publication.
        await redis_client_or_none.delete(keys.broker_meta("call:c1"))
    else:
        broker = make()  # a restarted process: a new memory engine
    unkeyed = await broker.publish("call:c1", "t", "new epoch")
    again = await broker.publish("call:c1", "t", "keyed", key="outbox:1")

    assert unkeyed.epoch != old.epoch and unkeyed.offset == 1
    assert (again.offset, again.epoch) == (2, unkeyed.epoch)
    assert await broker.publish("call:c1", "t", "keyed", key="outbox:1") == again


async def test_a_batch_with_a_duplicate_inside_publishes_it_once(make: BrokerFactory) -> None:
    broker = make()
    await broker.subscribe("call:c1")
    earlier = await broker.publish("call:c1", "t", "e", key="outbox:0")
    assert await next_publication(broker) == earlier

    pubs = await broker.publish_many(
        [
            Outgoing("call:c1", "t", "a", key="outbox:1"),
            Outgoing("call:c1", "t", "e", key="outbox:0"),  # published before the batch
            Outgoing("call:c1", "t", "b"),
            Outgoing("call:c1", "t", "a", key="outbox:1"),  # earlier in the same batch
            Outgoing("call:c2", "t", "a", key="outbox:1"),  # another channel: its own key
        ]
    )

    a, dup_earlier, b, dup_a, other = pubs
    assert dup_earlier == earlier and dup_a == a
    assert [a.offset, b.offset, other.offset] == [2, 3, 1]
    assert [await next_publication(broker) for _ in range(2)] == [a, b]
    recovery = await broker.recover("call:c1", earlier.position)
    assert list(recovery.publications) == [a, b]


async def test_invalid_keys_are_refused_before_anything_is_published(make: BrokerFactory) -> None:
    broker = make()
    for bad in ("", "k" * 201):
        with pytest.raises(ValueError):
            await broker.publish("call:c1", "t", 1, key=bad)
        with pytest.raises(ValueError):
            await broker.publish_many([Outgoing("call:c1", "t", 1), Outgoing("call:c1", "t", 1, key=bad)])
    assert (await broker.position("call:c1")).offset == 0


# --- history and recovery ------------------------------------------------------------------------------


async def test_recover_returns_exactly_the_publications_after_the_offset(make: BrokerFactory) -> None:
    broker = make()
    pubs = [await broker.publish("call:c1", "chat.message", {"n": i}) for i in range(10)]
    epoch = pubs[0].epoch

    after_4 = await broker.recover("call:c1", StreamPosition(4, epoch))
    from_start = await broker.recover("call:c1", StreamPosition(0, epoch))
    up_to_date = await broker.recover("call:c1", StreamPosition(10, epoch))

    assert after_4.recovered and after_4.failure is None
    assert list(after_4.publications) == pubs[4:]
    assert after_4.position == StreamPosition(10, epoch)
    assert list(from_start.publications) == pubs
    assert up_to_date.recovered and up_to_date.publications == ()


async def test_history_is_bounded_by_size(make: BrokerFactory) -> None:
    broker = make(history=HistoryPolicy(size=5))
    pubs = [await broker.publish("call:c1", "t", i) for i in range(12)]
    epoch = pubs[0].epoch

    kept = await broker.recover("call:c1", StreamPosition(7, epoch))
    lost = await broker.recover("call:c1", StreamPosition(6, epoch))

    assert [p.offset for p in kept.publications] == [8, 9, 10, 11, 12]
    assert not lost.recovered
    assert lost.failure is RecoveryFailure.OFFSET_TOO_OLD
    assert lost.publications == ()
    assert lost.position == StreamPosition(12, epoch)


async def test_history_is_bounded_by_age(make: BrokerFactory, clock: ManualClock) -> None:
    broker = make(history=HistoryPolicy(size=100, max_age_ms=60_000))
    old = [await broker.publish("call:c1", "t", i) for i in range(3)]
    clock.advance(30_000)
    fresh = [await broker.publish("call:c1", "t", i) for i in range(3, 5)]
    epoch = old[0].epoch

    clock.advance(30_000)  # the first three are now exactly max_age old: gone
    after_old = await broker.recover("call:c1", StreamPosition(3, epoch))
    needs_old = await broker.recover("call:c1", StreamPosition(2, epoch))

    assert list(after_old.publications) == fresh
    assert needs_old.failure is RecoveryFailure.OFFSET_TOO_OLD

    clock.advance(60_000)  # everything aged out
    nothing_missed = await broker.recover("call:c1", StreamPosition(5, epoch))
    missed_one = await broker.recover("call:c1", StreamPosition(4, epoch))
    assert nothing_missed.recovered and nothing_missed.publications == ()
    assert missed_one.failure is RecoveryFailure.OFFSET_TOO_OLD
    assert (await broker.publish("call:c1", "t", 5)).offset == 6  # offsets outlive history


async def test_channels_without_history_still_count_offsets(make: BrokerFactory) -> None:
    broker = make(namespaces={"map": HistoryPolicy(size=0)})
    pubs = [await broker.publish("map:881f1d4811fffff", "doctor.positions", []) for _ in range(3)]
    kept = [await broker.publish("call:c1", "t", i) for i in range(3)]

    assert [p.offset for p in pubs] == [1, 2, 3]
    missed = await broker.recover("map:881f1d4811fffff", StreamPosition(2, pubs[0].epoch))
    current = await broker.recover("map:881f1d4811fffff", StreamPosition(3, pubs[0].epoch))
    assert missed.failure is RecoveryFailure.OFFSET_TOO_OLD
    assert current.recovered
    assert list((await broker.recover("call:c1", StreamPosition(1, kept[0].epoch))).publications) == kept[1:]


async def test_recovery_refuses_a_foreign_epoch_or_a_future_offset(make: BrokerFactory) -> None:
    broker = make()
    pub = await broker.publish("call:c1", "t", 1)

    foreign = await broker.recover("call:c1", StreamPosition(1, "0123abcd"))
    ahead = await broker.recover("call:c1", StreamPosition(2, pub.epoch))

    assert foreign.failure is RecoveryFailure.EPOCH_MISMATCH
    assert foreign.position == StreamPosition(1, pub.epoch)
    assert ahead.failure is RecoveryFailure.OFFSET_AHEAD
    with pytest.raises(ValueError):
        await broker.recover("call:c1", StreamPosition(-1, pub.epoch))


async def test_position_fixes_the_epoch_before_the_first_publication(make: BrokerFactory) -> None:
    broker = make()
    start = await broker.position("call:new")
    assert start.offset == 0

    pub = await broker.publish("call:new", "t", 1)
    recovery = await broker.recover("call:new", start)

    assert pub.epoch == start.epoch
    assert list(recovery.publications) == [pub]


async def test_an_idle_channel_forgets_its_epoch_after_the_meta_ttl(
    make: BrokerFactory,
    clock: ManualClock,
    redis_client_or_none: aioredis.Redis | None,
    keys: Keys,
) -> None:
    broker = make(history=HistoryPolicy(size=10, max_age_ms=200, meta_ttl_ms=200))
    old = await broker.publish("call:c1", "t", 1)

    clock.advance(200)
    if redis_client_or_none is not None:
        # Redis expires keys on its own clock and offers no event to await: poll until it has.
        async with asyncio.timeout(WAIT_S):
            while await redis_client_or_none.exists(keys.broker_meta("call:c1")):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    position = await broker.position("call:c1")
    stale = await broker.recover("call:c1", old.position)
    assert position.offset == 0 and position.epoch != old.epoch
    assert stale.failure is RecoveryFailure.EPOCH_MISMATCH


@pytest.fixture
def redis_client_or_none(backend: str, request: pytest.FixtureRequest) -> aioredis.Redis | None:
    """The test Redis client for the Redis backend; None for memory (which must not need Redis)."""
    client: aioredis.Redis | None = request.getfixturevalue("redis_client") if backend == "redis" else None
    return client


async def test_lost_history_starts_a_new_epoch(backend: str, make: BrokerFactory) -> None:
    """Redis flushed (FLUSHDB) or the memory engine restarted: new epoch. The Redis case runs in a
    database of its own (``redis_flush_url``), so the flush touches no other test's keys."""
    flush_client = aioredis.Redis.from_url(redis_flush_url()) if backend == "redis" else None
    broker = make(client=flush_client)
    old = [await broker.publish("call:c1", "t", i) for i in range(3)]

    if flush_client is not None:
        await flush_client.flushdb()
    else:
        broker = make()  # a restarted process: a new memory engine

    position = await broker.position("call:c1")
    stale = await broker.recover("call:c1", old[-1].position)
    first = await broker.publish("call:c1", "t", "after")

    assert position.epoch != old[0].epoch
    assert position.offset == 0
    assert not stale.recovered
    assert stale.failure is RecoveryFailure.EPOCH_MISMATCH
    assert (first.offset, first.epoch) == (1, position.epoch)
    assert list((await broker.recover("call:c1", position)).publications) == [first]
    if flush_client is not None:
        await broker.aclose()
        await flush_client.aclose()


# --- Redis: many processes -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_publication_reaches_a_subscriber_in_another_process(make: BrokerFactory) -> None:
    subscriber, publisher = make(), make()
    await subscriber.subscribe("call:c1")

    sent = [await publisher.publish("call:c1", "call.status", {"status": s}) for s in ("en_route", "arrived")]

    assert [await next_publication(subscriber) for _ in sent] == sent
    assert subscriber.dropped == 0


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
@pytest.mark.parametrize("client_retries", [0, 3], ids=["broker-reconnects", "redis-py-reconnects"])
async def test_subscriber_resubscribes_and_resyncs_after_losing_redis(
    make: BrokerFactory,
    new_client: Callable[..., aioredis.Redis],
    redis_client: aioredis.Redis,
    client_retries: int,
) -> None:
    name = f"test-broker-{uuid.uuid4().hex[:8]}"
    client = new_client(client_name=name, retry=Retry(ExponentialBackoff(cap=0.5, base=0.01), client_retries))
    subscriber, publisher = make(client=client), make()
    await subscriber.subscribe("call:a")
    await subscriber.subscribe("call:b")

    killed = await _kill_pubsub_connections(redis_client, name)
    resync = await next_delivery(subscriber)
    after = await publisher.publish("call:b", "t", "after")

    assert killed == 1
    assert resync == Resync(frozenset({"call:a", "call:b"}), "reconnect")
    assert await next_publication(subscriber) == after


class FlakyProxy:
    """A TCP proxy to the test Redis that can cut every connection and refuse new ones: a real
    network outage, seen by the client exactly as one."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.accepting = True
        self.refused = 0
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        for writer in self._writers:
            writer.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self.accepting:
            self.refused += 1
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()


@pytest.fixture
async def flaky_redis() -> AsyncIterator[tuple[FlakyProxy, aioredis.Redis]]:
    """A Redis client (no retries) whose every connection goes through a FlakyProxy."""
    url = urlsplit(redis_test_url())
    proxy = FlakyProxy(url.hostname or "127.0.0.1", url.port or 6379)
    await proxy.start()
    client = aioredis.Redis.from_url(url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl())
    yield proxy, client
    await client.aclose()
    await proxy.aclose()


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_subscriber_survives_a_redis_outage(
    flaky_redis: tuple[FlakyProxy, aioredis.Redis], make: BrokerFactory
) -> None:
    # flaky_redis comes first so that it is torn down last, after the brokers stopped reconnecting.
    proxy, client = flaky_redis
    subscriber = make(client=client, reconnect_delay_s=(0.01, 0.05))
    publisher = make()
    await subscriber.subscribe("call:a")
    seen = await publisher.publish("call:a", "t", "before")
    assert await next_publication(subscriber) == seen

    proxy.accepting = False
    proxy.cut()
    await eventually(lambda: proxy.refused >= 2)  # the broker keeps trying while Redis is away
    missed = await publisher.publish("call:a", "t", "during")
    late_subscribe = asyncio.create_task(subscriber.subscribe("call:b"))
    await asyncio.sleep(0)
    proxy.accepting = True

    resync = await next_delivery(subscriber)
    assert await asyncio.wait_for(late_subscribe, WAIT_S)
    assert resync == Resync(frozenset({"call:a", "call:b"}), "reconnect")
    recovery = await subscriber.recover("call:a", seen.position)
    assert list(recovery.publications) == [missed]
    after = [await publisher.publish(c, "t", "after") for c in ("call:a", "call:b")]
    assert [await next_publication(subscriber) for _ in after] == after


async def _kill_pubsub_connections(redis_client: aioredis.Redis, name: str) -> int:
    killed = 0
    for client in await redis_client.client_list(_type="pubsub"):
        if client.get("name") == name:
            await redis_client.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_remembers_no_more_keys_than_history_holds(
    make: BrokerFactory, keys: Keys, redis_client: aioredis.Redis
) -> None:
    broker = make(history=HistoryPolicy(size=5))
    for i in range(50):
        await broker.publish("call:c1", "t", i, key=f"outbox:{i}")

    remembered = await redis_client.zrange(keys.broker_publication_keys("call:c1"), 0, -1)
    assert remembered == [f"outbox:{i}".encode() for i in range(45, 50)]


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_keys_carry_ttls_and_share_the_channel_slot(
    make: BrokerFactory, keys: Keys, redis_client: aioredis.Redis
) -> None:
    broker = make(history=HistoryPolicy(size=10, max_age_ms=120_000, meta_ttl_ms=3_600_000))
    await broker.publish("call:c1", "t", 1, key="outbox:1")

    hist_ttl = await redis_client.pttl(keys.broker_history("call:c1"))
    meta_ttl = await redis_client.pttl(keys.broker_meta("call:c1"))
    keys_ttl = await redis_client.pttl(keys.broker_publication_keys("call:c1"))

    assert 0 < hist_ttl <= 120_000
    assert 0 < keys_ttl <= 120_000
    assert 120_000 < meta_ttl <= 3_600_000
    names = [
        keys.broker_history("call:c1"),
        keys.broker_meta("call:c1"),
        keys.broker_publication_keys("call:c1"),
        keys.broker_pubsub("call:c1"),
    ]
    assert len({key_slot(n.encode()) for n in names}) == 1
