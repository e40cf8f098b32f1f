"""What a visit booking holds of its doctor's time, kept right as bookings come and go.

A booking's hold is ``[held_from, held_until)``: the service's buffer before the visit and the travel
from the doctor's previous visit of the same local day (``travel_s``) before it, the buffer after
(``dispatch/slots.py``). The travel depends on the previous visit, so when a visit is booked, moved or
released the next one's ``held_from`` changes: :func:`retravel` sets it for a whole day, in visit order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dispatch.slots import Rules, Visit, travel_s
from models.visit_bookings import VisitBooking


def before_of(booking: VisitBooking) -> dt.timedelta:
    """The buffer before the visit that the booking holds (its hold before the visit, travel aside)."""
    return booking.starts_at - booking.held_from - dt.timedelta(seconds=booking.travel_s)


def as_visit(booking: VisitBooking) -> Visit:
    """The booking as :mod:`dispatch.slots` sees it."""
    return Visit(
        key=str(booking.id),
        start=booking.starts_at,
        end=booking.ends_at,
        before=before_of(booking),
        after=booking.held_until - booking.ends_at,
        lat=booking.lat,
        lon=booking.lon,
        local_day=booking.local_day,
    )


def retravel(day_bookings: Iterable[VisitBooking], rules: Rules, at: dt.datetime) -> list[VisitBooking]:
    """Set ``travel_s`` and ``held_from`` of one doctor's active bookings of one local day, in visit
    order: the first has no travel, each next one the travel from the one before. Returns those whose
    values changed (``updated_at`` set to ``at``).

    Every booking's buffer before is kept (read from its current values), so call this after each
    change of the day's visits, with every booking of the day as it will be (a new one included)."""
    ordered = sorted(day_bookings, key=lambda b: b.starts_at)
    befores = {id(b): before_of(b) for b in ordered}
    changed: list[VisitBooking] = []
    previous: VisitBooking | None = None
    for booking in ordered:
        travel = (
            0 if previous is None else travel_s(rules, previous.lat, previous.lon, booking.lat, booking.lon)
        )
        held_from = booking.starts_at - befores[id(booking)] - dt.timedelta(seconds=travel)
        if booking.travel_s != travel or booking.held_from != held_from:
            booking.travel_s = travel
            booking.held_from = held_from
            booking.updated_at = at
            changed.append(booking)
        previous = booking
    return changed
