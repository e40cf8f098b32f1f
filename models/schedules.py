"""Doctors' schedules for planned visits: working hours, exceptions, limits, and the services offered."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now


class DoctorSchedule(Base):
    """When a doctor takes planned visits; one document per doctor, read and replaced whole.

    ``time_zone``: the IANA name (``Europe/Moscow``) the hours are in. ``weekly``: a JSON list of
    ``{"weekday": 0-6 (Monday 0, ISO order), "start_min", "end_min"}`` (minutes after local midnight,
    end after start, up to 1440). ``exceptions``: a JSON list of ``{"date": "YYYY-MM-DD", "off": true}``
    (no visits that day) or ``{"date", "start_min", "end_min"}`` (extra hours that day). The shapes are
    checked by ``dispatch/schedule_rules.py`` before they are written. ``min_notice_min``: the least
    time between booking and visit, minutes. ``daily_limit``: most visits on one local day (None: no
    limit).

    The row is also the lock that serialises one doctor's bookings on PostgreSQL (``SELECT ... FOR
    UPDATE``, ``models/repositories/visit_bookings.py``): the daily limit and travel between visits
    are checked by the application, so two bookings of one doctor must not check at once.
    """

    __tablename__ = "doctor_schedules"
    __table_args__ = (
        sa.CheckConstraint("min_notice_min >= 0", name="notice_nonnegative"),
        sa.CheckConstraint("daily_limit IS NULL OR daily_limit > 0", name="daily_limit_positive"),
    )

    doctor_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    time_zone: Mapped[str] = mapped_column(sa.String(64))
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    exceptions: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    min_notice_min: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    daily_limit: Mapped[int | None] = mapped_column(sa.Integer)
    updated_at: Mapped[dt.datetime] = timestamp_default_now()


class DoctorService(Base):
    """A clinic service a doctor offers (set with the schedule). Deleting either deletes the row."""

    __tablename__ = "doctor_services"

    doctor_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    service_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("clinic_services.id", ondelete="CASCADE"), primary_key=True, index=True
    )
