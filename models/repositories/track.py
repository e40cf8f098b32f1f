"""Reading and writing doctors' tracks on calls, and where the tracked calls lead to."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from shapely.geometry import Point
from sqlalchemy.ext.asyncio import AsyncSession

from models.calls import Call
from models.track import TrackPoint


@dataclass(frozen=True, slots=True)
class Fix:
    """One stored fix: WGS84 degrees, accuracy in metres, fix time (UTC)."""

    call_id: uuid.UUID
    doctor_id: uuid.UUID
    ts: dt.datetime
    lat: float
    lon: float
    accuracy_m: float | None


async def add_fixes(session: AsyncSession, fixes: Sequence[Fix]) -> int:
    """Insert a batch of fixes as one INSERT statement executed with every row (one round trip on
    asyncpg and SQLite; the caller bounds the batch). Returns how many. Raises SQLAlchemy errors
    (``IntegrityError`` for a call or doctor that does not exist)."""
    if not fixes:
        return 0
    rows = [
        {
            "id": uuid.uuid4(),
            "call_id": f.call_id,
            "doctor_id": f.doctor_id,
            "ts": f.ts,
            "lat": f.lat,
            "lon": f.lon,
            "accuracy_m": f.accuracy_m,
            "location": Point(f.lon, f.lat),
        }
        for f in fixes
    ]
    await session.execute(sa.insert(TrackPoint), rows)
    return len(rows)


async def track(session: AsyncSession, call_id: uuid.UUID) -> list[TrackPoint]:
    """The call's fixes in time order."""
    rows = await session.scalars(
        sa.select(TrackPoint).where(TrackPoint.call_id == call_id).order_by(TrackPoint.ts, TrackPoint.id)
    )
    return list(rows)


async def postgis_length_m(session: AsyncSession, call_id: uuid.UUID) -> float:
    """The track's length in metres measured by PostGIS on the WGS84 spheroid (PostgreSQL only)."""
    length = await session.scalar(
        sa.text(
            "SELECT ST_Length(ST_MakeLine(location::geometry ORDER BY ts, id)::geography) "
            "FROM track_points WHERE call_id = :call_id"
        ),
        {"call_id": call_id},
    )
    return float(length or 0.0)


async def call_places(
    session: AsyncSession, call_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[float, float]]:
    """Where each call is, ``{call id: (lat, lon)}`` in WGS84 degrees, in one SELECT; ids without a
    call are left out."""
    if not call_ids:
        return {}
    rows = await session.execute(sa.select(Call.id, Call.lat, Call.lon).where(Call.id.in_(call_ids)))
    return {call_id: (lat, lon) for call_id, lat, lon in rows.all()}
