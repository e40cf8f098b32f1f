"""Reading and writing service zones and the zones each doctor is limited to.

A doctor with no ``doctor_zones`` rows serves every zone; a doctor with rows serves exactly those.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa
from shapely.geometry import MultiPolygon, box
from sqlalchemy.ext.asyncio import AsyncSession

from models.doctor_zones import DoctorZone
from models.doctors import DoctorProfile
from models.zones import Zone

T = TypeVar("T")

_CHUNK = 500
"""Ids per ``IN (...)`` list: far below SQLite's and asyncpg's bind-parameter limits."""

GEOMETRY_TOLERANCE_DEG = 1e-9
"""Coordinates closer than this (about 0.1 mm) count as equal when deciding whether a zone changed."""


@dataclass(frozen=True)
class ZoneData:
    """A zone to store: stable ``code``, display ``name``, ``area`` in WGS84 (lon, lat) degrees."""

    code: str
    name: str
    area: MultiPolygon


@dataclass
class UpsertResult:
    """The codes created, updated (name or area changed) and left as they were."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


class UnknownZones(Exception):
    """Some zone ids do not exist (``missing`` lists them)."""

    def __init__(self, missing: Sequence[uuid.UUID]) -> None:
        super().__init__(f"no such zone: {', '.join(str(z) for z in missing)}")
        self.missing = list(missing)


class NoSuchDoctor(Exception):
    """No doctor profile has this user id."""


def _chunks(items: Sequence[T]) -> Iterable[list[T]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])


def _same_area(a: MultiPolygon, b: MultiPolygon) -> bool:
    return bool(a.normalize().equals_exact(b.normalize(), GEOMETRY_TOLERANCE_DEG))


async def upsert_zones(session: AsyncSession, zones: Sequence[ZoneData]) -> UpsertResult:
    """Insert new codes and update the name and area of existing ones (flushed, not committed).

    Codes must be unique within ``zones``. Zones not in ``zones`` are left alone.
    """
    codes = [z.code for z in zones]
    existing: dict[str, Zone] = {}
    for chunk in _chunks(codes):
        for row in await session.scalars(sa.select(Zone).where(Zone.code.in_(chunk))):
            existing[row.code] = row
    result = UpsertResult()
    for data in zones:
        zone = existing.get(data.code)
        if zone is None:
            session.add(Zone(code=data.code, name=data.name, area=data.area))
            result.created.append(data.code)
        elif zone.name != data.name or not _same_area(zone.area, data.area):
            zone.name = data.name
            zone.area = data.area
            result.updated.append(data.code)
        else:
            result.unchanged.append(data.code)
    await session.flush()
    return result


async def list_zones(
    session: AsyncSession, *, bbox: tuple[float, float, float, float] | None = None
) -> list[Zone]:
    """Every zone by code; with ``bbox = (west, south, east, north)`` in degrees, only those whose
    area intersects that box. Zones are few (hundreds), so the box is tested in Python, identically on
    both databases."""
    zones = list(await session.scalars(sa.select(Zone).order_by(Zone.code)))
    if bbox is None:
        return zones
    window = box(*bbox)
    return [z for z in zones if z.area.intersects(window)]


async def zones_except(session: AsyncSession, codes: Iterable[str]) -> list[Zone]:
    """The zones whose code is not in ``codes``, by code."""
    keep = set(codes)
    return [z for z in await list_zones(session) if z.code not in keep]


async def zones_by_ids(session: AsyncSession, zone_ids: Sequence[uuid.UUID]) -> list[Zone]:
    """The zones with these ids (unknown ids are ignored), by code."""
    found: list[Zone] = []
    for chunk in _chunks(zone_ids):
        found.extend(await session.scalars(sa.select(Zone).where(Zone.id.in_(chunk))))
    return sorted(found, key=lambda z: z.code)


async def delete_zones(session: AsyncSession, zone_ids: Sequence[uuid.UUID]) -> int:
    """Delete zones by id (their doctor limits go with them; calls keep a null zone). Returns how many."""
    deleted = 0
    for chunk in _chunks(zone_ids):
        result = await session.execute(
            sa.delete(Zone).where(Zone.id.in_(chunk)).execution_options(synchronize_session=False)
        )
        deleted += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return deleted


async def doctor_counts(session: AsyncSession, zone_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """For each of ``zone_ids`` that some doctor is limited to: how many doctors are."""
    counts: dict[uuid.UUID, int] = {}
    for chunk in _chunks(zone_ids):
        rows = await session.execute(
            sa.select(DoctorZone.zone_id, sa.func.count())
            .where(DoctorZone.zone_id.in_(chunk))
            .group_by(DoctorZone.zone_id)
        )
        counts.update({zone_id: int(n) for zone_id, n in rows.all()})
    return counts


async def set_doctor_zones(
    session: AsyncSession, doctor_id: uuid.UUID, zone_ids: Iterable[uuid.UUID]
) -> None:
    """Limit a doctor to exactly ``zone_ids`` (an empty set: serves every zone). Flushed, not committed.

    The doctor's profile row is locked (``FOR UPDATE`` on PostgreSQL; SQLite serialises writers), so
    two concurrent updates apply one after the other. Raises :class:`NoSuchDoctor` when ``doctor_id``
    has no doctor profile and :class:`UnknownZones` when some zone id does not exist.
    """
    wanted = sorted(set(zone_ids))
    locked = await session.scalar(
        sa.select(DoctorProfile.user_id).where(DoctorProfile.user_id == doctor_id).with_for_update()
    )
    if locked is None:
        raise NoSuchDoctor(str(doctor_id))
    found: set[uuid.UUID] = set()
    for chunk in _chunks(wanted):
        found.update(await session.scalars(sa.select(Zone.id).where(Zone.id.in_(chunk))))
    missing = [z for z in wanted if z not in found]
    if missing:
        raise UnknownZones(missing)
    await session.execute(sa.delete(DoctorZone).where(DoctorZone.doctor_id == doctor_id))
    if wanted:
        await session.execute(
            sa.insert(DoctorZone), [{"doctor_id": doctor_id, "zone_id": zone_id} for zone_id in wanted]
        )
    await session.flush()


async def get_doctor_zones(session: AsyncSession, doctor_id: uuid.UUID) -> list[Zone]:
    """The zones a doctor is limited to, by code (empty: the doctor serves every zone)."""
    rows = await session.scalars(
        sa.select(Zone)
        .join(DoctorZone, DoctorZone.zone_id == Zone.id)
        .where(DoctorZone.doctor_id == doctor_id)
        .order_by(Zone.code)
    )
    return list(rows)


async def doctors_serving(
    session: AsyncSession, doctor_ids: Iterable[uuid.UUID], zone_id: uuid.UUID | None
) -> set[uuid.UUID]:
    """Those of ``doctor_ids`` who serve ``zone_id``: doctors with no zone rows (they serve
    everywhere) and doctors limited to zones among which is ``zone_id``.

    ``zone_id`` ``None`` (a call in no zone: only possible while no zones exist, or for a call made
    before they did) is served by the unlimited doctors only. One query per 500 doctors.
    """
    ids = sorted(set(doctor_ids))
    limited: set[uuid.UUID] = set()
    serving_here: set[uuid.UUID] = set()
    for chunk in _chunks(ids):
        rows = await session.execute(
            sa.select(DoctorZone.doctor_id, DoctorZone.zone_id).where(DoctorZone.doctor_id.in_(chunk))
        )
        for doctor_id, zone in rows.all():
            limited.add(doctor_id)
            if zone_id is not None and zone == zone_id:
                serving_here.add(doctor_id)
    return (set(ids) - limited) | serving_here
