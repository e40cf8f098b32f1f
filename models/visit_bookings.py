"""Visit bookings: a planned call's reservation of a doctor's time.

Not ``dispatch/reservations.py``, which is the live engine's short hold of a doctor while an offer is
out. A booking holds booked time, for as long as the visit is planned.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk
from models.types import UTCDateTime


class VisitBooking(Base):
    """One planned call's hold on one doctor's time.

    ``starts_at``/``ends_at``: the visit itself (UTC; the service's duration). ``held_from``/
    ``held_until``: what the booking holds, ``[held_from, held_until)``: the service's buffer before and
    the travel from the doctor's previous visit (``travel_s``, the ranking's straight-line ETA) before
    the visit, the buffer after it. ``local_day``: the visit's date in the doctor's time zone (the daily
    limit counts by it). ``lat``/``lon``: the visit's place, WGS84 degrees (the next visit's travel
    starts there).

    ``reminders_sent``: 0-2, the reminders (T - 24 h, T - 2 h) already staged or skipped.
    ``active`` false once released (the call cancelled, the booking moved away). On PostgreSQL an
    exclusion constraint (migration 0010) forbids two active bookings of one doctor whose held ranges
    overlap; on SQLite the booking service checks the same inside the one serialised connection.
    """

    __tablename__ = "visit_bookings"
    __table_args__ = (
        sa.CheckConstraint("held_from <= starts_at", name="held_before"),
        sa.CheckConstraint("starts_at < ends_at", name="visit_positive"),
        sa.CheckConstraint("ends_at <= held_until", name="held_after"),
        sa.Index("ix_visit_bookings_doctor_day", "doctor_id", "local_day"),
        sa.Index("ix_visit_bookings_doctor_held", "doctor_id", "held_from"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"), unique=True
    )
    doctor_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"))
    service_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("clinic_services.id"))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    held_from: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    held_until: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    travel_s: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    local_day: Mapped[dt.date] = mapped_column(sa.Date)
    lat: Mapped[float] = mapped_column(sa.Float)
    lon: Mapped[float] = mapped_column(sa.Float)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    released_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    release_reason: Mapped[str | None] = mapped_column(sa.String(64))
    reminders_sent: Mapped[int] = mapped_column(sa.SmallInteger, default=0, server_default="0")
    """How many of the visit's reminders (T - 24 h, T - 2 h) were staged or skipped (migration 0013,
    ``dispatch/booking_reminders.py``)."""
    sequence: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    """How many times the visit was moved or cancelled: the calendar feed's ``SEQUENCE`` (RFC 5545
    3.8.7.4), so a subscribed calendar takes the newer version (migration 0014)."""
    created_at: Mapped[dt.datetime] = timestamp_default_now()
    updated_at: Mapped[dt.datetime] = timestamp_default_now()
