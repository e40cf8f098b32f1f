"""Share links: a read-only tracking page of one call for a relative (``/track/<token>``)."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk


class ShareLink(Base):
    """One link to follow ``call_id`` without an account. Only the SHA-256 of the token is stored
    (``token_hash``, 64 hex characters): a copy of the database gives no working link. The link dies
    with the call (the routes refuse it once the call is final); deleting the call deletes it."""

    __tablename__ = "share_links"

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_by: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = timestamp_default_now()
