"""Reading and writing calls and their status history."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.calls import Call, CallEvent


async def call_parties(
    session: AsyncSession, call_id: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID | None] | None:
    """``(patient_id, doctor_id or None)`` of the call, or ``None`` when there is no such call."""
    row = (
        await session.execute(sa.select(Call.patient_id, Call.doctor_id).where(Call.id == call_id))
    ).first()
    return None if row is None else (row[0], row[1])


async def get_call(session: AsyncSession, call_id: uuid.UUID, *, for_update: bool = False) -> Call | None:
    """The call, or ``None``. ``for_update`` locks the row until the transaction ends (PostgreSQL;
    SQLite serialises writers anyway)."""
    query = sa.select(Call).where(Call.id == call_id)
    if for_update:
        query = query.with_for_update()
    result: Call | None = (
        await session.execute(query.execution_options(populate_existing=True))
    ).scalar_one_or_none()
    return result


async def find_by_idempotency_key(session: AsyncSession, created_by: uuid.UUID, key: str) -> Call | None:
    """The call ``created_by`` made earlier with the same ``Idempotency-Key``, or ``None``."""
    return await session.scalar(
        sa.select(Call).where(Call.created_by == created_by, Call.idempotency_key == key)
    )


def add_event(
    session: AsyncSession,
    call: Call,
    from_status: str | None,
    to_status: str,
    *,
    actor_id: uuid.UUID | None,
    actor_role: str | None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    at: dt.datetime,
) -> CallEvent:
    """Stage a status-history row for ``call`` (written with the session's transaction)."""
    event = CallEvent(
        call_id=call.id,
        from_status=from_status,
        to_status=to_status,
        actor_id=actor_id,
        actor_role=actor_role,
        reason=reason,
        data=data,
        created_at=at,
    )
    session.add(event)
    return event


async def list_calls(
    session: AsyncSession,
    *,
    patient_id: uuid.UUID | None = None,
    doctor_id: uuid.UUID | None = None,
    statuses: Sequence[str] = (),
    urgency: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Call]:
    """Calls, newest first, filtered by party, statuses and urgency, paged."""
    query = sa.select(Call)
    if patient_id is not None:
        query = query.where(Call.patient_id == patient_id)
    if doctor_id is not None:
        query = query.where(Call.doctor_id == doctor_id)
    if statuses:
        query = query.where(Call.status.in_(list(statuses)))
    if urgency is not None:
        query = query.where(Call.urgency == urgency)
    rows = await session.scalars(query.order_by(Call.created_at.desc(), Call.id).limit(limit).offset(offset))
    return list(rows)


async def list_events(session: AsyncSession, call_id: uuid.UUID) -> list[CallEvent]:
    """The call's status history, oldest first."""
    rows = await session.scalars(
        sa.select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.created_at, CallEvent.id)
    )
    return list(rows)


async def calls_in_status(
    session: AsyncSession, statuses: Sequence[str], limit: int = 1000
) -> list[uuid.UUID]:
    """Ids of calls in any of ``statuses`` (oldest first): used to resume dispatch after a restart."""
    rows = await session.scalars(
        sa.select(Call.id).where(Call.status.in_(list(statuses))).order_by(Call.created_at).limit(limit)
    )
    return list(rows)


NEW_ROUND_FROM = ("created", "escalated")


async def search_round_started(session: AsyncSession, call_id: uuid.UUID) -> dt.datetime | None:
    """When the call's current search round began: its last move into ``searching`` from ``created``
    or ``escalated`` (a dispatcher's re-launch starts a fresh round). ``None`` before any search."""
    result: dt.datetime | None = await session.scalar(
        sa.select(sa.func.max(CallEvent.created_at)).where(
            CallEvent.call_id == call_id,
            CallEvent.to_status == "searching",
            CallEvent.from_status.in_(NEW_ROUND_FROM),
        )
    )
    if result is not None and result.tzinfo is None:
        result = result.replace(tzinfo=dt.UTC)  # SQLite's max() returns the stored text, zone-less
    return result


CALL_ID_CHUNK = 1000
"""Ids per ``IN (...)`` list: SQLite caps the bound parameters of one statement."""


async def doctors_on_calls(
    session: AsyncSession, statuses: Sequence[str]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """``(doctor id, call id)`` of every call in any of ``statuses`` that has a doctor (the open
    calls' doctors, to rebuild the live engine's ``busy`` states)."""
    rows = await session.execute(
        sa.select(Call.doctor_id, Call.id).where(Call.status.in_(list(statuses)), Call.doctor_id.is_not(None))
    )
    return [(doctor_id, call_id) for doctor_id, call_id in rows if doctor_id is not None]


async def call_states(
    session: AsyncSession, call_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, uuid.UUID | None]]:
    """``call id -> (status, doctor id)`` of the calls of ``call_ids`` that exist (the repair sweep)."""
    found: dict[uuid.UUID, tuple[str, uuid.UUID | None]] = {}
    ids = list(dict.fromkeys(call_ids))
    for start in range(0, len(ids), CALL_ID_CHUNK):
        rows = await session.execute(
            sa.select(Call.id, Call.status, Call.doctor_id).where(
                Call.id.in_(ids[start : start + CALL_ID_CHUNK])
            )
        )
        found.update((call_id, (status, doctor_id)) for call_id, status, doctor_id in rows)
    return found
