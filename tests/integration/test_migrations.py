"""Alembic migrations run up to head and back down to base on both databases, and the models match
what the migrations build (no drift)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import models
from migrations import runner
from models.db import make_engine
from tests.conftest import create_pg_database, drop_pg_database
from tests.helpers import as_cli

EXPECTED_TABLES = {
    "users",
    "calendar_feeds",
    "clinics",
    "doctor_profiles",
    "doctor_zones",
    "zones",
    "calls",
    "call_events",
    "offers",
    "chat_messages",
    "sos_alerts",
    "ratings",
    "sos_events",
    "track_points",
    "outbox",
    "outbox_relay_lease",
    "share_links",
    "notifications",
    "notify_throttle",
    "notify_preferences",
    "telegram_links",
    "telegram_link_tokens",
    "telegram_updates",
    "clinic_admins",
    "clinic_services",
    "doctor_schedules",
    "doctor_services",
    "visit_bookings",
    "push_subscriptions",
    "offer_seen",
    "phone_codes",
}


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A brand-new empty database of each dialect."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('mig') / 'empty.db'}"
        return
    url = await create_pg_database("tot_mig")
    yield url
    await drop_pg_database(url)


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"spatial_ref_sys"}


async def _gist_indexes(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.text("SELECT indexname FROM pg_indexes WHERE indexdef ILIKE '%USING gist%'")
            )
            return {r[0] for r in rows}
    finally:
        await engine.dispose()


async def test_upgrade_to_head_then_down_to_base(empty_database: str) -> None:
    assert await _tables(empty_database) == set()

    await asyncio.to_thread(runner.upgrade, empty_database)
    assert await _tables(empty_database) == EXPECTED_TABLES | {"alembic_version"}
    if empty_database.startswith("postgresql"):
        assert {"ix_calls_location_gist", "ix_zones_area_gist"} <= await _gist_indexes(empty_database)

    await asyncio.to_thread(runner.downgrade, empty_database)
    assert await _tables(empty_database) == {"alembic_version"}

    # And up again: a downgrade must leave nothing behind that breaks the next upgrade.
    await asyncio.to_thread(runner.upgrade, empty_database)
    assert await _tables(empty_database) == EXPECTED_TABLES | {"alembic_version"}


async def test_models_match_migrations(database_url: str) -> None:
    """Autogenerate against a migrated database finds nothing to change."""
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:

            def diff(sync_conn: sa.Connection) -> list[object]:
                context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return list(compare_metadata(context, models.Base.metadata))

            changes = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    # GiST indexes exist only on PostgreSQL; spatial_ref_sys belongs to PostGIS.
    relevant = [c for c in changes if "spatial_ref_sys" not in repr(c) and "gist" not in repr(c).lower()]
    assert relevant == []


async def test_geography_round_trip(database_url: str) -> None:
    """A call's location goes in as a shapely point and comes out equal, on both databases."""
    # As another process would (tests/helpers.py as_cli): the session's app may hold the SQLite file.
    await as_cli(_geography_round_trip(database_url))


async def _geography_round_trip(database_url: str) -> None:
    import uuid

    from shapely.geometry import Point

    from models.calls import Call
    from models.db import make_sessionmaker
    from models.users import User

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            user = User(
                email=f"geo-{uuid.uuid4().hex[:8]}@example.org",
                password_hash="x",
                full_name="G",
                role="patient",
            )
            session.add(user)
            await session.flush()
            call = Call(
                patient_id=user.id,
                created_by=user.id,
                address="Tverskaya 1",
                location=Point(37.6117, 55.7575),
                lat=55.7575,
                lon=37.6117,
                h3_cell="8811aa6a3dfffff",
                urgency="urgent",
                specialty="therapist",
            )
            session.add(call)
        async with make_sessionmaker(engine)() as session:
            loaded = await session.get(Call, call.id)
            assert loaded is not None
            assert loaded.location.equals_exact(Point(37.6117, 55.7575), 1e-9)
            assert loaded.created_at.tzinfo is not None
    finally:
        await engine.dispose()
