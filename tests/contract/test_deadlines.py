"""Contract of Deadlines, run against MemoryDeadlines and RedisDeadlines.

Times are plain epoch-millisecond numbers handed to ``claim_due``: nothing here depends on the wall
clock. "Two processes" are two instances over two Redis clients; in memory (one process by nature)
they are two tasks sharing the one instance.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from dispatch.deadlines import MAX_PAYLOAD_BYTES, Claim, Deadlines
from dispatch.deadlines_memory import MemoryDeadlines
from dispatch.deadlines_redis import RedisDeadlines
from realtime.keys import Keys
from tests.conftest import redis_test_url

T0 = 1_700_000_000_000
LEASE_MS = 30_000

DeadlinesFactory = Callable[[], Deadlines]


@pytest.fixture
async def clients(backend: str) -> AsyncIterator[list[aioredis.Redis]]:
    """Extra Redis clients made by the test (closed at teardown); empty for memory."""
    made: list[aioredis.Redis] = []
    yield made
    for client in made:
        await client.aclose()


@pytest.fixture
def make(backend: str, keys: Keys, clients: list[aioredis.Redis]) -> DeadlinesFactory:
    """Build an instance of the backend under test. For Redis each call opens its own client (a
    process of its own) on the same queue; for memory every call returns the same instance."""
    shared = MemoryDeadlines(lease_ms=LEASE_MS)

    def factory() -> Deadlines:
        if backend == "memory":
            return shared
        client = aioredis.Redis.from_url(redis_test_url())
        clients.append(client)
        return RedisDeadlines(client, keys, queue="offers", lease_ms=LEASE_MS)

    return factory


async def test_claims_due_entries_in_due_order_once(make: DeadlinesFactory) -> None:
    dl = make()
    assert await dl.schedule("offer-c", T0 + 300, b"c")
    assert await dl.schedule("offer-a", T0 + 100, b"a")
    assert await dl.schedule("offer-b", T0 + 200, b"b")
    assert await dl.schedule("offer-d", T0 + 1_000, b"d")

    claims = await dl.claim_due(T0 + 250)

    assert [(c.key, c.due_ms, c.payload, c.attempt) for c in claims] == [
        ("offer-a", T0 + 100, b"a", 1),
        ("offer-b", T0 + 200, b"b", 1),
    ]
    assert all(c.lease_until_ms == T0 + 250 + LEASE_MS for c in claims)
    assert await dl.claim_due(T0 + 250) == []
    assert await dl.next_due_ms() == T0 + 300
    assert await dl.count() == 4


async def test_equal_due_times_are_claimed_by_key_order_and_limit(make: DeadlinesFactory) -> None:
    dl = make()
    for key in ["k3", "k1", "k4", "k2"]:
        await dl.schedule(key, T0, b"")

    first = await dl.claim_due(T0, limit=3)
    rest = await dl.claim_due(T0, limit=3)

    assert [c.key for c in first] == ["k1", "k2", "k3"]
    assert [c.key for c in rest] == ["k4"]


async def test_next_due_is_none_when_empty_and_tracks_the_earliest(make: DeadlinesFactory) -> None:
    dl = make()
    assert await dl.next_due_ms() is None
    await dl.schedule("late", T0 + 5_000)
    await dl.schedule("early", T0 + 1_000)
    assert await dl.next_due_ms() == T0 + 1_000
    await dl.cancel("early")
    assert await dl.next_due_ms() == T0 + 5_000


async def test_complete_removes_the_entry(make: DeadlinesFactory) -> None:
    dl = make()
    await dl.schedule("offer-1", T0, b"p")
    [claim] = await dl.claim_due(T0)

    assert await dl.complete(claim)
    assert not await dl.complete(claim)
    assert await dl.get("offer-1") is None
    assert await dl.count() == 0
    assert await dl.next_due_ms() is None
    assert await dl.claim_due(T0 + 10 * LEASE_MS) == []


async def test_cancel_before_and_after_claim(make: DeadlinesFactory) -> None:
    dl = make()
    await dl.schedule("offer-1", T0)
    await dl.schedule("offer-2", T0)

    assert await dl.cancel("offer-1")
    assert not await dl.cancel("offer-1")
    assert not await dl.cancel("never-scheduled")
    [claim] = await dl.claim_due(T0)
    assert claim.key == "offer-2"
    assert await dl.cancel("offer-2")

    assert not await dl.complete(claim)
    assert await dl.count() == 0
    assert await dl.claim_due(T0 + 10 * LEASE_MS) == []


async def test_lapsed_lease_redelivers_with_next_attempt(make: DeadlinesFactory) -> None:
    dl = make()
    await dl.schedule("offer-1", T0, b"p")
    [first] = await dl.claim_due(T0 + 10)

    assert await dl.claim_due(T0 + 10 + LEASE_MS - 1) == []
    assert await dl.next_due_ms() == T0 + 10 + LEASE_MS
    entry = await dl.get("offer-1")
    assert entry is not None
    assert (entry.due_ms, entry.attempt, entry.claimed_until_ms) == (T0, 1, T0 + 10 + LEASE_MS)

    [second] = await dl.claim_due(T0 + 10 + LEASE_MS)

    assert (second.key, second.due_ms, second.payload, second.attempt) == ("offer-1", T0, b"p", 2)
    assert second.token != first.token
    assert not await dl.complete(first)  # the lapsed claim no longer owns the entry
    assert await dl.complete(second)
    assert await dl.count() == 0


async def test_schedule_replaces_entry_and_its_claim(make: DeadlinesFactory) -> None:
    dl = make()
    assert await dl.schedule("sos-1", T0, b"v1")
    [claim] = await dl.claim_due(T0)

    # The handler re-arms the same key (an SOS that repeats until acknowledged).
    assert not await dl.schedule("sos-1", T0 + 500, b"v2")

    assert not await dl.complete(claim)
    entry = await dl.get("sos-1")
    assert entry is not None
    assert (entry.due_ms, entry.payload, entry.attempt, entry.claimed_until_ms) == (T0 + 500, b"v2", 0, None)
    assert await dl.claim_due(T0 + 499) == []
    [again] = await dl.claim_due(T0 + 500)
    assert (again.payload, again.attempt) == (b"v2", 1)


async def test_payload_bytes_round_trip(make: DeadlinesFactory) -> None:
    dl = make()
    payload = bytes(range(256)) + b"\n:|{}" + b"\x00" * 10
    await dl.schedule("binary", T0, payload)
    await dl.schedule("empty", T0)

    claims = {c.key: c.payload for c in await dl.claim_due(T0)}

    assert claims == {"binary": payload, "empty": b""}


async def test_invalid_arguments_are_refused(make: DeadlinesFactory) -> None:
    dl = make()
    with pytest.raises(ValueError):
        await dl.schedule("", T0)
    with pytest.raises(ValueError):
        await dl.schedule("x" * 201, T0)
    with pytest.raises(ValueError):
        await dl.schedule("k", -1)
    with pytest.raises(ValueError):
        await dl.schedule("k", T0, b"x" * (MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(ValueError):
        await dl.claim_due(T0, limit=0)
    assert await dl.count() == 0
    await dl.schedule("k", T0, b"x" * MAX_PAYLOAD_BYTES)  # the limit itself is allowed


async def test_each_entry_claimed_exactly_once_by_concurrent_claimers(make: DeadlinesFactory) -> None:
    first, second = make(), make()
    keys = [f"offer-{i:04d}" for i in range(400)]
    for i, key in enumerate(keys):
        await first.schedule(key, T0 + i, key.encode())

    async def claimer(dl: Deadlines, limit: int) -> list[Claim]:
        got: list[Claim] = []
        while True:
            batch = await dl.claim_due(T0 + len(keys), limit=limit)
            if not batch:
                return got
            got.extend(batch)
            for claim in batch:
                assert claim.payload == claim.key.encode()
                assert await dl.complete(claim)
            await asyncio.sleep(0)

    results = await asyncio.gather(
        claimer(first, 7), claimer(second, 5), claimer(first, 3), claimer(second, 11)
    )

    claimed = collections.Counter(c.key for batch in results for c in batch)
    assert set(claimed) == set(keys)
    assert set(claimed.values()) == {1}
    assert await first.count() == 0


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_entries_fire_after_the_scheduling_process_is_gone(
    make: DeadlinesFactory, clients: list[aioredis.Redis]
) -> None:
    scheduler = make()
    for i in range(50):
        await scheduler.schedule(f"offer-{i}", T0 + i, f"payload-{i}".encode())
    await scheduler.aclose()
    await clients[0].aclose()  # the scheduling process's connection is gone

    survivor = make()
    claims = await survivor.claim_due(T0 + 1_000, limit=100)

    expected = {(f"offer-{i}", f"payload-{i}".encode()) for i in range(50)}
    assert {(c.key, c.payload) for c in claims} == expected


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_lapsed_claim_of_a_dead_claimer_goes_to_another_process(
    make: DeadlinesFactory, clients: list[aioredis.Redis]
) -> None:
    doomed, survivor = make(), make()
    await survivor.schedule("offer-1", T0, b"p")
    [claim] = await doomed.claim_due(T0)
    await clients[0].aclose()  # the claimer dies before completing

    assert await survivor.claim_due(claim.lease_until_ms - 1) == []
    [again] = await survivor.claim_due(claim.lease_until_ms)

    assert (again.key, again.attempt) == ("offer-1", 2)
    assert await survivor.complete(again)


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_keys_carry_a_ttl_and_share_a_slot(
    make: DeadlinesFactory, keys: Keys, redis_client: aioredis.Redis
) -> None:
    dl = make()
    await dl.schedule("offer-1", T0)
    await dl.claim_due(T0)

    names = [keys.deadlines_due("offers"), keys.deadlines_meta("offers"), keys.deadlines_seq("offers")]
    for name in names:
        assert await redis_client.pttl(name) > 0
    slots = {key_slot(name.encode()) for name in names}
    assert len(slots) == 1
