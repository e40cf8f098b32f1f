"""Client frames decoded into typed messages, with every field checked.

Decoding never raises anything but :class:`FrameError`, whatever the bytes: the gateway turns that into
an ``error`` frame and keeps the connection. Coordinates are WGS84 degrees, accuracy and speed metres
and metres per second, heading degrees clockwise from north, timestamps epoch milliseconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.errors import ErrorCode, Refusal

MAX_REF_LENGTH = 64
MAX_ACCURACY_M = 10_000.0  # a fix vaguer than 10 km cannot place a doctor in a district
MAX_SPEED_MPS = 100.0  # 360 km/h: anything faster is a broken GPS

# --- the text rule, shared by the REST API (server/schemas.py Input) and the socket (decode) ---------
# Unicode control characters (general category Cc: C0 U+0000-U+001F, DEL U+007F, C1 U+0080-U+009F) are
# refused in every text field. Why: PostgreSQL cannot store U+0000 (a 500 before this rule), and the
# others are invisible, break single-line displays, logs and CSV exports, and no client needs them. DEL
# and C1 are in the same category and as useless in text, so the rule is the category, not the range.
# Multi-line text (chat, symptoms, reasons, notes, comments) keeps tab, line feed and carriage return.
_CONTROL_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
LINE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
"""The rule of a single-line text field as a JSON-schema (ECMA-262) pattern, for the OpenAPI document."""
TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
"""The same for multi-line text: tab (U+0009), line feed (U+000A) and carriage return (U+000D) allowed."""


def control_character(value: str, *, multiline: bool = False) -> str | None:
    """The first refused control character of ``value`` as ``U+XXXX``, or ``None`` when it has none.
    ``multiline`` allows tab, line feed and carriage return. Never returns or echoes the text itself:
    callers put the code point, not the value, in errors and logs."""
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL_IN_LINE).search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def control_character_message(field: str, code_point: str) -> str:
    """The error message of a refused control character (the same on REST and the socket)."""
    return f"{field}: control character {code_point} is not allowed here"


TEXT_FIELDS: dict[str, dict[str, bool]] = {
    "location": {"ref": False},
    "subscribe": {"ch": False, "since.epoch": False, "ref": False},
    "unsubscribe": {"ch": False, "ref": False},
    "ping": {"ref": False},
    "doctor.status": {"status": False, "ref": False},
    "offer.accept": {"offer": False, "ref": False},
    "offer.decline": {"offer": False, "reason": True, "ref": False},
    "offer.seen": {"offer": False, "ref": False},
    "chat.send": {"call": False, "client_msg_id": False, "text": True, "ref": False},
    "chat.read": {"call": False, "up_to": False, "ref": False},
    "sos": {"kind": False, "call": False, "message": True, "ref": False},
    "sos.ack": {"sos": False, "ref": False},
    "sos.resolve": {"sos": False, "note": True, "ref": False},
}
"""The string fields of each client op (docs/protocol.md), ``True`` where the text may span lines.
Every string of every frame is checked, listed or not (a field missing here is single-line); the list
says which may hold tab and newline, and lets tests reach every field (tests/e2e/test_input_rule.py)."""


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` (a decoded JSON value) with its dotted path (``since.epoch``,
    ``items.0``); object keys are not walked (an unknown key is never read, let alone stored)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


def _check_text(obj: dict[str, Any], op: str) -> None:
    """Refuse the frame when any of its strings holds a control character its field does not allow."""
    multiline = TEXT_FIELDS.get(op, {})
    for path, text in _strings(obj, ""):
        code_point = control_character(text, multiline=multiline.get(path, False))
        if code_point is not None:
            raise FrameError(ErrorCode.INVALID_FIELD, control_character_message(path, code_point), field=path)


class FrameError(Exception):
    """A frame was refused: ``code`` for the error frame, ``field`` when one field is at fault."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None, ref: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.ref = ref

    @classmethod
    def from_refusal(cls, refusal: Refusal) -> FrameError:
        """A domain or API refusal as an error frame: the same code (``invalid_input`` is the socket's
        ``invalid_field``, :meth:`ErrorCode.on_socket`), message and field; no code is lost."""
        return cls(refusal.code.on_socket(), refusal.message, field=refusal.field)


@dataclass(frozen=True, slots=True)
class StreamSince:
    """A recovery point: the last offset the client saw in ``epoch``."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Location:
    """``location``: a doctor's GPS fix."""

    lat: float
    lon: float
    acc: float
    ts: int
    heading: float | None
    speed: float | None
    ref: Any


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``subscribe``: start receiving ``ch``, optionally recovering what was missed since ``since``."""

    ch: str
    since: StreamSince | None
    ref: Any


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``unsubscribe``: stop receiving ``ch``."""

    ch: str
    ref: Any


@dataclass(frozen=True, slots=True)
class Ping:
    """``ping``: the server answers ``pong`` (application-level keepalive for clients that want one)."""

    ref: Any


