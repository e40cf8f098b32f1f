"""The doctors a dispatcher may hand a call to, nearest first (the console's ranked list).

The offer loop ranks candidates by ETA bucket, rating and fairness (``dispatch/ranking.py``); a
dispatcher choosing by hand wants the plain picture instead: the available doctors nearest to the
call, with their distance and ETA, their rating, and whether they serve the call's zone (a dispatcher
may override zones; the loop never does), and whether taking it would make them miss a booked visit
(``reason`` ``booked``, ``dispatch/booked_time.py``: the loop leaves such doctors out of a
non-emergency call; the list shows them, with the visit's start). Only doctors the live index shows
as ``available`` with a fresh position are listed; a dispatcher who reached a doctor on a break by phone
assigns them by id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.booked_time import conflicts_of
from dispatch.ranking import RankingSettings
from geo.location_index import MAX_RADIUS_M, LocationIndex
from models.calls import Call
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from models.repositories import zones as zone_repo

MAX_CANDIDATES = 50


@dataclass(frozen=True, slots=True)
class HandCandidate:
    """One doctor for the dispatcher's list.

    ``distance_m``: great-circle metres from the call; ``eta_s``: the ranking's straight-line ETA in
    seconds; ``lat``/``lon``: WGS84 degrees; ``fix_ms``: time of the position (epoch ms);
    ``rating``: 1-5 or ``None``; ``serves_zone``: the doctor serves the call's zone; ``reason``:
    ``booked`` when the call would make the doctor miss a booked visit starting at ``booked_at_ms``
    (epoch ms), else None."""

    doctor_id: str
    name: str
    distance_m: float
    eta_s: float
    lat: float
    lon: float
    fix_ms: int
    rating: float | None
    serves_zone: bool
    specialties: tuple[str, ...]
    reason: str | None = None
    booked_at_ms: int | None = None


async def nearest_for_call(
    call: Call,
    locations: LocationIndex,
    sessions: async_sessionmaker[AsyncSession],
    ranking: RankingSettings,
    *,
    limit: int = 10,
    radius_m: float = MAX_RADIUS_M,
    max_age_ms: int = 60_000,
    any_specialty: bool = False,
    now: dt.datetime | None = None,
    visit_estimate_s: float = 3600.0,
) -> list[HandCandidate]:
    """Up to ``limit`` (1-50) available doctors within ``radius_m`` metres of the call, nearest first
    (ties by doctor id), with the call's specialty unless ``any_specialty``. Doctors without a
    verified profile are left out. With ``now`` (aware UTC), doctors the call would make miss a
    booked visit (``visit_estimate_s`` the visit's assumed length) carry ``reason``. Raises
    ``ValueError`` for a limit or radius out of range."""
    if not 1 <= limit <= MAX_CANDIDATES:
        raise ValueError(f"limit must be within 1-{MAX_CANDIDATES}")
    found = await locations.nearest_available(
        call.lat,
        call.lon,
        radius_m=radius_m,
        k=limit,
        specialty=None if any_specialty else call.specialty,
        max_age_ms=max_age_ms,
    )
    ids = [uuid.UUID(n.doctor_id) for n in found]
    async with sessions() as session:
        ratings = await doctor_repo.ratings(session, ids)
        names = await user_repo.full_names(session, ids)
        serving = await zone_repo.doctors_serving(session, ids, call.zone_id) if call.zone_id else set(ids)
        etas = {uuid.UUID(n.doctor_id): ranking.eta_s(n.distance_m) for n in found}
        booked = {}
        if now is not None:
            booked = await conflicts_of(session, call, now, etas, ranking, visit_estimate_s)
    specialties = {n.doctor_id: await locations.get_specialties(n.doctor_id) for n in found}
    result = []
    for near, doctor_id in zip(found, ids, strict=True):
        if doctor_id not in ratings:
            continue  # not a verified doctor (the index should not hold one)
        p = near.position
        result.append(
            HandCandidate(
                doctor_id=near.doctor_id,
                name=names.get(doctor_id, ""),
                distance_m=round(near.distance_m, 1),
                eta_s=round(ranking.eta_s(near.distance_m)),
                lat=p.lat,
                lon=p.lon,
                fix_ms=p.ts_ms,
                rating=ratings[doctor_id],
                serves_zone=doctor_id in serving,
                specialties=tuple(sorted(specialties[near.doctor_id])),
                reason=None if doctor_id not in booked else booked[doctor_id].reason,
                booked_at_ms=(
                    None if doctor_id not in booked else int(booked[doctor_id].starts_at.timestamp() * 1000)
                ),
            )
        )
    return result
