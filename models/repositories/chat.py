"""Reading and writing chat messages."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.chat import ChatMessage


async def find(
    session: AsyncSession, call_id: uuid.UUID, sender_id: uuid.UUID, client_msg_id: str
) -> ChatMessage | None:
    """The message ``sender_id`` already sent on the call with this client message id, if any."""
    return await session.scalar(
        sa.select(ChatMessage).where(
            ChatMessage.call_id == call_id,
            ChatMessage.sender_id == sender_id,
            ChatMessage.client_msg_id == client_msg_id,
        )
    )


async def get(session: AsyncSession, message_id: uuid.UUID) -> ChatMessage | None:
    """A message by id."""
    return await session.get(ChatMessage, message_id)


async def page(
    session: AsyncSession, call_id: uuid.UUID, after: ChatMessage | None, limit: int
) -> list[ChatMessage]:
    """Up to ``limit`` messages of the call after ``after`` (oldest first; ``None``: from the start).
    Order is (created_at, id), a total order, so pages never skip nor repeat a message."""
    query = sa.select(ChatMessage).where(ChatMessage.call_id == call_id)
    if after is not None:
        query = query.where(
            sa.or_(
                ChatMessage.created_at > after.created_at,
                sa.and_(ChatMessage.created_at == after.created_at, ChatMessage.id > after.id),
            )
        )
    rows = await session.scalars(query.order_by(ChatMessage.created_at, ChatMessage.id).limit(limit))
    return list(rows)


async def mark_read(
    session: AsyncSession, call_id: uuid.UUID, reader_id: uuid.UUID, up_to: ChatMessage, at: dt.datetime
) -> int:
    """Set ``read_at`` on the call's messages from others, up to and including ``up_to``, that nobody
    read yet. Returns how many changed."""
    result = await session.execute(
        sa.update(ChatMessage)
        .where(
            ChatMessage.call_id == call_id,
            ChatMessage.sender_id != reader_id,
            ChatMessage.read_at.is_(None),
            sa.or_(
                ChatMessage.created_at < up_to.created_at,
                sa.and_(ChatMessage.created_at == up_to.created_at, ChatMessage.id <= up_to.id),
            ),
        )
        .values(read_at=at)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
