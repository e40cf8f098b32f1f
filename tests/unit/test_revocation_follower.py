"""The process's follower of ``account.revoked`` (server/ws/revocation.py): which connections it closes,
the version it holds in the engine, and the connection that was being opened while the event went by."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, cast

import orjson

from models.enums import Role
from realtime.broker import Publication
from realtime.event_types import EventType
from realtime.protocol import CloseCode
from realtime.revocations_memory import MemoryRevocations
from realtime.session import Session
from server.auth.access import AccessCheck
from server.auth.principal import Principal
from server.ws.connection import Connection
from server.ws.revocation import RevocationFollower


async def _send(_message: Any) -> None:
    return None


def connection(user: uuid.UUID, version: int) -> Connection:
    principal = Principal(user_id=user, role=Role.PATIENT, token_version=version)
    return Connection(uuid.uuid4().hex, principal, cast(Session, None), _send, user=str(user))


def event(
    user: uuid.UUID, valid_from: int, event_type: str = EventType.ACCOUNT_REVOKED.value
) -> tuple[Publication, str]:
    data = {"user": str(user), "valid_from": valid_from, "reason": "disabled"}
    frame = orjson.dumps({"op": "event", "ch": "accounts", "type": event_type, "data": data}).decode()
    return cast(Publication, type("P", (), {"type": event_type, "channel": "accounts"})()), frame


async def test_closes_only_the_users_older_connections_and_holds_the_version() -> None:
    user, other = uuid.uuid4(), uuid.uuid4()
    old, fresh, stranger = connection(user, 0), connection(user, 1), connection(other, 0)
    stopped: list[tuple[str, int, str]] = []
    revocations = MemoryRevocations()
    follower = RevocationFollower(
        lambda: [old, fresh, stranger],
        lambda conn, code, reason: stopped.append((conn.id, code, reason)),
        AccessCheck(revocations, cast(Any, None)),
    )

    assert follower.deliver(*event(user, 1))
    await asyncio.sleep(0)  # the engine write runs as a task
    await asyncio.sleep(0)

    assert stopped == [(old.id, CloseCode.TOKEN_REVOKED, "token_revoked")]
    assert await revocations.valid_from(str(user)) == 1
    assert follower.closed == 1


async def test_other_event_types_and_bad_payloads_are_ignored() -> None:
    user = uuid.uuid4()
    stopped: list[str] = []
    follower = RevocationFollower(
        lambda: [connection(user, 0)],
        lambda conn, code, reason: stopped.append(conn.id),
        AccessCheck(MemoryRevocations(), cast(Any, None)),
    )
    assert follower.deliver(*event(user, 5, EventType.CALL_STATUS.value))
    publication, _ = event(user, 5)
    assert follower.deliver(publication, '{"data": {}}')
    assert stopped == []


async def test_a_connection_opened_while_the_event_went_by_is_caught() -> None:
    user = uuid.uuid4()
    follower = RevocationFollower(
        lambda: [], lambda conn, code, reason: None, AccessCheck(MemoryRevocations(), cast(Any, None))
    )
    follower.revoke(str(user), 3)
    await asyncio.sleep(0)
    assert follower.revoked_meanwhile(connection(user, 2))
    assert not follower.revoked_meanwhile(connection(user, 3))
    assert not follower.revoked_meanwhile(connection(uuid.uuid4(), 0))
