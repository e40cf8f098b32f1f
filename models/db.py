"""Database engine and sessions for the configured ``TOT_DATABASE_URL``.

SQLite (the embedded default) gets the pragmas it needs to behave like a server database: foreign keys
enforced, WAL so readers do not block the writer, and a busy timeout instead of instant "database is
locked" errors under concurrent requests.

PostgreSQL connections are checked before use only when they have been idle (:data:`PING_IDLE_S`): see
:func:`_ping_when_idle`.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from models import sqlite_driver

SQLITE_BUSY_TIMEOUT_MS = 10_000
PING_IDLE_S = 5.0
"""Seconds a pooled PostgreSQL connection may rest before it is pinged at its next checkout."""
_LAST_USED = "tot_last_used"


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(
    url: str, *, pool_size: int | None = None, pool_timeout_s: float | None = None, **kwargs: Any
) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://...`` or ``postgresql+asyncpg://...``).
    SQLite runs on :mod:`models.sqlite_driver` (on the loop's thread, through one pooled connection).

    ``pool_size``: the most PostgreSQL connections the process holds (no overflow beyond it; SQLite
    always has one). ``pool_timeout_s``: how long a session waits for a free connection before
    SQLAlchemy raises ``sqlalchemy.exc.TimeoutError`` (the API answers 503, see ``server/errors.py``);
    SQLAlchemy's own default is 30 s, which under overload held requests for half a minute
    (docs/benchmarks.md, session 4). Neither applies to an in-memory SQLite database (one static
    connection, no pool to wait on)."""
    if url.startswith("sqlite+aiosqlite"):
        kwargs.setdefault("module", sqlite_driver.dbapi())
        database = make_url(url).database
        if database not in (None, "", ":memory:") and "mode=memory" not in url:  # those: StaticPool
            kwargs.setdefault("pool_size", 1)
            kwargs.setdefault("max_overflow", 0)
            if pool_timeout_s is not None:
                kwargs.setdefault("pool_timeout", pool_timeout_s)
    else:
        if pool_size is not None:
            kwargs.setdefault("pool_size", pool_size)
            kwargs.setdefault("max_overflow", 0)
        if pool_timeout_s is not None:
            kwargs.setdefault("pool_timeout", pool_timeout_s)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        _ping_when_idle(engine, PING_IDLE_S)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_s: float) -> None:
    """Ping a pooled connection at checkout when it has rested ``idle_s`` seconds or more (a database
    restarted meanwhile is found there, and the pool connects again: ``DisconnectionError``, retried
    by the pool), instead of SQLAlchemy's ``pool_pre_ping`` at every checkout.

    Why: asyncpg's ping is three round trips (BEGIN, an empty query, ROLLBACK: the transaction keeps
    it pgbouncer-safe), paid by every session before its first statement. A new call and its first
    offer open five or six sessions, each waiting for the next turn of a busy event loop per round
    trip (docs/benchmarks.md, "Issue 16, third session"). A connection in steady use was used a moment
    ago; if the database went away since, its first statement fails (as a request in flight during
    the outage does), SQLAlchemy sees a disconnect and invalidates the whole pool, and the next
    sessions connect afresh."""
    pool = engine.sync_engine.pool
    dialect = engine.dialect

    def checkin(_dbapi: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    def checkout(dbapi: DBAPIConnection, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection) -> None:
        last = record.info.get(_LAST_USED)
        if last is None or time.monotonic() - last < idle_s:
            return  # just connected, or in use a moment ago
        try:
            dialect.do_ping(dbapi)
        except Exception as error:
            raise exc.DisconnectionError("idle connection failed its ping") from error

    event.listen(pool, "checkin", checkin)
    event.listen(pool, "checkout", checkout)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (handlers serialise them afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)
