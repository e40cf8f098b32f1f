"""Reading and writing notifications, their throttle, preferences and Telegram links
(``models/notifications.py``), and the outbox rows the notification rules read.

Times are epoch milliseconds from the caller's clock. Every function runs in the caller's session and
transaction; none commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.calls import Call
from models.enums import Role
from models.notifications import Notification, NotifyPreference, NotifyThrottle, TelegramLink
from models.outbox import OutboxEvent
from models.users import User


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# --- the rules' side -------------------------------------------------------------------------------


async def unnotified(session: AsyncSession, limit: int) -> list[OutboxEvent]:
    """Up to ``limit`` outbox rows the rules have not read (``notified_ms`` None), lowest id first."""
    rows = await session.scalars(
        sa.select(OutboxEvent).where(OutboxEvent.notified_ms.is_(None)).order_by(OutboxEvent.id).limit(limit)
    )
    return list(rows)


async def mark_notified(session: AsyncSession, ids: Sequence[int], at_ms: int) -> None:
    """Mark outbox rows ``ids`` read by the rules (rows marked already keep their time)."""
    if ids:
        await session.execute(
            sa.update(OutboxEvent)
            .where(OutboxEvent.id.in_(list(ids)), OutboxEvent.notified_ms.is_(None))
            .values(notified_ms=at_ms)
            .execution_options(synchronize_session=False)
        )


async def patients_of(session: AsyncSession, call_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
    """``{call id: its patient's id}`` for the calls that exist."""
    if not call_ids:
        return {}
    rows = await session.execute(sa.select(Call.id, Call.patient_id).where(Call.id.in_(list(call_ids))))
    return {call_id: patient_id for call_id, patient_id in rows}


async def active_dispatchers(session: AsyncSession) -> list[uuid.UUID]:
    """The ids of every active dispatcher."""
    rows = await session.scalars(
        sa.select(User.id).where(User.role == Role.DISPATCHER.value, User.is_active.is_(True))
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class Person:
    """What notifying a person needs: ``language``, ``time_zone`` (IANA name or None), quiet hours
    (minutes after local midnight, or None), contact ``email``/``phone`` and whether the account is
    active."""

    id: uuid.UUID
    language: str
    time_zone: str | None
    quiet_start_min: int | None
    quiet_end_min: int | None
    email: str | None
    phone: str | None
    is_active: bool


async def people(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Person]:
    """:class:`Person` of each of ``ids`` that exists."""
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(
            User.id,
            User.language,
            User.time_zone,
            User.quiet_start_min,
            User.quiet_end_min,
            User.email,
            User.phone,
            User.is_active,
        ).where(User.id.in_(list(set(ids))))
    )
    return {row[0]: Person(*row) for row in rows}


async def preferences(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, str, str], bool]:
    """``{(person, kind or "*", channel): enabled}`` for the rows ``ids`` have."""
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(
            NotifyPreference.person_id,
            NotifyPreference.kind,
            NotifyPreference.channel,
            NotifyPreference.enabled,
        ).where(NotifyPreference.person_id.in_(list(set(ids))))
    )
    return {(p, k, c): e for p, k, c, e in rows}


