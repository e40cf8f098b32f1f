"""Reading and writing visit bookings (``models/visit_bookings.py``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.visit_bookings import VisitBooking

EXCLUSION_CONSTRAINT = "ex_visit_bookings_doctor_held"
"""PostgreSQL's exclusion constraint (migration 0012): two active bookings of one doctor whose held
ranges overlap."""
EXCLUSION_VIOLATION = "23P01"
"""PostgreSQL's SQLSTATE ``exclusion_violation`` (PostgreSQL docs, Appendix A)."""


def is_overlap(error: IntegrityError) -> bool:
    """Whether ``error`` is the exclusion constraint refusing an overlapping booking."""
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return state == EXCLUSION_VIOLATION or EXCLUSION_CONSTRAINT in str(original)


async def active_of_doctors(
    session: AsyncSession, doctor_ids: Sequence[uuid.UUID], start: dt.datetime, end: dt.datetime
) -> dict[uuid.UUID, list[VisitBooking]]:
    """The active bookings of ``doctor_ids`` whose held time touches ``[start, end]``, by doctor, each
    list in visit order."""
    found: dict[uuid.UUID, list[VisitBooking]] = {d: [] for d in doctor_ids}
    if not doctor_ids:
        return found
    rows = await session.scalars(
        sa.select(VisitBooking)
        .where(
            VisitBooking.doctor_id.in_(list(doctor_ids)),
            VisitBooking.active.is_(True),
            VisitBooking.held_until >= start,
            VisitBooking.held_from <= end,
        )
        .order_by(VisitBooking.starts_at)
    )
    for booking in rows:
        found[booking.doctor_id].append(booking)
    return found


async def get_booking(session: AsyncSession, booking_id: uuid.UUID) -> VisitBooking | None:
    """The booking with this id, or None."""
    return await session.get(VisitBooking, booking_id)


async def booking_of_call(session: AsyncSession, call_id: uuid.UUID) -> VisitBooking | None:
    """The booking of a call, or None (an unplanned call has none)."""
    return (
        await session.scalars(sa.select(VisitBooking).where(VisitBooking.call_id == call_id))
    ).one_or_none()


async def release_of_call(session: AsyncSession, call_id: uuid.UUID, at: dt.datetime, reason: str) -> bool:
    """Release the call's active booking, if it has one (its time is free again at the commit).
    Returns whether one was released."""
    result = await session.execute(
        sa.update(VisitBooking)
        .where(VisitBooking.call_id == call_id, VisitBooking.active.is_(True))
        .values(
            active=False,
            released_at=at,
            release_reason=reason,
            updated_at=at,
            sequence=VisitBooking.sequence + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
