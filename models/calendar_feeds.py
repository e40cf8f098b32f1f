"""Doctors' calendar feeds: a secret ICS address per doctor (``/v1/calendar/<token>.ics``)."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now


class CalendarFeed(Base):
    """The one live feed token of ``doctor_id``. Only the token's SHA-256 is stored (``token_hash``, 64
    hex characters), as for share links: a copy of the database gives no working address. Rotating
    replaces the hash, so the old address stops working at once; deleting the doctor deletes it."""

    __tablename__ = "calendar_feeds"

    doctor_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = timestamp_default_now()
