"""Contract of Revocations, run against MemoryRevocations and RedisRevocations.

"Two processes" are two instances over two Redis clients; in memory they are two callers of the one
instance. Memory expiry is driven by a manual clock; Redis expires keys on its own clock, so its expiry
test uses a short TTL and polls with a deadline.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from models.users import DELETED_VALID_FROM
from realtime.keys import REVOCATION_TTL_MS, Keys
from realtime.revocations import Revocations
from realtime.revocations_memory import MemoryRevocations
from realtime.revocations_redis import RedisRevocations
from tests.clock import ManualClock
from tests.conftest import redis_test_url

RevocationsFactory = Callable[..., Revocations]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make(backend: str, keys: Keys, clock: ManualClock) -> AsyncIterator[RevocationsFactory]:
    """Build an instance of the backend under test: for Redis each call is a process with its own
    client; for memory every call with the same TTL returns the same instance."""
    shared: dict[int, MemoryRevocations] = {}
    clients: list[aioredis.Redis] = []

    def factory(ttl_ms: int = REVOCATION_TTL_MS) -> Revocations:
        if backend == "memory":
            return shared.setdefault(ttl_ms, MemoryRevocations(ttl_ms=ttl_ms, clock=clock))
        client = aioredis.Redis.from_url(redis_test_url())
        clients.append(client)
        return RedisRevocations(client, keys, ttl_ms=ttl_ms)

    yield factory
    for client in clients:
        await client.aclose()


def user() -> str:
    return str(uuid.uuid4())


async def test_nothing_held_is_none(make: RevocationsFactory) -> None:
    assert await make().valid_from(user()) is None


async def test_raise_to_merges_by_maximum_across_processes(make: RevocationsFactory) -> None:
    first, second = make(), make()
    u = user()

    assert await first.raise_to(u, 3) == 3
    # A reader that read the database before the revocation committed writes its older value late.
    assert await second.raise_to(u, 1) == 3
    assert await second.valid_from(u) == 3
    assert await second.raise_to(u, 4) == 4
    assert await first.valid_from(u) == 4
    assert await first.raise_to(u, 4) == 4


async def test_users_are_independent(make: RevocationsFactory) -> None:
    store = make()
    a, b = user(), user()
    await store.raise_to(a, 7)
    assert await store.valid_from(b) is None
    await store.raise_to(b, 0)
    assert (await store.valid_from(a), await store.valid_from(b)) == (7, 0)


async def test_deleted_sentinel_round_trips(make: RevocationsFactory) -> None:
    store = make()
    u = user()
    await store.raise_to(u, 2)
    assert await store.raise_to(u, DELETED_VALID_FROM) == DELETED_VALID_FROM
    assert await make().valid_from(u) == DELETED_VALID_FROM
    assert await store.raise_to(u, 5) == DELETED_VALID_FROM


async def test_entry_expires_after_its_ttl_and_writes_refresh_it(
    make: RevocationsFactory, backend: str, clock: ManualClock
) -> None:
    ttl_ms = 400 if backend == "redis" else 10_000
    store = make(ttl_ms)
    u = user()
    await store.raise_to(u, 2)
    if backend == "memory":
        clock.advance(ttl_ms - 1)
        await store.raise_to(u, 1)  # refreshes the entry, keeps the maximum
        clock.advance(ttl_ms - 1)
        assert await store.valid_from(u) == 2
        clock.advance(1)
        assert await store.valid_from(u) is None
        return
    assert await store.valid_from(u) == 2
    deadline = time.monotonic() + 5
    while await store.valid_from(u) is not None:
        assert time.monotonic() < deadline, "the entry outlived its TTL"
        await asyncio.sleep(0.05)


async def test_bad_arguments_are_refused(make: RevocationsFactory) -> None:
    store = make()
    with pytest.raises(ValueError):
        await store.raise_to("has space", 1)
    with pytest.raises(ValueError):
        await store.valid_from("{tag}")
    with pytest.raises(ValueError):
        await store.raise_to(user(), -1)
    with pytest.raises(ValueError):
        await store.raise_to(user(), True)


async def test_redis_key_has_the_prefix_and_a_ttl(backend: str, make: RevocationsFactory, keys: Keys) -> None:
    if backend != "redis":
        pytest.skip("Redis key layout")
    store = make()
    u = user()
    await store.raise_to(u, 1)
    client = aioredis.Redis.from_url(redis_test_url())
    try:
        assert keys.revocation(u).startswith(keys.prefix)
        assert await client.get(keys.revocation(u)) == b"1"
        assert 0 < await client.pttl(keys.revocation(u)) <= REVOCATION_TTL_MS
    finally:
        await client.delete(keys.revocation(u))
        await client.aclose()
