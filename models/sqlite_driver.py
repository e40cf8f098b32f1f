"""SQLite on the event loop's own thread: the embedded default's database driver.

Why. aiosqlite runs every sqlite3 call on a thread of its own and hands each result back through the
event loop; SQLAlchemy's adapter makes four such calls per statement (open a cursor, execute, fetch,
close), and each hand-back waits for the loop's current iteration to end. With 10,000 doctors
streaming positions an iteration is long, and the first offer of a new call (about fifteen statements)
spent nearly all its time in those waits: p50 21 s at 10 calls/s on a saturated core, where the same
work done here takes well under a millisecond of CPU (loadtests/bench_dispatch.py, docs/benchmarks.md).
SQLite is an in-process library: a statement on a small database costs tens of microseconds and a
commit one fsync (about 0.25 ms measured on the CI machine's disk), less than a single hand-back.

How. The same API SQLAlchemy's ``sqlite+aiosqlite`` dialect drives (it is passed as the dialect's DB-API
``module``), but every call runs at once on the calling thread: the coroutines never suspend. A
statement is executed, read to the end and its cursor closed in one go; fetches read memory.

What it costs, and the rule it sets. Two connections of one process must never wait for each other's
locks on one thread (the loop would block in ``busy_timeout`` while the holder cannot run), so the
engine keeps **one** connection (``make_engine``): a session holds the database from its first
statement to its end, and other sessions wait for it asynchronously in the pool. Hence the rule: **no
session stays open across slow work that is not the database** (password hashing, HTTP calls, sleeps);
do that work before or after. Another process writing the same file (a CLI command) can make a
statement here wait up to ``busy_timeout`` for its lock, blocking the loop that long.
"""

from __future__ import annotations

import asyncio
import sqlite3
import types
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

_Row = Any
_Description = Any


class _Inline:
    """Stands for aiosqlite's queue to its thread (SQLAlchemy sets ``isolation_level`` through it):
    runs each function at once and completes its future."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting caller, as aiosqlite's thread does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineCursor:
    """A DB-API cursor with coroutine methods that never suspend: ``execute`` runs the statement and
    reads every row; fetches read those rows from memory."""

    def __init__(self, conn: InlineConnection) -> None:
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._rows: deque[_Row] = deque()
        self._description: _Description = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self.arraysize = 1

    def _statement(self, sql: str, parameters: Any, many: bool) -> InlineCursor:
        cursor = self._conn._conn.cursor()
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            self._rows = deque(cursor.fetchall() if cursor.description else ())
            self._description = cursor.description
            self._rowcount = cursor.rowcount
            self._lastrowid = cursor.lastrowid
        finally:
            cursor.close()
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> InlineCursor:
        """Run one statement; its rows wait in memory for the fetches."""
        return self._statement(sql, () if parameters is None else parameters, False)

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> InlineCursor:
        """Run one statement for each parameter set."""
        return self._statement(sql, parameters, True)

    async def executescript(self, sql_script: str) -> InlineCursor:
        """Run a script (no rows)."""
        self._conn._conn.executescript(sql_script)
        self._rows, self._description, self._rowcount = deque(), None, -1
        return self

    async def fetchone(self) -> _Row | None:
        """The next row, or None."""
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> Sequence[_Row]:
        """Up to ``size`` (default ``arraysize``) next rows."""
        n = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(n, len(self._rows)))]

    async def fetchall(self) -> Sequence[_Row]:
        """Every remaining row."""
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        """Drop unread rows (the sqlite3 cursor closed with its statement)."""
        self._rows.clear()

    async def nextset(self) -> None:
        """SQLite statements have one result set."""
        return None

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def rowcount(self) -> int:
        """Rows changed by the last DML statement (sqlite3's meaning), -1 otherwise."""
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        """The rowid of the last inserted row."""
        return self._lastrowid

    @property
    def description(self) -> _Description:
        """Column descriptions of the last statement (DB-API), None for statements without rows."""
        return self._description


class InlineConnection:
    """What SQLAlchemy's aiosqlite adapter expects of ``aiosqlite.Connection``, run inline."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        self._connector = connector
        self._connection: sqlite3.Connection | None = None
        self._iter_chunk_size = iter_chunk_size
        self._tx = _Inline()
        self._thread = types.SimpleNamespace(daemon=True)  # the adapter marks aiosqlite's thread daemon

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        if self._connection is None:
            self._connection = self._connector()
        return self
        yield  # a generator that returns at once: awaiting the connection opens it, inline

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @contextmanager
    async def cursor(self) -> aiosqlite.Cursor:
        """A new cursor (typed as aiosqlite's for the context manager it comes in)."""
        return InlineCursor(self)  # type: ignore[return-value]

    async def commit(self) -> None:
        """Commit the current transaction."""
        self._conn.commit()

    async def rollback(self) -> None:
        """Roll back the current transaction."""
        self._conn.rollback()

    async def close(self) -> None:
        """Close the connection (again: no-op)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def stop(self) -> None:
        """Force-close (SQLAlchemy's terminate)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        """``sqlite3.Connection.create_function``."""
        self._conn.create_function(*args, **kwargs)

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open."""
        return self._conn.in_transaction

    @property
    def isolation_level(self) -> str | None:
        """sqlite3's isolation level (SQLAlchemy sets it through ``_tx``)."""
        return self._conn.isolation_level

    @property
    def row_factory(self) -> Any:
        """sqlite3's row factory."""
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._conn.row_factory = factory


class _Module:
    """What SQLAlchemy's aiosqlite adapter reads off the ``aiosqlite`` module."""

    Connection = InlineConnection
    DatabaseError = aiosqlite.DatabaseError
    Error = aiosqlite.Error
    IntegrityError = aiosqlite.IntegrityError
    NotSupportedError = aiosqlite.NotSupportedError
    OperationalError = aiosqlite.OperationalError
    ProgrammingError = aiosqlite.ProgrammingError
    sqlite_version = aiosqlite.sqlite_version
    sqlite_version_info = aiosqlite.sqlite_version_info
    __version__ = aiosqlite.__version__

    @staticmethod
    def connect(database: str, *, iter_chunk_size: int = 64, **kwargs: Any) -> InlineConnection:
        """Like ``aiosqlite.connect``: the connection to await."""
        return InlineConnection(lambda: sqlite3.connect(database, **kwargs), iter_chunk_size)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DB-API module to pass as ``create_async_engine(..., module=dbapi())`` for
    ``sqlite+aiosqlite://`` URLs (with one pooled connection: see the module's docstring)."""
    return AsyncAdapt_aiosqlite_dbapi(_Module, sqlite3)  # type: ignore[arg-type]
