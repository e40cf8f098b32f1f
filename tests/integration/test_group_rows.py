"""Notification rows on both databases: a group chat's row (no person) is written once per (event,
channel), however often the event is derived, beside the people's rows of the same event (their own
UNIQUE key); phone codes count wrong tries and their one use exactly (models/repositories/)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.repositories import notifications as repo
from models.repositories import phone_codes as codes
from models.repositories import users as user_repo
from tests.conftest import create_migrated_pg_database, drop_pg_database, migrated_sqlite_url


@pytest.fixture(params=["sqlite", "postgresql"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        # Off the loop: the first call migrates the template, and alembic runs a loop of its own.
        url = await asyncio.to_thread(migrated_sqlite_url, tmp_path / "rows.db")
    else:
        url = await create_migrated_pg_database("tot_rows")
    engine = make_engine(url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()
        if request.param == "postgresql":
            await drop_pg_database(url)


def _row(event: int, person: uuid.UUID | None, channel: str) -> dict[str, Any]:
    return {
        "event_id": event,
        "person_id": person,
        "channel": channel,
        "kind": "escalated",
        "params": "{}",
        "call_id": None,
        "status": "queued",
        "attempts": 0,
        "last_error": None,
        "next_attempt_ms": 0,
        "lease_until_ms": 0,
        "created_ms": 0,
        "sent_ms": None,
    }


async def test_a_group_row_is_written_once_per_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        person = await user_repo.create_user(
            session, email="d@rows.test", phone=None, password_hash="x", full_name="D", role=Role.DISPATCHER
        )
        rows = [_row(1, None, "tg_group"), _row(1, person.id, "telegram"), _row(2, None, "tg_group")]
        assert await repo.insert_notifications(session, rows) == 3
    async with sessions.begin() as session:  # a second derivation of both events adds nothing
        assert await repo.insert_notifications(session, rows) == 0
        assert await repo.insert_notifications(session, [_row(1, None, "other_group")]) == 1


async def test_a_code_counts_its_wrong_tries_and_its_one_use(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions.begin() as session:
        user = await user_repo.create_user(
            session, email=None, phone="+79990000001", password_hash="x", full_name="P", role=Role.PATIENT
        )
        user.phone_confirmed = False
        await codes.put_code(session, user.id, "a" * 64, now_ms=1_000, expires_ms=2_000)
        person = user.id
    async with sessions.begin() as session:
        assert await codes.count_wrong(session, person, "a" * 64, max_attempts=2)
        assert await codes.count_wrong(session, person, "a" * 64, max_attempts=2)
        assert not await codes.count_wrong(session, person, "a" * 64, max_attempts=2)  # dead now
        assert await codes.live_code(session, person, 1_500, max_attempts=2) is None
        assert not await codes.use_code(session, person, "a" * 64, 1_500, max_attempts=2)
    async with sessions.begin() as session:  # a new code: tries start again; used once, never twice
        await codes.put_code(session, person, "b" * 64, now_ms=1_000, expires_ms=2_000)
    async with sessions.begin() as session:
        assert not await codes.use_code(session, person, "a" * 64, 1_500, max_attempts=2)  # replaced
        assert not await codes.use_code(session, person, "b" * 64, 2_000, max_attempts=2)  # expired
        assert await codes.use_code(session, person, "b" * 64, 1_500, max_attempts=2)
        assert not await codes.use_code(session, person, "b" * 64, 1_600, max_attempts=2)
        confirmed = await codes.by_phone(session, "+79990000001")
        assert confirmed is not None
        await session.refresh(confirmed)
        assert confirmed.phone_confirmed
