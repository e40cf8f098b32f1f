"""Reading and writing clinics."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.clinics import Clinic


class DuplicateClinic(Exception):
    """A clinic with this name exists."""


async def create_clinic(
    session: AsyncSession, *, name: str, address: str | None, phone: str | None
) -> Clinic:
    """Insert a clinic (flushed). Raises :class:`DuplicateClinic` when the name is taken."""
    if await session.scalar(sa.select(Clinic.id).where(Clinic.name == name)) is not None:
        raise DuplicateClinic(name)
    clinic = Clinic(name=name, address=address, phone=phone)
    session.add(clinic)
    await session.flush()
    return clinic


async def get_clinic(session: AsyncSession, clinic_id: uuid.UUID) -> Clinic | None:
    """The clinic with this id, or ``None``."""
    return await session.get(Clinic, clinic_id)


async def list_clinics(session: AsyncSession, *, limit: int, offset: int) -> list[Clinic]:
    """Clinics by name, paged."""
    rows = await session.scalars(sa.select(Clinic).order_by(Clinic.name).limit(limit).offset(offset))
    return list(rows)
