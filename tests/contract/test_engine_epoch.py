"""Contract of EngineEpoch (the live engine's life marker and rebuild lock), on memory and Redis."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from dispatch.engine_epoch import EngineEpoch, MemoryEngineEpoch, RedisEngineEpoch, new_epoch
from realtime.keys import Keys
from tests.clock import ManualClock
from tests.contract.live_engine import (  # noqa: F401 - fixtures register by import
    LiveFactory,
    make_live_fixture,
    redis_pair_fixture,
)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def epoch(
    redis_pair: tuple[aioredis.Redis, Keys] | None, make_live: LiveFactory, clock: ManualClock
) -> EngineEpoch:
    """The role on the test's backend, with a 1 s lease (Redis expires it on its own clock). The
    test's Redis keys go with ``make_live``'s clean-up (its prefix)."""
    if redis_pair is None:
        return MemoryEngineEpoch(clock=clock, lease_ms=1_000)
    client, keys = redis_pair
    return RedisEngineEpoch(client, keys, lease_ms=1_000)


async def test_a_new_engine_has_no_epoch_and_the_first_settle_wins(epoch: EngineEpoch) -> None:
    assert await epoch.get() is None
    first, second = new_epoch(), new_epoch()
    assert first != second and len(first) == 16
    assert await epoch.settle(first) == first
    assert await epoch.settle(second) == first  # SET NX: the epoch in force is kept
    assert await epoch.get() == first


async def test_one_process_holds_the_rebuild_lock(epoch: EngineEpoch) -> None:
    assert await epoch.lock("a")
    assert not await epoch.lock("b")
    await epoch.unlock("b")  # not b's to give back
    assert not await epoch.lock("b")
    await epoch.unlock("a")
    assert await epoch.lock("b")


@pytest.mark.parametrize("backend", ["memory"])
async def test_the_lease_ends_on_its_own(epoch: EngineEpoch, clock: ManualClock) -> None:
    """A process that died while rebuilding lets another take over after the lease (memory: the
    engine clock; Redis: its own PX, checked below)."""
    assert await epoch.lock("a")
    clock.advance(999)
    assert not await epoch.lock("b")
    clock.advance(1)
    assert await epoch.lock("b")


@pytest.mark.parametrize("backend", ["redis"])
async def test_redis_keys_and_lease(epoch: EngineEpoch, redis_client: aioredis.Redis, keys: Keys) -> None:
    """The epoch has no TTL (it lives exactly as long as the engine's keys); the lock has the lease."""
    await epoch.settle("e1")
    assert await redis_client.get(keys.engine_epoch()) == b"e1"
    assert await redis_client.pttl(keys.engine_epoch()) == -1
    assert await epoch.lock("a")
    assert 0 < await redis_client.pttl(keys.engine_rebuild_lock()) <= 1_000
    await redis_client.delete(keys.engine_epoch())  # a flush, as far as this role can tell
    assert await epoch.get() is None
    assert await epoch.settle("e2") == "e2"
