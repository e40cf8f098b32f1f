"""Reading and writing SOS alerts and their audit trail (``sos_alerts``, ``sos_events``)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import SosStatus
from models.sos import SosAlert, SosEvent


def add_alert(session: AsyncSession, alert: SosAlert) -> None:
    """Add a new alert to the session (written at its commit)."""
    session.add(alert)


async def get_alert(session: AsyncSession, sos_id: uuid.UUID, *, for_update: bool = False) -> SosAlert | None:
    """The alert, or ``None``; ``for_update`` locks its row for the transaction (PostgreSQL)."""
    if for_update:
        return await session.get(SosAlert, sos_id, with_for_update=True)
    return await session.get(SosAlert, sos_id)


async def count_events(session: AsyncSession, sos_id: uuid.UUID, action: str) -> int:
    """How many audit rows of ``action`` the alert has (``repeated``: how many re-sends so far)."""
    count = await session.scalar(
        sa.select(sa.func.count())
        .select_from(SosEvent)
        .where(SosEvent.sos_id == sos_id, SosEvent.action == action)
    )
    return int(count or 0)


async def open_alert_ids(session: AsyncSession) -> list[uuid.UUID]:
    """Ids of every alert still ``open`` (nobody acknowledged it: its repeats go on)."""
    return list(await session.scalars(sa.select(SosAlert.id).where(SosAlert.status == SosStatus.OPEN.value)))


async def events_of(session: AsyncSession, sos_id: uuid.UUID) -> list[SosEvent]:
    """The alert's audit trail, oldest first."""
    rows = await session.scalars(
        sa.select(SosEvent).where(SosEvent.sos_id == sos_id).order_by(SosEvent.created_at, SosEvent.id)
    )
    return list(rows)


async def list_alerts(session: AsyncSession, *, include_resolved: bool, limit: int) -> list[SosAlert]:
    """Alerts newest first, at most ``limit``: open and acknowledged ones, resolved too on request."""
    query = sa.select(SosAlert)
    if not include_resolved:
        query = query.where(SosAlert.status != SosStatus.RESOLVED.value)
    return list(await session.scalars(query.order_by(SosAlert.created_at.desc()).limit(limit)))


def add_event(
    session: AsyncSession,
    sos_id: uuid.UUID,
    action: str,
    *,
    actor_id: uuid.UUID | None,
    actor_role: str | None,
    data: dict[str, Any] | None,
    at: dt.datetime,
) -> None:
    """Add one audit row (``raised``, ``delivered``, ``repeated``, ``acknowledged``, ``resolved``);
    ``actor_id``/``actor_role`` None for the server itself."""
    session.add(
        SosEvent(
            id=uuid.uuid4(),
            sos_id=sos_id,
            action=action,
            actor_id=actor_id,
            actor_role=actor_role,
            data=data,
            created_at=at,
        )
    )
