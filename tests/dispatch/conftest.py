"""Fixtures of the in-process dispatch suite: one migrated SQLite template per session, a copy of it
and a fresh :class:`~tests.dispatch.world.World` per test."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from migrations import runner
from tests.conftest import create_migrated_pg_database, drop_pg_database
from tests.dispatch.world import World, open_world


@pytest.fixture(scope="session")
async def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head, copied by every test (migrating takes seconds, copying not)."""
    path = tmp_path_factory.mktemp("dispatch") / "template.db"
    await asyncio.to_thread(runner.upgrade, f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def world(template_db: Path, tmp_path: Path) -> AsyncIterator[World]:
    """The dispatch core on its own copy of the database, with default settings."""
    path = tmp_path / "world.db"
    shutil.copyfile(template_db, path)
    async with open_world(f"sqlite+aiosqlite:///{path}") as w:
        yield w


WorldFactory = Callable[..., contextlib.AbstractAsyncContextManager[World]]


@pytest.fixture
def make_world(template_db: Path, tmp_path: Path) -> WorldFactory:
    """Open more worlds, or worlds with other settings: ``async with make_world(settings=...) as w``
    (keyword arguments of :func:`~tests.dispatch.world.open_world`)."""
    count = 0

    def make(**kwargs: Any) -> contextlib.AbstractAsyncContextManager[World]:
        nonlocal count
        count += 1
        path = tmp_path / f"world{count}.db"
        shutil.copyfile(template_db, path)
        return open_world(f"sqlite+aiosqlite:///{path}", **kwargs)

    return make


@pytest.fixture(params=["sqlite", "postgresql"])
async def pworld(request: pytest.FixtureRequest, template_db: Path, tmp_path: Path) -> AsyncIterator[World]:
    """The dispatch core on a fresh database of either kind, its clock at 2027-03-01 08:00 UTC."""
    if request.param == "sqlite":
        path = tmp_path / "world.db"
        shutil.copyfile(template_db, path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = await create_migrated_pg_database("tot_planned_dispatch")
    try:
        async with open_world(url) as world:
            world.clock.set(int(dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC).timestamp() * 1000))
            yield world
    finally:
        if request.param != "sqlite":
            await drop_pg_database(url)
