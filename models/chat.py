"""Chat messages between a call's patient, its doctor and dispatchers."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk
from models.types import UTCDateTime


class ChatMessage(Base):
    """One chat line on a call. ``(call_id, sender_id, client_msg_id)`` is unique, so a resend of the
    same client message is stored once. ``read_at`` is when the other party first read it."""

    __tablename__ = "chat_messages"
    __table_args__ = (
        sa.UniqueConstraint("call_id", "sender_id", "client_msg_id", name="uq_chat_messages_client_msg"),
        sa.Index("ix_chat_messages_call_created", "call_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"))
    sender_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    client_msg_id: Mapped[str] = mapped_column(sa.String(64))
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = timestamp_default_now()
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
