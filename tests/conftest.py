"""Shared fixtures: where the real PostgreSQL and Redis used by the tests live.

``TOT_TEST_DATABASE_URL`` names a PostgreSQL server (any database on it; each test session creates and
drops its own database there). ``TOT_TEST_REDIS_URL`` names a Redis database; tests isolate themselves
with random key prefixes, and the few that must flush use this database only.
"""

from __future__ import annotations

import os

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://tot:tot@127.0.0.1:5432/postgres"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/9"


def test_database_url() -> str:
    """The PostgreSQL server URL for tests (SQLAlchemy async form)."""
    return os.environ.get("TOT_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def test_redis_url() -> str:
    """The Redis URL for tests."""
    return os.environ.get("TOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
