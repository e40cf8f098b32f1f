"""Reading and writing the transactional outbox (``outbox``) and its relay lease (``outbox_relay_lease``).

Times are epoch milliseconds from the caller's clock. Every function runs in the caller's session and
transaction; none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models.outbox import OutboxEvent, OutboxRelayLease


def stage(
    session: AsyncSession,
    channel: str,
    event_type: str,
    payload: str,
    now_ms: int,
    lease_until_ms: int,
    *,
    subject: str | None = None,
    stale_ms: int | None = None,
    notified_ms: int | None = None,
) -> OutboxEvent:
    """A new event row for ``session``'s transaction, kept aside until :func:`insert_staged` writes
    every row staged in it with one statement (its ``id`` is known then). ``payload``: the JSON text of
    the event's data. The row is not added to the session: the ORM's unit of work would cost several
    times the INSERT itself per row (loadtests/bench_outbox.py). ``notified_ms``: None for a row the
    notification rules are to read, else its staging time (nothing to derive)."""
    del session  # the rows join the transaction in insert_staged
    return OutboxEvent(
        channel=channel,
        type=event_type,
        payload=payload,
        created_ms=now_ms,
        lease_until_ms=lease_until_ms,
        published_ms=None,
        subject=subject,
        stale_ms=stale_ms,
        notified_ms=notified_ms,
    )


async def insert_staged(session: AsyncSession, rows: Sequence[OutboxEvent]) -> None:
    """Insert ``rows`` (from :func:`stage`) in ``session``'s transaction with one multi-row
    ``INSERT ... RETURNING id`` and give each row its id, in staging order (ids grow in that order, so
    the relay's id order is the staging order). No-op for no rows."""
    if not rows:
        return
    table = cast(sa.Table, OutboxEvent.__table__)
    # One multi-row INSERT. Not sort_by_parameter_order: SQLite cannot promise RETURNING's order, so
    # SQLAlchemy would fall back to a statement per row there. Both databases give one statement's
    # rows increasing ids in VALUES order (SQLite's rowid counter, PostgreSQL's nextval per row), so
    # the sorted ids are the rows' in staging order.
    result = await session.execute(
        sa.insert(table).returning(table.c.id),
        [
            {
                "channel": row.channel,
                "type": row.type,
                "payload": row.payload,
                "created_ms": row.created_ms,
                "lease_until_ms": row.lease_until_ms,
                "published_ms": None,
                "subject": row.subject,
                "stale_ms": row.stale_ms,
                "notified_ms": row.notified_ms,
            }
            for row in rows
        ],
    )
    for row, row_id in zip(rows, sorted(result.scalars()), strict=True):
        row.id = row_id


async def claimable(session: AsyncSession, now_ms: int, limit: int) -> list[OutboxEvent]:
    """Up to ``limit`` unpublished rows whose lease has passed, oldest (lowest id) first."""
    rows = await session.scalars(
        sa.select(OutboxEvent)
        .where(OutboxEvent.published_ms.is_(None), OutboxEvent.lease_until_ms <= now_ms)
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return list(rows)


async def superseded(session: AsyncSession, rows: Sequence[OutboxEvent]) -> set[int]:
    """The ids of those of ``rows`` that have a ``subject`` and a newer row (higher id) of the same
    subject: their news is out of date (one query, on the subject index; none for rows without a
    subject)."""
    ids = [row.id for row in rows if row.subject is not None]
    if not ids:
        return set()
    newer = aliased(OutboxEvent)
    found = await session.scalars(
        sa.select(OutboxEvent.id).where(
            OutboxEvent.id.in_(ids),
            sa.exists().where(newer.subject == OutboxEvent.subject, newer.id > OutboxEvent.id),
        )
    )
    return set(found)


async def mark_published(session: AsyncSession, ids: Sequence[int], at_ms: int) -> int:
    """Mark the rows ``ids`` published at ``at_ms``, in one UPDATE (rows marked already keep their
    time). Returns how many changed."""
    if not ids:
        return 0
    result = await session.execute(
        sa.update(OutboxEvent)
        .where(OutboxEvent.id.in_(list(ids)), OutboxEvent.published_ms.is_(None))
        .values(published_ms=at_ms)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


NOTIFY_GRACE_MS = 3_600_000
"""How long past the retention a published row waits for the notification rules (one hour): news
older than that is not worth sending, and the table must not grow while no rules run."""


async def prune(session: AsyncSession, published_before_ms: int, limit: int) -> int:
    """Delete up to ``limit`` rows published before ``published_before_ms``, oldest first (a bounded
    batch: a long backlog is pruned over several passes, never in one long write). A row the
    notification rules have not read yet (``notified_ms`` None) is kept :data:`NOTIFY_GRACE_MS` longer.
    Returns how many."""
    oldest = (
        sa.select(OutboxEvent.id)
        .where(
            OutboxEvent.published_ms.is_not(None),
            OutboxEvent.published_ms < published_before_ms,
            sa.or_(
                OutboxEvent.notified_ms.is_not(None),
                OutboxEvent.published_ms < published_before_ms - NOTIFY_GRACE_MS,
            ),
        )
        .order_by(OutboxEvent.published_ms)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(
        sa.delete(OutboxEvent).where(OutboxEvent.id.in_(oldest)).execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def backlog(session: AsyncSession) -> tuple[int, int | None]:
    """``(rows not yet published, created_ms of the oldest of them or None)``."""
    count, oldest = (
        await session.execute(
            sa.select(sa.func.count(), sa.func.min(OutboxEvent.created_ms)).where(
                OutboxEvent.published_ms.is_(None)
            )
        )
    ).one()
    return int(count), None if oldest is None else int(oldest)


async def take_lease(session: AsyncSession, name: str, owner: str, now_ms: int, until_ms: int) -> bool:
    """Take or renew the lease ``name`` for ``owner`` until ``until_ms``: succeeds when ``owner``
    holds it already, its holder's lease has passed, or nobody ever held it. Returns whether
    ``owner`` holds it now. One UPDATE (then a read and an INSERT the first time; of two first
    INSERTs at once, the one that finds the row there answers False)."""
    result = await session.execute(
        sa.update(OutboxRelayLease)
        .where(
            OutboxRelayLease.name == name,
            sa.or_(OutboxRelayLease.owner == owner, OutboxRelayLease.lease_until_ms <= now_ms),
        )
        .values(owner=owner, lease_until_ms=until_ms)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0):
        return True
    held = await session.scalar(sa.select(OutboxRelayLease.owner).where(OutboxRelayLease.name == name))
    if held is not None:
        return False
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    inserted = await session.execute(
        insert(OutboxRelayLease)
        .values(name=name, owner=owner, lease_until_ms=until_ms)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return bool(getattr(inserted, "rowcount", 0))


async def release_lease(session: AsyncSession, name: str, owner: str) -> None:
    """Give the lease ``name`` up if ``owner`` holds it (a clean stop: the next relay need not wait
    for the lease to run out)."""
    await session.execute(
        sa.update(OutboxRelayLease)
        .where(OutboxRelayLease.name == name, OutboxRelayLease.owner == owner)
        .values(lease_until_ms=0)
        .execution_options(synchronize_session=False)
    )
