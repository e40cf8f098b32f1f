"""Telegram account links through one-time deep-link tokens.

A signed-in person asks for a token (``POST /v1/telegram/link``): 32 random URL-safe characters,
stored as their SHA-256 digest, valid ``ttl_ms`` (``TOT_TELEGRAM_LINK_TTL``, 10 minutes), used once;
the app shows ``https://t.me/<bot>?start=<token>``. Telegram sends ``/start <token>`` from the person's
chat to the webhook, which :meth:`LinkTokens.redeem` s it: the chat is linked to the person (an earlier
chat of theirs, or an earlier person of that chat, is replaced). A reused, expired or unknown token
links nothing. Unlinking: ``DELETE /v1/telegram/link`` or ``/stop`` in the chat.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.repositories import telegram as telegram_repo

TOKEN_BYTES = 24
"""Random bytes of a token: 32 URL-safe characters (Telegram's start parameter: up to 64 of
``A-Za-z0-9_-``)."""


def token_hash(token: str) -> str:
    """The stored form of a token (SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token and when it expires (epoch ms)."""

    token: str
    expires_ms: int


class LinkTokens:
    """Issues and redeems link tokens (module docstring). ``clock``: epoch ms."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], ttl_ms: int, clock: Callable[[], int]
    ) -> None:
        self.sessions = sessions
        self.ttl_ms = ttl_ms
        self.clock = clock

    async def issue(self, person_id: uuid.UUID) -> IssuedToken:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires = self.clock() + self.ttl_ms
        async with self.sessions.begin() as session:
            await telegram_repo.add_token(session, token_hash(token), person_id, expires)
        return IssuedToken(token, expires)

    async def redeem(self, token: str, chat_id: int) -> bool:
        """Link ``chat_id`` to the token's person; False for a reused, expired or unknown token."""
        now = self.clock()
        async with self.sessions.begin() as session:
            person = await telegram_repo.redeem_token(session, token_hash(token), now)
            if person is None:
                return False
            await telegram_repo.link(session, person, chat_id, now)
        return True

    async def unlink(self, person_id: uuid.UUID) -> bool:
        async with self.sessions.begin() as session:
            return await telegram_repo.unlink_person(session, person_id)

    async def chat_of(self, person_id: uuid.UUID) -> int | None:
        async with self.sessions() as session:
            return await telegram_repo.chat_of(session, person_id)
