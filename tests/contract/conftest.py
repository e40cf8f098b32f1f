"""The contract suite runs every engine role against both implementations.

A test takes the ``backend`` fixture (``"memory"`` or ``"redis"``) and builds the role it tests with
``redis_client`` and ``keys`` when the backend is Redis. Each test gets a fresh random key prefix, so
tests never see each other's keys and need no flush; a test that must flush uses ``flush_redis``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from realtime.keys import Keys
from tests.conftest import redis_test_url


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which implementation the test runs against."""
    return str(request.param)


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    """A client of the real test Redis (``TOT_TEST_REDIS_URL``); bytes responses, not decoded."""
    client = aioredis.Redis.from_url(redis_test_url())
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def keys() -> Keys:
    """A key factory with a prefix unique to this test."""
    return Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
