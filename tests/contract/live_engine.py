"""A LocationIndex and DoctorStates pair on one backend, for the contract suites of both roles.

The two roles share doctor records (availability reaches the index inside the compare-and-set), so
their contract tests build them together: ``MemoryDoctorStates(index=...)`` in memory, the same
``Keys`` on one Redis. Test modules import the ``*_fixture`` functions to register the fixtures
``live``, ``make_live`` and ``redis_pair``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from dispatch.doctor_states import DoctorStates
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.doctor_states_redis import RedisDoctorStates
from geo.location_index import POSITION_TTL_MS, LocationIndex
from geo.location_index_memory import MemoryLocationIndex
from geo.location_index_redis import RedisLocationIndex
from realtime.keys import Keys
from tests.clock import ManualClock


@dataclass
class Live:
    """One backend's index and states sharing ``clock``; ``redis``/``keys`` are set for Redis."""

    backend: str
    index: LocationIndex
    states: DoctorStates
    clock: ManualClock
    redis: aioredis.Redis | None
    keys: Keys | None

    async def elapse(self, ms: int) -> None:
        """Let ``ms`` of engine time pass; on Redis also of real time, since Redis expires keys on
        its own clock."""
        self.clock.advance(ms)
        if self.redis is not None:
            await asyncio.sleep(ms / 1000)


LiveFactory = Callable[..., Live]


@pytest.fixture(name="redis_pair")
def redis_pair_fixture(backend: str, request: pytest.FixtureRequest) -> tuple[aioredis.Redis, Keys] | None:
    """The Redis client and key factory when the backend is Redis (not even connected for memory)."""
    if backend != "redis":
        return None
    return request.getfixturevalue("redis_client"), request.getfixturevalue("keys")


@pytest.fixture(name="make_live")
async def make_live_fixture(
    backend: str, redis_pair: tuple[aioredis.Redis, Keys] | None
) -> AsyncIterator[LiveFactory]:
    """Build :class:`Live` bundles on the test's backend; deletes the test's Redis keys afterwards."""

    def make(*, position_ttl_ms: int = POSITION_TTL_MS, clock: ManualClock | None = None) -> Live:
        clock = clock or ManualClock()
        if redis_pair is None:
            mem_index = MemoryLocationIndex(clock=clock, position_ttl_ms=position_ttl_ms)
            return Live(
                backend, mem_index, MemoryDoctorStates(clock=clock, index=mem_index), clock, None, None
            )
        client, keys = redis_pair
        return Live(
            backend,
            RedisLocationIndex(client, keys, clock=clock, position_ttl_ms=position_ttl_ms),
            RedisDoctorStates(client, keys, clock=clock),
            clock,
            client,
            keys,
        )

    yield make
    if redis_pair is not None:
        client, keys = redis_pair
        stale = [key async for key in client.scan_iter(match=f"{keys.prefix}*", count=1000)]
        if stale:
            await client.delete(*stale)


@pytest.fixture(name="live")
def live_fixture(make_live: LiveFactory) -> Live:
    """The default bundle: standard TTL, a manual clock at :data:`START_MS`."""
    return make_live()
