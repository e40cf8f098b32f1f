"""Fixtures of the notification tests: the dispatch suite's world (tests/dispatch/world.py) on both
databases of record: a copy of one migrated SQLite template, and a copy of the migrated PostgreSQL
template (the sender's claims, leases and throttle are SQL that differs between them). ``make_world``
stays on SQLite."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import create_migrated_pg_database, drop_pg_database
from tests.dispatch.conftest import make_world, pworld, template_db
from tests.dispatch.world import World, open_world

__all__ = ["make_world", "pworld", "template_db", "world"]


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, template_db: Path, tmp_path: Path) -> AsyncIterator[World]:
    """The dispatch core with default settings on its own database of the parameter's kind."""
    if request.param == "sqlite":
        path = tmp_path / "world.db"
        shutil.copyfile(template_db, path)
        async with open_world(f"sqlite+aiosqlite:///{path}") as w:
            yield w
        return
    url = await create_migrated_pg_database("tot_notify")
    try:
        async with open_world(url) as w:
            yield w
    finally:
        await drop_pg_database(url)
