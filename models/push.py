"""Web push: the browsers' push subscriptions of each person, and the offers a doctor's app has
acknowledged on its socket (so their push is not sent).

A :class:`PushSubscription` is what a browser's ``PushManager.subscribe`` gave the app (RFC 8030's
push resource, ``endpoint``, and RFC 8291's keys: ``p256dh`` the browser's P-256 public key, ``auth``
its 16-byte secret, both base64url). One endpoint belongs to one person (a browser signed in as
someone else takes it over). A push service's 404 or 410 deletes it (``server/notify/webpush.py``).

An :class:`OfferSeen` row says the doctor's app received the offer on its socket (``offer.seen``):
the offer's push, held back for ``TOT_PUSH_OFFER_AFTER_MS``, is then ``suppressed`` /
``acknowledged``. It lives in the database so that the socket's process and the sender's may differ.

Times are epoch milliseconds.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class PushSubscription(Base):
    """One browser's push subscription of ``person_id``: ``endpoint`` (unique), ``p256dh`` and
    ``auth`` (base64url), ``user_agent`` (as the app reported it, for the person's list),
    ``created_ms``, and the last delivery's outcome: ``last_success_ms``, ``last_failure_ms`` with
    ``last_error`` (a short code, e.g. ``http 500``)."""

    __tablename__ = "push_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), primary_key=True, default=uuid.uuid4)
    person_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(sa.String(1000), unique=True)
    p256dh: Mapped[str] = mapped_column(sa.String(128))
    auth: Mapped[str] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(300))
    created_ms: Mapped[int] = mapped_column(sa.BigInteger)
    last_success_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_failure_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_error: Mapped[str | None] = mapped_column(sa.String(120))


class OfferSeen(Base):
    """The doctor's app acknowledged offer ``offer_id`` on its socket at ``seen_ms``."""

    __tablename__ = "offer_seen"

    offer_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("offers.id", ondelete="CASCADE"), primary_key=True
    )
    seen_ms: Mapped[int] = mapped_column(sa.BigInteger)
