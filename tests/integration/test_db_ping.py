"""PostgreSQL connections are pinged at checkout only after resting (models/db.py ``_ping_when_idle``):
a connection in steady use costs no round trips, and one whose server process went away while it
rested is replaced before the session's first statement fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from unittest import mock

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from models import db
from models.db import make_engine
from tests.conftest import create_pg_database, drop_pg_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    url = await create_pg_database("tot_ping")
    yield url
    await drop_pg_database(url)


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_in_steady_use_is_not_pinged(pg_url: str) -> None:
    engine = make_engine(pg_url, pool_size=1)
    try:
        with mock.patch.object(engine.dialect, "do_ping", wraps=engine.dialect.do_ping) as ping:
            pids = {await backend_pid(engine) for _ in range(5)}
        assert len(pids) == 1 and ping.call_count == 0
    finally:
        await engine.dispose()


async def test_a_rested_connection_is_pinged_and_replaced_when_its_server_process_is_gone(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # every connection has rested long enough
    engine = make_engine(pg_url, pool_size=1)
    other = make_engine(pg_url, pool_size=1)
    try:
        first = await backend_pid(engine)
        async with other.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with mock.patch.object(engine.dialect, "do_ping", wraps=engine.dialect.do_ping) as ping:
            second = await backend_pid(engine)  # no error: the ping found it dead, the pool reconnected
        assert second != first and ping.call_count >= 1
    finally:
        await engine.dispose()
        await other.dispose()
