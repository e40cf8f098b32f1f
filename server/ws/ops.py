"""Socket ops owned by the dispatch layer, registered on the gateway at start-up (:func:`register`):
``doctor.status``, ``offer.accept`` and ``offer.decline`` (the same as their REST routes), ``chat.send``
and ``chat.read``, ``sos``, ``sos.ack`` and ``sos.resolve``. Each turns the frame's fields into a call
of a dispatch service and its refusals into error frames with the same code."""

from __future__ import annotations

import uuid
from typing import Any

from dispatch.calls import Who
from dispatch.errors import DispatchError
from geo.limits import MAX_LAT, MAX_LON
from models.enums import Role, SosKind
from realtime.errors import ErrorCode
from realtime.messages import FrameError, Generic
from server.ws.connection import Connection
from server.ws.gateway import Gateway

MAX_REASON = 500


def frame_error(exc: DispatchError) -> FrameError:
    """A dispatch refusal as an error frame with the same code (:meth:`FrameError.from_refusal`)."""
    return FrameError.from_refusal(exc)


def _offer_id(msg: Generic) -> uuid.UUID:
    return _uuid(msg, "offer")


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


def _uuid(msg: Generic, name: str) -> uuid.UUID:
    raw = msg.fields.get(name)
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw)
        except ValueError:
            pass
    raise FrameError(ErrorCode.INVALID_FIELD, f"{name} must be an id", field=name)


async def chat_send(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"chat.send","call","client_msg_id","text","ref"}`` -> ``ack`` with the stored message
    (``duplicate: true`` for a resend)."""
    call_id = _uuid(msg, "call")
    client_msg_id, text = msg.fields.get("client_msg_id"), msg.fields.get("text")
    if not isinstance(client_msg_id, str):
        raise FrameError(ErrorCode.INVALID_FIELD, "client_msg_id must be a string", field="client_msg_id")
    if not isinstance(text, str):
        raise FrameError(ErrorCode.INVALID_FIELD, "text must be a string", field="text")
    try:
        sent = await gateway.services.chat.send(_who(conn), call_id, client_msg_id, text)
    except DispatchError as exc:
        raise frame_error(exc) from None
    return {"message": sent.message, "duplicate": not sent.created}


async def chat_read(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"chat.read","call","up_to","ref"}`` -> ``ack`` with ``read`` (newly marked)."""
    try:
        changed = await gateway.services.chat.read(_who(conn), _uuid(msg, "call"), _uuid(msg, "up_to"))
    except DispatchError as exc:
        raise frame_error(exc) from None
    return {"read": changed}


def _number(msg: Generic, name: str, low: float, high: float) -> float | None:
    value = msg.fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise FrameError(
            ErrorCode.INVALID_FIELD, f"{name} must be a number within [{low}, {high}]", field=name
        )
    return float(value)


async def sos_raise(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"sos","kind","lat"?,"lon"?,"call"?,"message"?,"ref"}`` -> ``ack`` with the alert."""
    try:
        kind = SosKind(str(msg.fields.get("kind")))
    except ValueError:
        raise FrameError(
            ErrorCode.INVALID_FIELD, "kind must be danger, complex_call or emergency", field="kind"
        ) from None
    lat, lon = _number(msg, "lat", -MAX_LAT, MAX_LAT), _number(msg, "lon", -MAX_LON, MAX_LON)
    if (lat is None) != (lon is None):
        raise FrameError(ErrorCode.INVALID_FIELD, "lat and lon go together", field="lat")
    call_id = _uuid(msg, "call") if msg.fields.get("call") is not None else None
    message = msg.fields.get("message")
    if message is not None and (not isinstance(message, str) or len(message) > 1000):
        raise FrameError(ErrorCode.INVALID_FIELD, "message: text up to 1000 characters", field="message")
    try:
        alert = await gateway.services.sos.raise_alert(
            _who(conn), kind, lat=lat, lon=lon, call_id=call_id, message=message
        )
    except DispatchError as exc:
        raise frame_error(exc) from None
    return {"sos": alert}


async def sos_ack(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"sos.ack","sos","ref"}`` -> ``ack`` with the alert."""
    try:
        return {"sos": await gateway.services.sos.acknowledge(_who(conn), _uuid(msg, "sos"))}
    except DispatchError as exc:
        raise frame_error(exc) from None


async def sos_resolve(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"sos.resolve","sos","note","ref"}`` -> ``ack`` with the alert."""
    note = msg.fields.get("note")
    if not isinstance(note, str) or not 1 <= len(note) <= 2000:
        raise FrameError(ErrorCode.INVALID_FIELD, "note: text of 1-2000 characters", field="note")
    try:
        return {"sos": await gateway.services.sos.resolve(_who(conn), _uuid(msg, "sos"), note)}
    except DispatchError as exc:
        raise frame_error(exc) from None


async def doctor_status(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``{"op":"doctor.status","status":"available"|"paused"|"offline","ref"}`` -> ``ack`` with the
    status (rules: :meth:`dispatch.availability.Availability.set_status`)."""
    try:
        state = await gateway.availability.set_status(
            conn.user, msg.fields.get("status"), verified=conn.doctor_verified
        )
    except DispatchError as exc:
        raise frame_error(exc) from None
    return {"status": state.status.value}


def register(gateway: Gateway) -> None:
    """Register the dispatch ops on ``gateway``."""
    gateway.register_op("doctor.status", doctor_status, {Role.DOCTOR})
    gateway.register_op("offer.accept", offer_accept, {Role.DOCTOR})
    gateway.register_op("offer.decline", offer_decline, {Role.DOCTOR})
    everyone = set(Role)
    gateway.register_op("chat.send", chat_send, everyone)
    gateway.register_op("chat.read", chat_read, everyone)
    gateway.register_op("sos", sos_raise, {Role.DOCTOR, Role.PATIENT})
    staff = {Role.DISPATCHER, Role.ADMIN}
    gateway.register_op("sos.ack", sos_ack, staff)
    gateway.register_op("sos.resolve", sos_resolve, staff)
