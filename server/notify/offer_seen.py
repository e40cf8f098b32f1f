"""The socket op ``offer.seen``: the doctor's app acknowledges an offer it received, so its web push
is not sent (``server/notify/push_acks.py``, docs/protocol.md). Registered by ``server/app.py``."""

from __future__ import annotations

import uuid
from typing import Any

from models.enums import Role
from models.repositories import push as push_repo
from realtime.clock import wall_clock_ms
from realtime.errors import ErrorCode
from realtime.messages import FrameError, Generic
from server.ws.connection import Connection
from server.ws.gateway import Gateway


async def offer_seen(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"offer.seen","offer":"<id>","ref"?}`` -> ``ack`` with ``seen: true``; ``not_found`` for
    an offer that is not this doctor's."""
    raw = msg.fields.get("offer")
    try:
        offer_id = uuid.UUID(raw) if isinstance(raw, str) else None
    except ValueError:
        offer_id = None
    if offer_id is None:
        raise FrameError(ErrorCode.INVALID_FIELD, "offer must be an id", field="offer")
    services = gateway.services
    now = services.notify.clock() if services.notify is not None else wall_clock_ms()
    async with services.sessions.begin() as session:
        ok = await push_repo.mark_seen(session, offer_id, conn.principal.user_id, now)
    if not ok:
        raise FrameError(ErrorCode.NOT_FOUND, "no such offer of yours", field="offer")
    return {"seen": True}


def register(gateway: Gateway) -> None:
    """Register ``offer.seen`` (doctors) on ``gateway``."""
    gateway.register_op("offer.seen", offer_seen, {Role.DOCTOR})
