"""The WebSocket wire protocol's fixed vocabulary: close codes and server frames (error codes live in
the one catalogue shared with REST, :mod:`realtime.errors`).

docs/protocol.md is the reference for clients; this module is its source of truth in code. Server
frames other than channel events (which the broker encodes once per publication) are built here.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

import orjson

from realtime.errors import ErrorCode


class CloseCode(IntEnum):
    """WebSocket close codes the server uses (4000-4999 is the application range, RFC 6455 7.4.2).

    The close reason is the matching :class:`ErrorCode` value or a short phrase.
    """

    GOING_AWAY = 1001  # the server is shutting down: reconnect (to another process)
    MESSAGE_TOO_BIG = 1009  # a frame beyond the hard limit; sent by the WebSocket layer itself
    INTERNAL_ERROR = 1011  # a bug; logged with its traceback
    TRY_AGAIN_LATER = 1013  # overload at connect (no database connection came free): reconnect shortly
    UNAUTHORIZED = 4401  # no token, bad token, expired token (reason says which)
    ORIGIN_NOT_ALLOWED = 4403  # the Origin header is not in TOT_WS_ALLOWED_ORIGINS
    TOKEN_REVOKED = 4410  # the account was disabled, deleted or its role changed, or it logged out: log in
    IDLE_TIMEOUT = 4408  # no frame from the client for TOT_WS_IDLE_TIMEOUT seconds
    FLOOD = 4429  # the client kept exceeding its rate limits after error frames told it so
    TOO_MANY_SOCKETS = 4430  # the user or client address already holds TOT_WS_MAX_PER_USER / _ADDRESS sockets
    SLOW_CONSUMER = 4499  # the client did not read fast enough; its send queue overflowed


class UnsubscribeReason(StrEnum):
    """The ``reason`` of an ``unsubscribed`` frame the server sends unasked (no ``ref``): it ended a
    subscription itself, and nothing more of that channel follows."""

    UNASSIGNED = "unassigned"  # ``call:<id>``, on the connections of the doctor the call was taken from
    DOCTOR_CHANNEL_LEFT = "doctor_channel_left"  # every ``call:``, on a doctor's leaving ``doctor:<id>``


class ReannounceReason(StrEnum):
    """The ``reason`` of a ``reannounce`` frame: why the server asks a doctor's app to tell it again
    what it knows (status and position)."""

    ENGINE_RESET = "engine_reset"  # the live engine was lost and rebuilt from the database (a Redis restart)


def reannounce_frame(reason: ReannounceReason = ReannounceReason.ENGINE_RESET) -> bytes:
    """``{"op":"reannounce","reason":...}``, sent unasked to every doctor connection of a process
    whose live engine changed (``dispatch/engine_watch.py``). The app answers with its current
    ``doctor.status`` (a refusal such as "you are busy" is expected and harmless: the server already
    holds that doctor for a call) and a fresh ``location`` fix; the server has restored what the
    database knows, but positions live only in the engine. Other roles never get it; a client that
    does not know the op ignores it (docs/protocol.md)."""
    return encode({"op": "reannounce", "reason": reason.value})


def unsubscribed_frame(channel: str, ref: Any = None, reason: UnsubscribeReason | None = None) -> bytes:
    """``{"op":"unsubscribed","ch":...,"ref"?:...,"reason"?:...}``: the answer to ``unsubscribe``
    (with its ``ref``), or the server's own end of a subscription (with a ``reason``)."""
    frame: dict[str, Any] = {"op": "unsubscribed", "ch": channel}
    if ref is not None:
        frame["ref"] = ref
    if reason is not None:
        frame["reason"] = reason.value
    return encode(frame)


def encode(frame: dict[str, Any]) -> bytes:
    """A server frame as JSON bytes (sent as a text frame)."""
    return orjson.dumps(frame)


def error_frame(code: ErrorCode, message: str, ref: Any = None, field: str | None = None) -> bytes:
    """``{"op":"error","code":...,"message":...,"ref"?:...,"field"?:...}``."""
    frame: dict[str, Any] = {"op": "error", "code": code.value, "message": message}
    if ref is not None:
        frame["ref"] = ref
    if field is not None:
        frame["field"] = field
    return encode(frame)


def ack_frame(ref: Any, **fields: Any) -> bytes:
    """``{"op":"ack","ref":...}`` plus result fields."""
    return encode({"op": "ack", "ref": ref, **fields})
