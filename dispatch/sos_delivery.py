"""Who gets an SOS: every online dispatcher (the ``sos`` channel) and the doctors nearby.

An alert goes to the ``sos`` channel first, then as one batch of ``sos.nearby`` events to the private
channel of every doctor with a fresh position within the radius (not the raiser). Both are staged in
the outbox by the caller's transaction (``dispatch/sos.py``) and published after its commit.
"""

from __future__ import annotations

import math
from typing import Any

from dispatch.publisher import Event, OutboxTransaction
from dispatch.sos_desk import SOS_CHANNEL, alert_json
from geo.distance import haversine_m, metres_per_degree_lat
from geo.location_index import LocationIndex
from models.sos import SosAlert
from realtime.channels import doctor_channel
from realtime.event_types import EventType

NEARBY_LIMIT = 500
"""Most doctors one alert reaches directly (the nearest first); dispatchers see it regardless."""


def stage_raised(tx: OutboxTransaction, alert: SosAlert, repeat: int) -> dict[str, Any]:
    """Stage ``sos.raised`` for the dispatchers (``repeat``: 0 when raised, then how many re-sends);
    returns its data (the base of the doctors' ``sos.nearby``)."""
    data = {**alert_json(alert), "repeat": repeat}
    tx.stage(SOS_CHANNEL, EventType.SOS_RAISED, data)
    return data


def stage_nearby(
    tx: OutboxTransaction, data: dict[str, Any], nearby: list[tuple[str, float]]
) -> dict[str, Any]:
    """Stage ``sos.nearby`` to every doctor of ``nearby`` (:func:`doctors_nearby`), all in one batch: a
    few hundred doctors' channels in one INSERT and one Redis round trip, not one each (measured:
    loadtests/bench_sos.py, docs/benchmarks.md). Returns what the audit keeps:
    ``{"repeat": n, "doctors": [doctor id, ...]}`` (the doctors reached, nearest first)."""
    tx.stage_all(
        [
            Event(doctor_channel(doctor_id), EventType.SOS_NEARBY, {**data, "distance_m": round(distance)})
            for doctor_id, distance in nearby
        ]
    )
    return {"repeat": data["repeat"], "doctors": [d for d, _ in nearby]}


async def doctors_nearby(
    locations: LocationIndex, alert: SosAlert, radius_m: float, position_max_age_s: int
) -> list[tuple[str, float]]:
    """Doctors with a position younger than ``position_max_age_s`` seconds within ``radius_m`` metres
    of the alert, nearest first, not the raiser: ``[(doctor id, distance in metres), ...]``, at most
    :data:`NEARBY_LIMIT`."""
    assert alert.lat is not None and alert.lon is not None
    dlat = radius_m / metres_per_degree_lat()
    dlon = dlat / max(0.01, math.cos(math.radians(alert.lat)))
    box = await locations.within_box(
        max(-85.0, alert.lat - dlat),
        max(-180.0, alert.lon - dlon),
        min(85.0, alert.lat + dlat),
        min(180.0, alert.lon + dlon),
        limit=NEARBY_LIMIT * 4,
        max_age_ms=position_max_age_s * 1000,
    )
    found = []
    for doctor in box:
        p = doctor.position
        if p.doctor_id == str(alert.raised_by):
            continue
        distance = haversine_m(alert.lat, alert.lon, p.lat, p.lon)
        if distance <= radius_m:
            found.append((p.doctor_id, distance))
    return sorted(found, key=lambda item: item[1])[:NEARBY_LIMIT]
