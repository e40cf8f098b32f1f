"""The transactional outbox: domain events written in the transaction of the change they announce.

A row is an event waiting for (or done with) the broker. The service that changes the database stages
its events as rows in the same transaction (``dispatch/publisher.py``); right after the commit the
committing process publishes them, and a relay in every process (``dispatch/outbox_relay.py``, one
active at a time: :class:`OutboxRelayLease`) publishes the rows whose publication did not happen, so
that a crash between the commit and the publish loses nothing.

The one table whose key is an integer, not a UUID: ``id`` is the relay's order (rows are published
oldest first), assigned by the database at insert. SQLite's ``AUTOINCREMENT`` keeps ids from being
reused after pruning (its rowid would otherwise restart after the highest row is deleted, and a reused
id would reuse an idempotency key the broker still remembers, silently swallowing a new event).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""BIGINT (PostgreSQL ``bigserial``); SQLite only aliases ``rowid`` for a column typed exactly INTEGER."""


class OutboxEvent(Base):
    """One domain event. ``channel``/``type``: where and what (``type`` an ``EventType`` value);
    ``payload``: the event's ``data`` as JSON text (encoded once, at staging). Times are epoch ms.

    ``subject``: what the event is about when a later event can make it pointless (``offer:<id>``: an
    offer's creation, then its outcome); ``stale_ms``: when it stops being worth delivering (an
    offer's deadline). The relay never delivers a row late once a newer row of its subject exists or
    its ``stale_ms`` has passed (``dispatch/outbox_relay.py``); None: always delivered.

    ``lease_until_ms``: until when the committing process owns the publication (a few seconds after
    the commit); the relay claims rows unpublished once it has passed. ``published_ms``: when the
    broker accepted it (None until then); published rows are pruned after a retention."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's query: unpublished rows, oldest first (a partial index: it holds only the
        # few rows in flight, not the retained history).
        sa.Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=sa.text("published_ms IS NULL"),
            sqlite_where=sa.text("published_ms IS NULL"),
        ),
        # Pruning: published rows by age.
        sa.Index(
            "ix_outbox_published",
            "published_ms",
            postgresql_where=sa.text("published_ms IS NOT NULL"),
            sqlite_where=sa.text("published_ms IS NOT NULL"),
        ),
        # The relay's supersession check: newer rows of a subject (a partial index: most rows have none).
        sa.Index(
            "ix_outbox_subject",
            "subject",
            "id",
            postgresql_where=sa.text("subject IS NOT NULL"),
            sqlite_where=sa.text("subject IS NOT NULL"),
        ),
        # The notification rules' query: rows not yet derived (server/notify/deriver.py).
        sa.Index(
            "ix_outbox_unnotified",
            "id",
            postgresql_where=sa.text("notified_ms IS NULL"),
            sqlite_where=sa.text("notified_ms IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(sa.String(200))
    type: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[str] = mapped_column(sa.Text)
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    lease_until_ms: Mapped[int] = mapped_column(sa.BigInteger)
    published_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    subject: Mapped[str | None] = mapped_column(sa.String(80))
    stale_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    notified_ms: Mapped[int | None] = mapped_column(sa.BigInteger)


class OutboxRelayLease(Base):
    """Who runs the outbox relay: one row per relay ``name``, held by ``owner`` (a process's random
    id) until ``lease_until_ms`` (epoch ms) and renewed by its holder on every pass. One active relay
    at a time keeps the relay's publications in id order per channel."""

    __tablename__ = "outbox_relay_lease"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(64))
    lease_until_ms: Mapped[int] = mapped_column(sa.BigInteger)
