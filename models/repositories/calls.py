"""Reading and writing calls (this issue: who the parties of a call are)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.calls import Call


async def call_parties(
    session: AsyncSession, call_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """``(patient_id, doctor_id or None)`` of the call, or ``None`` when there is no such call."""
    row = (
        await session.execute(sa.select(Call.patient_id, Call.doctor_id).where(Call.id == call_id))
    ).first()
    return None if row is None else (row[0], row[1])
