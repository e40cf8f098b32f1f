"""Reading and writing a clinic's own: its admins and its services (``models/clinic_catalogue.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.clinic_catalogue import ClinicAdmin, ClinicService


class DuplicateService(Exception):
    """The clinic already has a service of this name."""


async def clinic_of_admin(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    """The clinic the ``clinic_admin`` ``user_id`` manages, or None."""
    row = await session.get(ClinicAdmin, user_id)
    return None if row is None else row.clinic_id


async def set_clinic_admin(session: AsyncSession, user_id: uuid.UUID, clinic_id: uuid.UUID) -> None:
    """Make ``user_id`` an admin of ``clinic_id`` (replacing any clinic it had); flushed."""
    row = await session.get(ClinicAdmin, user_id)
    if row is None:
        session.add(ClinicAdmin(user_id=user_id, clinic_id=clinic_id))
    else:
        row.clinic_id = clinic_id
    await session.flush()


async def create_service(
    session: AsyncSession,
    *,
    clinic_id: uuid.UUID,
    name: str,
    specialty: str,
    duration_min: int,
    price: Decimal,
    currency: str,
    buffer_before_min: int,
    buffer_after_min: int,
) -> ClinicService:
    """Insert a service (flushed). Raises :class:`DuplicateService` when the clinic has one by this name."""
    taken = await session.scalar(
        sa.select(ClinicService.id).where(ClinicService.clinic_id == clinic_id, ClinicService.name == name)
    )
    if taken is not None:
        raise DuplicateService(name)
    service = ClinicService(
        id=uuid.uuid4(),
        clinic_id=clinic_id,
        name=name,
        specialty=specialty,
        duration_min=duration_min,
        price=price,
        currency=currency,
        buffer_before_min=buffer_before_min,
        buffer_after_min=buffer_after_min,
        active=True,
    )
    session.add(service)
    await session.flush()
    return service


async def get_service(session: AsyncSession, service_id: uuid.UUID) -> ClinicService | None:
    """The service with this id, or None."""
    return await session.get(ClinicService, service_id)


async def services_by_ids(
    session: AsyncSession, service_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ClinicService]:
    """The services among ``service_ids`` that exist, by id."""
    if not service_ids:
        return {}
    rows = await session.scalars(sa.select(ClinicService).where(ClinicService.id.in_(list(service_ids))))
    return {s.id: s for s in rows}


async def list_services(session: AsyncSession, clinic_id: uuid.UUID) -> list[ClinicService]:
    """A clinic's services, by name."""
    rows = await session.scalars(
        sa.select(ClinicService).where(ClinicService.clinic_id == clinic_id).order_by(ClinicService.name)
    )
    return list(rows)
