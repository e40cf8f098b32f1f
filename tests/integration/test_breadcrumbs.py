"""The breadcrumb writer on SQLite and on PostgreSQL/PostGIS: batched INSERTs (never one per fix), the
track in order, a refused call's breadcrumbs dropped alone, batches kept while the database is down."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch.breadcrumbs import BreadcrumbWriter
from dispatch.call_places import CallPlaces
from geo.location_index import DoctorPosition
from models.db import make_engine, make_sessionmaker
from models.repositories import track as track_repo
from tests.conftest import services_of
from tests.helpers import new_call, register

T0 = 1_800_000_000_000


@pytest.fixture
def db(client: httpx.AsyncClient) -> AsyncEngine:
    """The app's own engine (one SQLite connection per process: see tests/conftest.py services_of)."""
    return services_of(client).db


async def _call(sessions: async_sessionmaker[AsyncSession], patient_id: str, lat: float, lon: float) -> str:
    async with sessions.begin() as session:
        call = new_call(patient_id, lat, lon, status="en_route", address="Crumb street 1")
        session.add(call)
    return str(call.id)


@contextlib.contextmanager
def _inserts(engine: AsyncEngine, call_id: str) -> Iterator[list[int]]:
    """Rows per INSERT INTO track_points statement for ``call_id`` sent to the database, as they happen
    (the engine is the app's: its own breadcrumbs are not counted, and the listener goes at the end)."""
    seen: list[int] = []
    call_hex = uuid.UUID(call_id).hex

    def count(_conn: Any, _cursor: Any, statement: str, parameters: Any, _ctx: Any, many: bool) -> None:
        mine = call_hex in repr(parameters).replace("-", "")
        if statement.lstrip().upper().startswith("INSERT INTO TRACK_POINTS") and mine:
            seen.append(len(parameters) if many else 1)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)


def _fix(doctor: str, i: int) -> DoctorPosition:
    return DoctorPosition(doctor, 55.75 + i * 1e-4, 37.62, 5.0, T0 + i * 1000)


async def test_batches_of_many_rows_and_the_track_in_order(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    sessions = make_sessionmaker(db)
    doctor = (await register(client, "doctor"))["user"]["id"]
    patient = (await register(client))["user"]["id"]
    call_id = await _call(sessions, patient, 55.76, 37.62)
    writer = BreadcrumbWriter(sessions, batch_size=100)
    with _inserts(db, call_id) as inserts:
        for i in range(250):
            assert writer.add(call_id, _fix(doctor, i))
        assert inserts == []  # adding is no I/O
        assert await writer.flush() == 250
    assert inserts == [100, 100, 50]  # three statements for 250 fixes
    async with sessions() as session:
        track = await track_repo.track(session, uuid.UUID(call_id))
        places = await track_repo.call_places(session, [uuid.UUID(call_id), uuid.uuid4()])
    assert [round(p.lat, 6) for p in track] == [round(55.75 + i * 1e-4, 6) for i in range(250)]
    assert {str(p.doctor_id) for p in track} == {doctor} and track[0].accuracy_m == 5.0
    assert places == {uuid.UUID(call_id): (55.76, 37.62)}
    cache = CallPlaces(sessions, max_calls=1)
    await cache.load([call_id, "not-a-uuid", str(uuid.uuid4())])
    assert (cache.get(call_id), cache.reads) == ((55.76, 37.62), 1)
    await cache.load([call_id])  # cached: no second read
    assert cache.reads == 1


async def test_a_refused_calls_breadcrumbs_are_dropped_alone(
    client: httpx.AsyncClient, db: AsyncEngine
) -> None:
    sessions = make_sessionmaker(db)
    doctor = (await register(client, "doctor"))["user"]["id"]
    patient = (await register(client))["user"]["id"]
    call_id = await _call(sessions, patient, 55.76, 37.62)
    writer = BreadcrumbWriter(sessions)
    gone = str(uuid.uuid4())  # no such call: the foreign key refuses it
    for i in range(6):
        writer.add(call_id if i % 2 == 0 else gone, _fix(doctor, i))
    writer.add("not-a-call", _fix(doctor, 7))
    assert await writer.flush() == 3
    assert writer.dropped == 4 and len(writer) == 0
    async with sessions() as session:
        assert len(await track_repo.track(session, uuid.UUID(call_id))) == 3


async def test_kept_while_the_database_is_down_then_written_and_written_at_stop(
    client: httpx.AsyncClient, db: AsyncEngine, database_url: str
) -> None:
    sessions = make_sessionmaker(db)
    doctor = (await register(client, "doctor"))["user"]["id"]
    patient = (await register(client))["user"]["id"]
    call_id = await _call(sessions, patient, 55.76, 37.62)
    if database_url.startswith("sqlite"):
        down = make_engine(f"sqlite+aiosqlite:///{uuid.uuid4().hex}/missing/dir.db")
    else:
        down = make_engine(database_url.rsplit("/", 1)[0] + "/no_such_db_" + uuid.uuid4().hex[:8])
    writer = BreadcrumbWriter(make_sessionmaker(down), flush_interval_s=0.05, batch_size=2, max_buffered=4)
    try:
        for i in range(5):
            writer.add(call_id, _fix(doctor, i))
        assert writer.dropped == 1  # over max_buffered: the newest is refused, memory stays bounded
        with pytest.raises(Exception):  # noqa: B017 - the driver's connection error, whatever it is
            await writer.flush()
        assert len(writer) == 4  # the failed batch went back in front
    finally:
        await down.dispose()
    writer.sessions = sessions  # the database is back
    writer.start()
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not len(writer):
            break
    writer.add(call_id, _fix(doctor, 9))
    await writer.stop()  # what is buffered at stop is written
    async with sessions() as session:
        track = await track_repo.track(session, uuid.UUID(call_id))
    assert [p.ts.timestamp() * 1000 for p in track] == [T0 + i * 1000 for i in (0, 1, 2, 3, 9)]
