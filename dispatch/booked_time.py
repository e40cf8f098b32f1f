"""Booked time kept clear: whether a call would make a doctor miss one of their booked visits.

A non-emergency call is not offered to a doctor who could not be back for a booked visit
(``models/visit_bookings.py``): the doctor is taken until the visit start (``now + ETA``, or a
planned call's time) plus ``visit_estimate_s`` (``TOT_VISIT_ESTIMATE_MIN``), then needs the travel to
the booked place (the ranking's ETA model, ``dispatch/ranking.py``, rounded up to the minute as
bookings' travel is in ``dispatch/slots.py``). Emergencies ignore bookings
(``dispatch/planned_dispatch.py`` releases what they displace). The offer loop learns which
candidates hold a booking in the span with their profiles (``doctor_repo.ratings_and_booked``: no
extra statement) and reads the bookings themselves only for those.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.ranking import RankingSettings
from geo.distance import haversine_m
from models.calls import Call
from models.enums import Urgency
from models.repositories import visit_bookings as visit_repo
from models.visit_bookings import VisitBooking

BOOKED = "booked"
"""The candidates view's reason for a doctor whose booked visit a call would make them miss."""

LOOKAHEAD = dt.timedelta(days=1)
"""How far ahead bookings are read for a search (a visit plus travel within a city is far shorter)."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """Why a doctor is kept from a call: their booking ``booking_id`` starting at ``starts_at``."""

    booking_id: uuid.UUID
    starts_at: dt.datetime
    reason: str = BOOKED


def travel_s(ranking: RankingSettings, lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Driving seconds between two places (WGS84 degrees): the ranking's ETA of the straight line,
    rounded up to the minute as bookings' travel is (``dispatch/slots.py``)."""
    return math.ceil(ranking.eta_s(haversine_m(lat1, lon1, lat2, lon2)) / 60) * 60


def missed(
    call: Call,
    start: dt.datetime,
    bookings: Sequence[VisitBooking],
    ranking: RankingSettings,
    visit_estimate_s: float,
) -> VisitBooking | None:
    """The first of one doctor's ``bookings`` they would miss by a visit to ``call`` starting at
    ``start`` and lasting ``visit_estimate_s``: a booked visit that starts before the doctor is back
    (``start + visit_estimate_s`` + the travel to it) and does not end (plus the travel back) before
    ``start``. The call's own booking and released ones never count. Pure."""
    free = start + dt.timedelta(seconds=visit_estimate_s)
    for booking in bookings:
        if booking.call_id == call.id or not booking.active:
            continue
        travel = dt.timedelta(seconds=travel_s(ranking, call.lat, call.lon, booking.lat, booking.lon))
        if booking.starts_at < free + travel and booking.ends_at + travel > start:
            return booking
    return None


def visit_start(call: Call, now: dt.datetime, eta_s: float) -> dt.datetime:
    """When a doctor ``eta_s`` seconds away would start the call's visit: on arrival, or at a
    planned call's time if later."""
    start = now + dt.timedelta(seconds=eta_s)
    if call.scheduled_at is not None and call.scheduled_at > start:
        return call.scheduled_at
    return start


def booking_conflicts(
    call: Call,
    now: dt.datetime,
    etas: Mapping[uuid.UUID, float],
    bookings: Mapping[uuid.UUID, Sequence[VisitBooking]],
    ranking: RankingSettings,
    visit_estimate_s: float,
) -> dict[uuid.UUID, Conflict]:
    """The doctors (of ``etas``: doctor -> ETA seconds to the call) whose booked visits the call would
    make them miss (:func:`missed`), each with the first such booking. Emergencies: none (they ignore
    bookings). Pure."""
    if call.urgency == Urgency.EMERGENCY.value:
        return {}
    found: dict[uuid.UUID, Conflict] = {}
    for doctor, eta in etas.items():
        start = visit_start(call, now, eta)
        booking = missed(call, start, bookings.get(doctor, ()), ranking, visit_estimate_s)
        if booking is not None:
            found[doctor] = Conflict(booking.id, booking.starts_at)
    return found


def window(call: Call, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The span whose bookings can conflict with ``call`` (UTC datetimes), or None for an emergency
    (it ignores bookings)."""
    if call.urgency == Urgency.EMERGENCY.value:
        return None
    return min(now, call.scheduled_at or now) - LOOKAHEAD, max(now, call.scheduled_at or now) + LOOKAHEAD


async def conflicts_of(
    session: AsyncSession,
    call: Call,
    now: dt.datetime,
    etas: Mapping[uuid.UUID, float],
    ranking: RankingSettings,
    visit_estimate_s: float,
) -> dict[uuid.UUID, Conflict]:
    """:func:`booking_conflicts` with the doctors' bookings read in one query (none for an emergency)."""
    span = window(call, now)
    if span is None or not etas:
        return {}
    since, until = span
    bookings = await visit_repo.active_of_doctors(session, list(etas), since, until)
    return booking_conflicts(call, now, etas, bookings, ranking, visit_estimate_s)
