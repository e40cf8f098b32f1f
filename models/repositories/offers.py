"""Reading and writing offers of calls to doctors."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import OfferOutcome
from models.offers import Offer


async def get_offer(session: AsyncSession, offer_id: uuid.UUID, *, for_update: bool = False) -> Offer | None:
    """The offer, or ``None``; ``for_update`` locks its row for the transaction (PostgreSQL)."""
    query = sa.select(Offer).where(Offer.id == offer_id)
    if for_update:
        query = query.with_for_update()
    result: Offer | None = (
        await session.execute(query.execution_options(populate_existing=True))
    ).scalar_one_or_none()
    return result


async def pending_offers(session: AsyncSession, call_id: uuid.UUID) -> list[Offer]:
    """The call's offers still waiting for an answer."""
    rows = await session.scalars(
        sa.select(Offer).where(Offer.call_id == call_id, Offer.outcome == OfferOutcome.PENDING.value)
    )
    return list(rows)


def _of_call(call_id: uuid.UUID, since: dt.datetime | None) -> list[sa.ColumnElement[bool]]:
    conditions = [Offer.call_id == call_id]
    if since is not None:
        conditions.append(Offer.created_at >= since)
    return conditions


async def offered_doctors(
    session: AsyncSession, call_id: uuid.UUID, since: dt.datetime | None = None
) -> set[uuid.UUID]:
    """Doctors the call was offered to (since ``since``): they are not asked again in this round."""
    rows = await session.scalars(sa.select(Offer.doctor_id).where(*_of_call(call_id, since)))
    return set(rows)


async def offer_count(session: AsyncSession, call_id: uuid.UUID, since: dt.datetime | None = None) -> int:
    """How many offers the call has had (since ``since``)."""
    query = sa.select(sa.func.count()).select_from(Offer).where(*_of_call(call_id, since))
    return int(await session.scalar(query) or 0)


async def all_pending(session: AsyncSession, limit: int = 10_000) -> list[Offer]:
    """Every offer still waiting for an answer (to re-arm their deadlines after a restart)."""
    rows = await session.scalars(
        sa.select(Offer)
        .where(Offer.outcome == OfferOutcome.PENDING.value)
        .order_by(Offer.deadline_at)
        .limit(limit)
    )
    return list(rows)


async def decide(session: AsyncSession, offer_id: uuid.UUID, outcome: OfferOutcome, at: dt.datetime) -> bool:
    """Move a pending offer to ``outcome``; False when it was already decided (someone else won)."""
    result = await session.execute(
        sa.update(Offer)
        .where(Offer.id == offer_id, Offer.outcome == OfferOutcome.PENDING.value)
        .values(outcome=outcome.value, decided_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def offers_of_call(session: AsyncSession, call_id: uuid.UUID) -> list[Offer]:
    """Every offer of the call, oldest first."""
    rows = await session.scalars(
        sa.select(Offer).where(Offer.call_id == call_id).order_by(Offer.created_at, Offer.id)
    )
    return list(rows)


OFFER_ID_CHUNK = 1000
"""Ids per ``IN (...)`` list: SQLite caps the bound parameters of one statement."""


async def offers_by_id(session: AsyncSession, offer_ids: list[uuid.UUID]) -> dict[uuid.UUID, Offer]:
    """The offers of ``offer_ids`` that exist, by id (the repair sweep checks engaged doctors)."""
    found: dict[uuid.UUID, Offer] = {}
    ids = list(dict.fromkeys(offer_ids))
    for start in range(0, len(ids), OFFER_ID_CHUNK):
        rows = await session.scalars(
            sa.select(Offer).where(Offer.id.in_(ids[start : start + OFFER_ID_CHUNK]))
        )
        found.update((offer.id, offer) for offer in rows)
    return found


async def open_offers_of_doctor(session: AsyncSession, doctor_id: uuid.UUID, now: dt.datetime) -> list[Offer]:
    """The doctor's offers still waiting for an answer whose deadline is after ``now``, soonest first
    (what the doctor's app shows again after a reload)."""
    rows = await session.scalars(
        sa.select(Offer)
        .where(
            Offer.doctor_id == doctor_id,
            Offer.outcome == OfferOutcome.PENDING.value,
            Offer.deadline_at > now,
        )
        .order_by(Offer.deadline_at)
        .limit(20)
    )
    return list(rows)
