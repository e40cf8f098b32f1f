"""Reading and writing push subscriptions and acknowledged offers (``models/push.py``).

Times are epoch milliseconds from the caller's clock. Every function runs in the caller's session and
transaction; none commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.offers import Offer
from models.push import OfferSeen, PushSubscription


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def subscribe(
    session: AsyncSession,
    person_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
    now_ms: int,
) -> PushSubscription:
    """Store ``endpoint`` for ``person_id`` with its keys; an endpoint stored before (the same browser
    subscribing again, or signed in now as someone else) is updated and moved to ``person_id``."""
    values = {
        "person_id": person_id,
        "p256dh": p256dh,
        "auth": auth,
        "user_agent": user_agent,
    }
    statement = (
        _insert(session)(PushSubscription)
        .values(id=uuid.uuid4(), endpoint=endpoint, created_ms=now_ms, **values)
        .on_conflict_do_update(index_elements=["endpoint"], set_=values)
        .returning(PushSubscription)
        .execution_options(populate_existing=True)
    )
    stored: PushSubscription = (await session.scalars(statement)).one()
    return stored


async def unsubscribe(session: AsyncSession, person_id: uuid.UUID, endpoint: str) -> bool:
    """Delete ``person_id``'s subscription of ``endpoint``; whether there was one."""
    result = await session.execute(
        sa.delete(PushSubscription).where(
            PushSubscription.person_id == person_id, PushSubscription.endpoint == endpoint
        )
    )
    return _count(result) == 1


async def of_person(session: AsyncSession, person_id: uuid.UUID) -> list[PushSubscription]:
    """``person_id``'s subscriptions, oldest first."""
    rows = await session.scalars(
        sa.select(PushSubscription)
        .where(PushSubscription.person_id == person_id)
        .order_by(PushSubscription.created_ms, PushSubscription.id)
    )
    return list(rows)


async def subscribed(session: AsyncSession, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``ids`` with at least one subscription."""
    if not ids:
        return set()
    rows = await session.scalars(
        sa.select(PushSubscription.person_id).where(PushSubscription.person_id.in_(list(set(ids)))).distinct()
    )
    return set(rows)


async def delete(session: AsyncSession, subscription_id: uuid.UUID) -> None:
    """Forget a subscription (its push service answered 404 or 410)."""
    await session.execute(sa.delete(PushSubscription).where(PushSubscription.id == subscription_id))


async def outcome(
    session: AsyncSession, subscription_id: uuid.UUID, now_ms: int, error: str | None = None
) -> None:
    """Record a delivery's outcome: a success (``error`` None) or a failure with a short ``error``."""
    values: dict[str, Any] = (
        {"last_success_ms": now_ms}
        if error is None
        else {"last_failure_ms": now_ms, "last_error": error[:120]}
    )
    await session.execute(
        sa.update(PushSubscription)
        .where(PushSubscription.id == subscription_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def mark_seen(session: AsyncSession, offer_id: uuid.UUID, doctor_id: uuid.UUID, now_ms: int) -> bool:
    """Record that ``doctor_id``'s app received offer ``offer_id`` (a second time keeps the first
    time). False when the offer is not that doctor's (or does not exist)."""
    owner = await session.scalar(sa.select(Offer.doctor_id).where(Offer.id == offer_id))
    if owner != doctor_id:
        return False
    await session.execute(
        _insert(session)(OfferSeen)
        .values(offer_id=offer_id, seen_ms=now_ms)
        .on_conflict_do_nothing(index_elements=["offer_id"])
    )
    return True


async def seen(session: AsyncSession, offer_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``offer_ids`` a doctor's app acknowledged."""
    if not offer_ids:
        return set()
    rows = await session.scalars(
        sa.select(OfferSeen.offer_id).where(OfferSeen.offer_id.in_(list(set(offer_ids))))
    )
    return set(rows)