async def insert_notifications(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert notification rows (column -> value); one that exists for its (event, person, channel)
    already is skipped (a second derivation of one event is a no-op), and a group chat's row
    (``person_id`` None) for its (event, channel). Returns how many were new (counted from RETURNING:
    asyncpg's executemany reports no row count, -1)."""
    table = cast(sa.Table, Notification.__table__)
    people = [row for row in rows if row["person_id"] is not None]
    groups = [row for row in rows if row["person_id"] is None]
    written = 0
    if people:
        statement = _insert(session)(table).on_conflict_do_nothing(
            index_elements=["event_id", "person_id", "channel"]
        )
        written += len((await session.execute(statement.returning(table.c.id), people)).all())
    if groups:
        statement = _insert(session)(table).on_conflict_do_nothing(
            index_elements=["event_id", "channel"], index_where=table.c.person_id.is_(None)
        )
        written += len((await session.execute(statement.returning(table.c.id), groups)).all())
    return written


# --- the senders' side -----------------------------------------------------------------------------


async def claim_due(
    session: AsyncSession,
    owner: str,
    now_ms: int,
    lease_until_ms: int,
    channels: Sequence[str],
    limit: int,
) -> list[Notification]:
    """Lease up to ``limit`` queued rows of ``channels`` due at ``now_ms`` (whose lease, if any, has
    passed) to ``owner`` until ``lease_until_ms``, soonest due first. On PostgreSQL the candidates are
    locked with SKIP LOCKED and re-checked by the UPDATE, so two processes never lease one row."""
    if not channels:
        return []
    due = (
        sa.select(Notification.id)
        .where(
            Notification.status == "queued",
            Notification.next_attempt_ms <= now_ms,
            Notification.lease_until_ms <= now_ms,
            Notification.channel.in_(list(channels)),
        )
        .order_by(Notification.next_attempt_ms, Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(await session.scalars(due))
    if not ids:
        return []
    claimed = await session.scalars(
        sa.update(Notification)
        .where(
            Notification.id.in_(ids),
            Notification.status == "queued",
            Notification.lease_until_ms <= now_ms,
        )
        .values(lease_owner=owner, lease_until_ms=lease_until_ms)
        .returning(Notification)
        .execution_options(synchronize_session=False)
    )
    return sorted(claimed, key=lambda n: (n.next_attempt_ms, n.id))


async def begin_send(
    session: AsyncSession, row_id: int, owner: str, now_ms: int, lease_until_ms: int
) -> bool:
    """``queued`` -> ``sending`` for ``owner``'s leased row, attempts + 1; False when the row is no
    longer ``owner``'s (its lease passed and another process took it)."""
    result = await session.execute(
        sa.update(Notification)
        .where(Notification.id == row_id, Notification.status == "queued", Notification.lease_owner == owner)
        .values(status="sending", attempts=Notification.attempts + 1, lease_until_ms=lease_until_ms)
        .execution_options(synchronize_session=False)
    )
    return _count(result) == 1


async def finish(
    session: AsyncSession,
    row_id: int,
    owner: str,
    *,
    status: str,
    now_ms: int,
    next_attempt_ms: int | None = None,
    error: str | None = None,
    provider_ref: str | None = None,
    from_status: str = "sending",
) -> bool:
    """Record the outcome of ``owner``'s row in ``from_status``: ``sent`` (``provider_ref``, sent at
    ``now_ms``), ``queued`` again at ``next_attempt_ms`` (``error`` kept), ``failed`` or ``suppressed``
    (``error`` the reason). Releases the lease. False when the row was not ``owner``'s any more."""
    values: dict[str, Any] = {"status": status, "lease_owner": None, "lease_until_ms": 0}
    if status == "sent":
        values.update(sent_ms=now_ms, provider_ref=provider_ref, last_error=None)
    if error is not None:
        values["last_error"] = error[:300]
    if next_attempt_ms is not None:
        values["next_attempt_ms"] = next_attempt_ms
    result = await session.execute(
        sa.update(Notification)
        .where(
            Notification.id == row_id, Notification.status == from_status, Notification.lease_owner == owner
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _count(result) == 1


async def give_up_unknown(session: AsyncSession, now_ms: int, limit: int = 500) -> int:
    """Rows left ``sending`` by a sender whose lease has passed (it died between handing a message to
    the provider and recording the outcome) become ``failed`` with ``outcome_unknown``: the provider
    may have delivered it, so it is never sent again (at most once). Returns how many."""
    stale = (
        sa.select(Notification.id)
        .where(Notification.status == "sending", Notification.lease_until_ms <= now_ms)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(
        sa.update(Notification)
        .where(Notification.id.in_(stale), Notification.status == "sending")
        .values(status="failed", last_error="outcome_unknown", lease_owner=None, lease_until_ms=0)
        .execution_options(synchronize_session=False)
    )
    return _count(result)


async def take_throttle(session: AsyncSession, key: str, now_ms: int, interval_ms: int) -> int | None:
    """Take ``key``'s next slot: None when it was free (it is now taken until ``now_ms +
    interval_ms``), else the epoch ms when it frees up. One conditional UPDATE (an INSERT the first
    time; of two first INSERTs at once, the loser is told to wait)."""
    result = await session.execute(
        sa.update(NotifyThrottle)
        .where(NotifyThrottle.key == key, NotifyThrottle.next_ms <= now_ms)
        .values(next_ms=now_ms + interval_ms)
        .execution_options(synchronize_session=False)
    )
    if _count(result):
        return None
    held = await session.scalar(sa.select(NotifyThrottle.next_ms).where(NotifyThrottle.key == key))
    if held is not None:
        return int(held)
    inserted = await session.execute(
        _insert(session)(NotifyThrottle)
        .values(key=key, next_ms=now_ms + interval_ms)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return None if _count(inserted) else now_ms + interval_ms


async def push_throttle(session: AsyncSession, key: str, until_ms: int) -> None:
    """Hold ``key`` until at least ``until_ms`` (a provider's ``retry_after``)."""
    await session.execute(
        sa.update(NotifyThrottle)
        .where(NotifyThrottle.key == key, NotifyThrottle.next_ms < until_ms)
        .values(next_ms=until_ms)
        .execution_options(synchronize_session=False)
    )


async def get(session: AsyncSession, row_id: int) -> Notification | None:
    return await session.get(Notification, row_id)


# --- Telegram links --------------------------------------------------------------------------------


async def telegram_chats(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    """``{person: chat id}`` of those of ``ids`` who linked Telegram."""
    if not ids:
        return {}
    rows = await session.execute(
        sa.select(TelegramLink.person_id, TelegramLink.chat_id).where(
            TelegramLink.person_id.in_(list(set(ids)))
        )
    )
    return {p: int(c) for p, c in rows}


# --- the inbox -------------------------------------------------------------------------------------


async def inbox(
    session: AsyncSession, person_id: uuid.UUID, channel: str, before_id: int | None, limit: int
) -> list[Notification]:
    """``person_id``'s rows of ``channel``, newest first, with ids below ``before_id`` (None: from
    the newest), at most ``limit``."""
    query = sa.select(Notification).where(
        Notification.person_id == person_id, Notification.channel == channel
    )
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return list(await session.scalars(query.order_by(Notification.id.desc()).limit(limit)))


async def of_call(session: AsyncSession, call_id: uuid.UUID) -> list[Notification]:
    """Every notification about ``call_id`` (the staff view), oldest first."""
    return list(
        await session.scalars(
            sa.select(Notification).where(Notification.call_id == call_id).order_by(Notification.id)
        )
    )


# --- preferences -----------------------------------------------------------------------------------


async def preference_rows(session: AsyncSession, person_id: uuid.UUID) -> list[NotifyPreference]:
    """``person_id``'s channel choices, by kind then channel."""
    return list(
        await session.scalars(
            sa.select(NotifyPreference)
            .where(NotifyPreference.person_id == person_id)
            .order_by(NotifyPreference.kind, NotifyPreference.channel)
        )
    )


async def replace_preferences(
    session: AsyncSession, person_id: uuid.UUID, choices: Sequence[tuple[str, str, bool]]
) -> None:
    """Replace ``person_id``'s channel choices with ``choices`` (kind, channel, enabled)."""
    await session.execute(sa.delete(NotifyPreference).where(NotifyPreference.person_id == person_id))
    for kind, channel, enabled in choices:
        session.add(NotifyPreference(person_id=person_id, kind=kind, channel=channel, enabled=enabled))


async def update_person(session: AsyncSession, person_id: uuid.UUID, **values: Any) -> None:
    """Set ``language``, ``time_zone``, ``quiet_start_min``, ``quiet_end_min`` (those given)."""
    allowed = {"language", "time_zone", "quiet_start_min", "quiet_end_min"}
    if set(values) - allowed:
        raise ValueError(f"not a notification setting: {sorted(set(values) - allowed)}")
    if values:
        await session.execute(sa.update(User).where(User.id == person_id).values(**values))
