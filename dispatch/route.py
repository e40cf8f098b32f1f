"""A call's route: the assigned doctor's stored fixes as a GeoJSON line with its length in metres
(PostGIS on PostgreSQL; the same ellipsoidal measure in Python on SQLite, ``geo/route.py``)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import CallService, Who
from dispatch.errors import not_found
from dispatch.events import epoch_ms
from geo.route import route_length_m
from models.repositories import calls as call_repo
from models.repositories import track as track_repo


async def call_route(
    sessions: async_sessionmaker[AsyncSession], who: Who, call_id: uuid.UUID
) -> dict[str, Any]:
    """``{"type": "Feature", "geometry": LineString (lon, lat), "properties": {length_m, points,
    started_at, ended_at, measured_by}}`` for the call's parties. Raises ``DispatchError`` 404."""
    async with sessions() as session:
        call = await call_repo.get_call(session, call_id)
        if call is None:
            raise not_found("call")
        CallService.actor_for(who, call)
        points = await track_repo.track(session, call_id)
        postgres = session.get_bind().dialect.name == "postgresql"
        length = await track_repo.postgis_length_m(session, call_id) if postgres and len(points) > 1 else None
    if length is None:
        length = route_length_m([(p.lat, p.lon) for p in points])
    return {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[p.lon, p.lat] for p in points]},
        "properties": {
            "call": str(call_id),
            "length_m": round(length, 3),
            "points": len(points),
            "started_at": epoch_ms(points[0].ts) if points else None,
            "ended_at": epoch_ms(points[-1].ts) if points else None,
            "measured_by": "postgis" if postgres else "geographiclib",
        },
    }
