"""Whether a verified token is still honoured: revocation by token version.

A token is revoked when its ``ver`` is below the lowest version its account accepts
(:func:`models.users.valid_from`: the account's ``token_version``, one more while it is disabled, none
at all once it is deleted). The live engine's :class:`~realtime.revocations.Revocations` caches that
version per user for ``ttl_ms``; a miss, or an engine that does not answer, is answered from the
database (and the answer written back when the engine works), so a flushed, restarted or unreachable
engine costs database reads and never lets a revoked token in (fail closed: with neither the engine nor
the database answering, the request fails rather than pass unchecked).

Every REST route that needs a signed-in user checks here once per request (``server/api.py``), and every
socket at connect (``server/ws/transport.py``); open sockets of a revoked user are closed by the account
events (``server/ws/revocation.py``).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.repositories import users as user_repo
from models.users import valid_from
from realtime.errors import MESSAGES, ErrorCode
from realtime.revocations import Revocations
from server.auth.principal import Principal
from server.errors import ApiError

log = logging.getLogger("tot.auth")


def revoked() -> ApiError:
    """The refusal of a revoked token: 401 ``token_revoked``, its English and Russian texts from
    ``realtime.errors.MESSAGES``."""
    english, russian = MESSAGES[ErrorCode.TOKEN_REVOKED]
    return ApiError(ErrorCode.TOKEN_REVOKED, english, message_ru=russian)


class AccessCheck:
    """Checks principals against the accepted token versions: the engine's cache, then the database."""

    def __init__(self, revocations: Revocations, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.revocations = revocations
        self.sessions = sessions
        self.database_reads = 0
        """Reads of the truth (cache misses and engine failures) since start."""

    async def valid_from(self, user_id: uuid.UUID) -> int:
        """The lowest token version accepted for ``user_id`` now. Raises what the database raises when
        the engine holds nothing and the database cannot be read."""
        user = str(user_id)
        engine_ok = True
        try:
            held = await self.revocations.valid_from(user)
        except Exception:
            log.warning("revocations unreadable in the live engine; asking the database", exc_info=True)
            held, engine_ok = None, False
        if held is not None:
            return held
        self.database_reads += 1
        async with self.sessions() as session:
            state = await user_repo.access_state(session, user_id)
        current = valid_from(*state) if state is not None else valid_from(None, False)
        if engine_ok:
            try:
                # Merged by maximum: a revocation written meanwhile wins over this older read.
                current = await self.revocations.raise_to(user, current)
            except Exception:
                log.warning("could not cache an account's token version", exc_info=True)
        return current

    async def check(self, principal: Principal) -> Principal:
        """``principal`` when its token is still honoured. Raises ``ApiError`` 401 ``token_revoked``."""
        if principal.token_version < await self.valid_from(principal.user_id):
            raise revoked()
        return principal

    async def account_gone(self, user_id: uuid.UUID) -> bool:
        """True when the database has no account ``user_id`` (then it is held as deleted in the engine:
        its tokens are refused from now on)."""
        async with self.sessions() as session:
            state = await user_repo.access_state(session, user_id)
        if state is not None:
            return False
        await self.revoked(user_id, valid_from(None, False))
        return True

    async def revoked(self, user_id: uuid.UUID | str, version: int) -> None:
        """An account's tokens below ``version`` were revoked (committed in the database): hold it in the
        engine at once. An engine failure is logged: the entry the engine held expires within its TTL,
        and a lost engine is read from the database again."""
        try:
            await self.revocations.raise_to(str(user_id), version)
        except Exception:
            log.warning("could not write a revocation to the live engine", exc_info=True)