@dataclass(frozen=True, slots=True)
class Generic:
    """An op handled outside the gateway (offers, chat, SOS...): its op name and raw fields, after
    the envelope checks; the handler validates the fields."""

    op: str
    fields: dict[str, Any]
    ref: Any


Message = Location | Subscribe | Unsubscribe | Ping | Generic


def _ref(obj: dict[str, Any]) -> Any:
    ref = obj.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise FrameError(ErrorCode.INVALID_FIELD, "ref must be a string or an integer", field="ref")
    if isinstance(ref, str) and len(ref) > MAX_REF_LENGTH:
        raise FrameError(ErrorCode.INVALID_FIELD, f"ref longer than {MAX_REF_LENGTH}", field="ref")
    if isinstance(ref, str) and (code_point := control_character(ref)) is not None:
        # Refused without echoing it back: the error frame's ref would carry the control character.
        raise FrameError(ErrorCode.INVALID_FIELD, control_character_message("ref", code_point), field="ref")
    if isinstance(ref, int) and not -(2**53) <= ref <= 2**53:
        raise FrameError(ErrorCode.INVALID_FIELD, "ref out of range", field="ref")
    return ref


def _number(
    obj: dict[str, Any], name: str, low: float, high: float, *, required: bool = True
) -> float | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise FrameError(ErrorCode.INVALID_FIELD, f"{name} is required", field=name)
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrameError(ErrorCode.INVALID_FIELD, f"{name} must be a number", field=name)
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise FrameError(ErrorCode.INVALID_FIELD, f"{name} must be within [{low}, {high}]", field=name)
    return number


def _location(obj: dict[str, Any], ref: Any) -> Location:
    lat = _number(obj, "lat", -90.0, 90.0)
    lon = _number(obj, "lon", -180.0, 180.0)
    acc = _number(obj, "acc", 0.0, MAX_ACCURACY_M)
    ts = obj.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
        raise FrameError(
            ErrorCode.INVALID_FIELD, "ts must be epoch milliseconds (a positive integer)", field="ts"
        )
    heading = _number(obj, "heading", 0.0, 360.0, required=False)
    speed = _number(obj, "speed", 0.0, MAX_SPEED_MPS, required=False)
    assert lat is not None and lon is not None and acc is not None
    return Location(lat=lat, lon=lon, acc=acc, ts=ts, heading=heading, speed=speed, ref=ref)


def _channel(obj: dict[str, Any]) -> str:
    ch = obj.get("ch")
    if not isinstance(ch, str) or not ch:
        raise FrameError(ErrorCode.INVALID_FIELD, "ch must be a channel name", field="ch")
    return ch


def _since(obj: dict[str, Any]) -> StreamSince | None:
    since = obj.get("since")
    if since is None:
        return None
    if not isinstance(since, dict):
        raise FrameError(ErrorCode.INVALID_FIELD, "since must be {offset, epoch}", field="since")
    offset, epoch = since.get("offset"), since.get("epoch")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 2**53:
        raise FrameError(
            ErrorCode.INVALID_FIELD, "since.offset must be a non-negative integer", field="since.offset"
        )
    if not isinstance(epoch, str) or not 0 < len(epoch) <= 64:
        raise FrameError(ErrorCode.INVALID_FIELD, "since.epoch must be the epoch string", field="since.epoch")
    return StreamSince(offset=offset, epoch=epoch)


def decode(raw: str | bytes, known_ops: frozenset[str]) -> Message:
    """Decode one text frame. ``known_ops`` are the ops beyond the gateway's own that some handler
    takes (they come back as :class:`Generic`). Raises :class:`FrameError`, never anything else.

    Every string of a frame other than ``location`` follows the text rule (:func:`control_character`,
    :data:`TEXT_FIELDS`): one check here, before any op sees the frame. A ``location`` frame's only
    string is its ``ref`` (checked in ``_ref``); walking it would cost the hot path for nothing."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FrameError(ErrorCode.BAD_FRAME, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    op = obj.get("op")
    ref = _ref(obj)
    try:
        if op == "location":
            return _location(obj, ref)
        if isinstance(op, str):
            _check_text(obj, op)
        if op == "subscribe":
            return Subscribe(ch=_channel(obj), since=_since(obj), ref=ref)
        if op == "unsubscribe":
            return Unsubscribe(ch=_channel(obj), ref=ref)
        if op == "ping":
            return Ping(ref=ref)
        if isinstance(op, str) and op in known_ops:
            return Generic(op=op, fields=obj, ref=ref)
    except FrameError as exc:
        exc.ref = ref
        raise
    if not isinstance(op, str):
        raise FrameError(ErrorCode.INVALID_FIELD, "op must be a string", field="op", ref=ref)
    raise FrameError(ErrorCode.UNKNOWN_OP, f"unknown op {op[:40]!r}", field="op", ref=ref)
