"""Socket ops owned by the dispatch layer: ``offer.accept`` and ``offer.decline`` (the same as their
REST routes), registered on the gateway at start-up."""

from __future__ import annotations

import uuid
from typing import Any

from dispatch.calls import Who
from dispatch.errors import DispatchError
from models.enums import Role
from realtime.messages import FrameError, Generic
from realtime.protocol import ErrorCode
from server.gateway import Connection, Gateway

MAX_REASON = 500


def frame_error(exc: DispatchError) -> FrameError:
    """A dispatch refusal as an error frame with the same code (unknown codes become ``invalid_field``)."""
    try:
        code = ErrorCode(exc.code)
    except ValueError:
        code = ErrorCode.INVALID_FIELD
    return FrameError(code, exc.message, field=exc.field)


def _offer_id(msg: Generic) -> uuid.UUID:
    raw = msg.fields.get("offer")
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    raise FrameError(ErrorCode.INVALID_FIELD, "offer must be an offer id", field="offer")


def _who(conn: Connection) -> Who:
    return Who(conn.principal.user_id, conn.principal.role)


async def offer_accept(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"offer.accept","offer":"<id>","ref":...}`` -> ``ack`` with the call."""
    offer_id = _offer_id(msg)
    try:
        moved = await gateway.services.dispatch.accept(_who(conn), offer_id)
    except DispatchError as exc:
        raise frame_error(exc) from None
    return {"call": str(moved.call.id), "status": moved.call.status}


async def offer_decline(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"offer.decline","offer":"<id>","reason"?:...,"ref":...}`` -> ``ack``."""
    offer_id = _offer_id(msg)
    reason = msg.fields.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        raise FrameError(
            ErrorCode.INVALID_FIELD, f"reason: text up to {MAX_REASON} characters", field="reason"
        )
    try:
        await gateway.services.dispatch.decline(_who(conn), offer_id, reason)
    except DispatchError as exc:
        raise frame_error(exc) from None
    return {"declined": True}


def register(gateway: Gateway) -> None:
    """Register the dispatch ops on ``gateway``."""
    gateway.register_op("offer.accept", offer_accept, {Role.DOCTOR})
    gateway.register_op("offer.decline", offer_decline, {Role.DOCTOR})
