"""Revoking an account's tokens: disable, re-enable, change the role, log out, delete.

Each is one database transaction that changes the account, raises its ``token_version``
(``models/repositories/users.py`` :func:`~models.repositories.users.revoke_tokens`) and stages an
``account.revoked`` event on the server-internal ``accounts`` channel in the same transaction (the
transactional outbox, ``dispatch/publisher.py``). Every server process follows that channel
(``server/ws/revocation.py``): it holds the new version in the live engine and closes the user's open
sockets with close code 4410 ``token_revoked``. The admin endpoint (``server/routes/admin.py``) publishes
at once after its commit; the CLI (``tot-dispatch users disable|enable|set-role``), which has no broker,
leaves its row to the running servers' outbox relay (published within ``relay_interval_ms``, 0.5 s).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.publisher import EventPublisher
from models.enums import Role
from models.repositories import outbox as outbox_repo
from models.repositories import users as user_repo
from models.users import DELETED_VALID_FROM, User, valid_from
from realtime.broker import validate_channel
from realtime.event_types import EventType

ACCOUNTS_CHANNEL = "accounts"
"""The server-internal channel of ``account.revoked`` (not a client channel kind: nobody subscribes)."""


class RevokeReason(StrEnum):
    """Why an account's tokens were revoked (the event's ``reason``)."""

    DISABLED = "disabled"
    ENABLED = "enabled"
    ROLE_CHANGED = "role_changed"
    LOGOUT = "logout"
    DELETED = "deleted"


class AccountRevokedPayload(TypedDict):
    """The data of ``account.revoked``."""

    user: str
    valid_from: int
    reason: str


@dataclass(frozen=True, slots=True)
class Revoked:
    """The outcome: the account as changed (``None`` once deleted) and the lowest version accepted now."""

    user: User | None
    valid_from: int
    reason: RevokeReason


class NoSuchAccount(LookupError):
    """No account has this id (or login)."""


async def _change(
    session: AsyncSession,
    user_id: uuid.UUID,
    reason: RevokeReason,
    *,
    is_active: bool | None = None,
    role: Role | None = None,
) -> tuple[Revoked, AccountRevokedPayload | None]:
    """The change and its event's payload (``None``: nothing changed, no event). Raises
    :class:`NoSuchAccount`."""
    user = await session.scalar(sa.select(User).where(User.id == user_id).with_for_update())
    if user is None:
        raise NoSuchAccount(str(user_id))
    if reason is RevokeReason.DELETED:
        await session.delete(user)
        await session.flush()
        valid = DELETED_VALID_FROM
        outcome = Revoked(None, valid, reason)
    elif reason is not RevokeReason.LOGOUT and _unchanged(user, is_active, role):
        # Enabling an active account or giving an account its own role changes nothing: its tokens stay.
        return Revoked(user, valid_from(user.token_version, user.is_active), reason), None
    else:
        valid = await user_repo.revoke_tokens(session, user, is_active=is_active, role=role)
        outcome = Revoked(user, valid, reason)
    return outcome, {"user": str(user_id), "valid_from": valid, "reason": reason.value}


def _unchanged(user: User, is_active: bool | None, role: Role | None) -> bool:
    return (is_active is None or user.is_active == is_active) and (role is None or user.role == role.value)


async def revoke(
    publisher: EventPublisher,
    user_id: uuid.UUID,
    reason: RevokeReason,
    *,
    is_active: bool | None = None,
    role: Role | None = None,
) -> Revoked:
    """Change the account (``is_active``, ``role``; delete it for ``DELETED``) and revoke its tokens, in
    one transaction with its ``account.revoked`` event (published right after the commit). A change
    that changes nothing (enabling an active account, the account's own role) revokes nothing. Raises
    :class:`NoSuchAccount`; a deletion the database refuses (the account is referenced by calls or
    messages) raises ``sqlalchemy.exc.IntegrityError`` and changes nothing."""
    async with publisher.transaction() as tx:
        outcome, payload = await _change(tx.session, user_id, reason, is_active=is_active, role=role)
        if payload is not None:
            tx.stage(ACCOUNTS_CHANNEL, EventType.ACCOUNT_REVOKED, payload)
    return outcome


async def revoke_offline(
    session: AsyncSession,
    user_id: uuid.UUID,
    reason: RevokeReason,
    *,
    is_active: bool | None = None,
    role: Role | None = None,
) -> Revoked:
    """:func:`revoke` in ``session``'s transaction without a broker (the CLI): the event row is staged
    claimable at once, for the running servers' outbox relay to publish. Raises as :func:`revoke`."""
    outcome, payload = await _change(session, user_id, reason, is_active=is_active, role=role)
    if payload is None:
        return outcome
    now_ms = int(time.time() * 1000)
    row = outbox_repo.stage(
        session,
        validate_channel(ACCOUNTS_CHANNEL),
        EventType.ACCOUNT_REVOKED.value,
        orjson.dumps(payload).decode(),
        now_ms,
        now_ms,
    )
    await outbox_repo.insert_staged(session, [row])
    return outcome
