"""Telegram account links, their one-time tokens and the webhook's handled updates
(``models/notifications.py``). Times are epoch ms; nothing commits."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications import TelegramLink, TelegramLinkToken, TelegramUpdate
from models.users import User


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def add_token(session: AsyncSession, token_hash: str, person_id: uuid.UUID, expires_ms: int) -> None:
    """Store a new link token (its SHA-256 hex digest) for ``person_id``, valid until ``expires_ms``."""
    session.add(TelegramLinkToken(token_hash=token_hash, person_id=person_id, expires_ms=expires_ms))


async def redeem_token(session: AsyncSession, token_hash: str, now_ms: int) -> uuid.UUID | None:
    """Use the token once: its person when it exists, is unused and unexpired (it is marked used),
    else None. One conditional UPDATE: of two redemptions at once, one wins."""
    person = await session.scalar(
        sa.update(TelegramLinkToken)
        .where(
            TelegramLinkToken.token_hash == token_hash,
            TelegramLinkToken.used_ms.is_(None),
            TelegramLinkToken.expires_ms > now_ms,
        )
        .values(used_ms=now_ms)
        .returning(TelegramLinkToken.person_id)
        .execution_options(synchronize_session=False)
    )
    return person


async def link(session: AsyncSession, person_id: uuid.UUID, chat_id: int, now_ms: int) -> None:
    """Link ``person_id`` to ``chat_id``, replacing the person's earlier chat and the chat's earlier
    person."""
    await session.execute(
        sa.delete(TelegramLink).where(
            sa.or_(TelegramLink.person_id == person_id, TelegramLink.chat_id == chat_id)
        )
    )
    session.add(TelegramLink(person_id=person_id, chat_id=chat_id, linked_ms=now_ms))


async def unlink_person(session: AsyncSession, person_id: uuid.UUID) -> bool:
    """Remove ``person_id``'s link; whether there was one."""
    result = await session.execute(sa.delete(TelegramLink).where(TelegramLink.person_id == person_id))
    return bool(getattr(result, "rowcount", 0))


async def unlink_chat(session: AsyncSession, chat_id: int) -> bool:
    """Remove ``chat_id``'s link; whether there was one."""
    result = await session.execute(sa.delete(TelegramLink).where(TelegramLink.chat_id == chat_id))
    return bool(getattr(result, "rowcount", 0))


async def person_of_chat(session: AsyncSession, chat_id: int) -> tuple[uuid.UUID, str, str, bool] | None:
    """``(person id, role, language, active)`` linked to ``chat_id``, or None."""
    row = (
        await session.execute(
            sa.select(User.id, User.role, User.language, User.is_active)
            .join(TelegramLink, TelegramLink.person_id == User.id)
            .where(TelegramLink.chat_id == chat_id)
        )
    ).first()
    return None if row is None else (row[0], row[1], row[2], row[3])


async def chat_of(session: AsyncSession, person_id: uuid.UUID) -> int | None:
    """The chat ``person_id`` linked, or None."""
    chat = await session.scalar(sa.select(TelegramLink.chat_id).where(TelegramLink.person_id == person_id))
    return None if chat is None else int(chat)


async def first_sight(session: AsyncSession, update_id: int, now_ms: int) -> bool:
    """Record a webhook update; False when ``update_id`` was handled before (a replay)."""
    result = await session.execute(
        _insert(session)(TelegramUpdate)
        .values(update_id=update_id, received_ms=now_ms)
        .on_conflict_do_nothing(index_elements=["update_id"])
    )
    return bool(getattr(result, "rowcount", 0))


async def prune_updates(session: AsyncSession, before_ms: int) -> int:
    """Forget updates received before ``before_ms``; returns how many."""
    result = await session.execute(sa.delete(TelegramUpdate).where(TelegramUpdate.received_ms < before_ms))
    return int(getattr(result, "rowcount", 0) or 0)
