"""Reading and writing doctors' schedules and the services they offer (``models/schedules.py``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.doctors import DoctorProfile
from models.schedules import DoctorSchedule, DoctorService
from models.users import User


async def get_schedule(
    session: AsyncSession, doctor_id: uuid.UUID, *, for_update: bool = False
) -> DoctorSchedule | None:
    """The doctor's schedule, or None. ``for_update``: lock the row until the transaction ends
    (PostgreSQL; SQLite's one connection serialises anyway): one doctor's bookings check one at a time."""
    query = sa.select(DoctorSchedule).where(DoctorSchedule.doctor_id == doctor_id)
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def put_schedule(
    session: AsyncSession,
    doctor_id: uuid.UUID,
    *,
    time_zone: str,
    weekly: list[dict[str, Any]],
    exceptions: list[dict[str, Any]],
    min_notice_min: int,
    daily_limit: int | None,
    service_ids: Sequence[uuid.UUID],
    at: dt.datetime,
) -> DoctorSchedule:
    """Replace the doctor's schedule and offered services whole (flushed)."""
    row = await get_schedule(session, doctor_id, for_update=True)
    if row is None:
        row = DoctorSchedule(doctor_id=doctor_id)
        session.add(row)
    row.time_zone = time_zone
    row.weekly = weekly
    row.exceptions = exceptions
    row.min_notice_min = min_notice_min
    row.daily_limit = daily_limit
    row.updated_at = at
    await session.execute(sa.delete(DoctorService).where(DoctorService.doctor_id == doctor_id))
    session.add_all(DoctorService(doctor_id=doctor_id, service_id=s) for s in sorted(set(service_ids)))
    await session.flush()
    return row


async def offered_services(session: AsyncSession, doctor_id: uuid.UUID) -> list[uuid.UUID]:
    """The ids of the services the doctor offers."""
    rows = await session.scalars(
        sa.select(DoctorService.service_id)
        .where(DoctorService.doctor_id == doctor_id)
        .order_by(DoctorService.service_id)
    )
    return list(rows)


async def offers(session: AsyncSession, doctor_id: uuid.UUID, service_id: uuid.UUID) -> bool:
    """Whether the doctor offers the service."""
    found = await session.scalar(
        sa.select(DoctorService.doctor_id).where(
            DoctorService.doctor_id == doctor_id, DoctorService.service_id == service_id
        )
    )
    return found is not None


async def bookable_doctors(session: AsyncSession, service_id: uuid.UUID) -> list[tuple[DoctorSchedule, str]]:
    """The schedules (with the doctor's full name) of the active, verified doctors who offer
    ``service_id`` and have a schedule, by doctor id."""
    rows = await session.execute(
        sa.select(DoctorSchedule, User.full_name)
        .join(DoctorService, DoctorService.doctor_id == DoctorSchedule.doctor_id)
        .join(DoctorProfile, DoctorProfile.user_id == DoctorSchedule.doctor_id)
        .join(User, User.id == DoctorSchedule.doctor_id)
        .where(
            DoctorService.service_id == service_id,
            DoctorProfile.verified.is_(True),
            User.is_active.is_(True),
            User.role == "doctor",
        )
        .order_by(DoctorSchedule.doctor_id)
    )
    return [(schedule, name) for schedule, name in rows.all()]
