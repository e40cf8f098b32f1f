"""Database engine and sessions for the configured ``TOT_DATABASE_URL``.

SQLite (the embedded default) gets the pragmas it needs to behave like a server database: foreign keys
enforced, WAL so readers do not block the writer, and a busy timeout instead of instant "database is
locked" errors under concurrent requests.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from models import sqlite_driver

SQLITE_BUSY_TIMEOUT_MS = 10_000


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
    engine = create_async_engine(url, pool_pre_ping=url.startswith("postgresql"), **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (handlers serialise them afterwards)."""
    return async_sessionmaker(engine, expire_on_commit=False)
