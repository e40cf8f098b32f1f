"""Notifications: what the server told (or will tell) a person outside the socket, one row per
(outbox event, person, channel).

A row is derived from an ``outbox`` row by the notification rules (``server/notify/deriver.py``) in the
transaction that marks that outbox row ``notified_ms``, so a crash either leaves both or neither; the
UNIQUE ``(event_id, person_id, channel)`` makes a second derivation of the same event a no-op. Sender
workers in every process claim queued rows with a lease and deliver them (``server/notify/sender.py``).

Telegram's account links live beside them: ``telegram_links`` (a person's chat), the one-time deep-link
tokens that make a link (``telegram_link_tokens``, stored hashed) and the webhook updates already
handled (``telegram_updates``: a replayed ``update_id`` is ignored).

Times are epoch milliseconds (the workers' injectable clock), as in ``models/outbox.py``.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, enum_column
from models.outbox import RowId

NOTIFICATION_STATUSES = ("queued", "sending", "sent", "failed", "suppressed")
"""``queued``: waiting for its next attempt (``next_attempt_ms``); ``sending``: handed to the provider
by the lease holder, outcome not yet recorded; ``sent``: the provider accepted it; ``failed``: given up
(permanent error, attempts exhausted, or the outcome unknown after its sender died mid-send: never sent
twice); ``suppressed``: not sent on purpose (preferences, quiet hours, too late)."""


class Notification(Base):
    """One (event, person, channel). ``event_id``: the ``outbox`` row's id (no foreign key: outbox rows
    are pruned, notifications kept). ``kind``: what happened (``server/notify/rules.py`` ``Kind``, e.g.
    ``offer``, ``arrived``); ``params``: the template's values as JSON text; ``call_id``:
    the call it is about (the staff view of what was sent for a call), if any.

    ``attempts``: provider calls made; ``last_error``: the last failure (short text); ``next_attempt_ms``:
    not before then (backoff, a provider's ``retry_after``, a chat's throttle); ``lease_owner`` /
    ``lease_until_ms``: the sender process that claimed it and until when; ``sent_ms``: when the
    provider accepted it; ``provider_ref``: the provider's id of the message (Telegram's
    ``chat_id:message_id``), kept to edit its buttons later; ``read_ms``: when its person read it in the
    inbox."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "person_id", "channel", name="uq_notifications_event_person_channel"),
        # A group chat's rows have no person (NULLs are distinct in the constraint above): one per
        # (event, channel) here (server/notify/group.py).
        sa.Index(
            "uq_notifications_group_event_channel",
            "event_id",
            "channel",
            unique=True,
            postgresql_where=sa.text("person_id IS NULL"),
            sqlite_where=sa.text("person_id IS NULL"),
        ),
        # The senders' claim: due rows (a partial index: it holds only the rows in flight).
        sa.Index(
            "ix_notifications_due",
            "next_attempt_ms",
            postgresql_where=sa.text("status IN ('queued', 'sending')"),
            sqlite_where=sa.text("status IN ('queued', 'sending')"),
        ),
        # The inbox: a person's rows, newest first.
        sa.Index("ix_notifications_person", "person_id", "id"),
        sa.Index(
            "ix_notifications_call",
            "call_id",
            postgresql_where=sa.text("call_id IS NOT NULL"),
            sqlite_where=sa.text("call_id IS NOT NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(sa.BigInteger)
    person_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    """None for a group chat's row (the dispatchers' Telegram group, ``server/notify/group.py``)."""
    channel: Mapped[str] = mapped_column(sa.String(16))
    kind: Mapped[str] = mapped_column(sa.String(40))
    params: Mapped[str] = mapped_column(sa.Text)
    call_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid())
    status: Mapped[str] = mapped_column(enum_column(NOTIFICATION_STATUSES, "notification_status"))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    next_attempt_ms: Mapped[int] = mapped_column(sa.BigInteger)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64))
    lease_until_ms: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    provider_ref: Mapped[str | None] = mapped_column(sa.String(64))
    read_ms: Mapped[int | None] = mapped_column(sa.BigInteger)


class NotifyThrottle(Base):
    """A shared send throttle: ``key`` (e.g. ``telegram:<chat id>``) may send again at ``next_ms``.
    Taken with one conditional UPDATE in the transaction that marks a row ``sending``, so every process
    keeps one chat's pace (``server/notify/throttle.py``)."""

    __tablename__ = "notify_throttle"

    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    next_ms: Mapped[int] = mapped_column(sa.BigInteger)


class NotifyPreference(Base):
    """A person's choice for one event ``kind`` (``*``: every kind) on one ``channel``: ``enabled``.
    No row: the default (on)."""

    __tablename__ = "notify_preferences"

    person_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)


class TelegramLink(Base):
    """A person's Telegram chat (``chat_id``: Telegram's id of the private chat with the bot)."""

    __tablename__ = "telegram_links"

    person_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    chat_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True)
    linked_ms: Mapped[int] = mapped_column(sa.BigInteger)


class TelegramLinkToken(Base):
    """A one-time deep-link token (``t.me/<bot>?start=<token>``), stored as its SHA-256 hex digest:
    ``expires_ms``, and ``used_ms`` once redeemed (a second use is refused)."""

    __tablename__ = "telegram_link_tokens"

    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    person_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"))
    expires_ms: Mapped[int] = mapped_column(sa.BigInteger)
    used_ms: Mapped[int | None] = mapped_column(sa.BigInteger)


class TelegramUpdate(Base):
    """A webhook update handled (``update_id``), so that a replay is ignored; pruned after a day."""

    __tablename__ = "telegram_updates"

    update_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    received_ms: Mapped[int] = mapped_column(sa.BigInteger, index=True)
