"""Client frames decoded into typed messages, with every field checked.

Decoding never raises anything but :class:`FrameError`, whatever the bytes: the gateway turns that into
an ``error`` frame and keeps the connection. Coordinates are WGS84 degrees, accuracy and speed metres
and metres per second, heading degrees clockwise from north, timestamps epoch milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.errors import ErrorCode, Refusal

MAX_REF_LENGTH = 64
MAX_ACCURACY_M = 10_000.0  # a fix vaguer than 10 km cannot place a doctor in a district
MAX_SPEED_MPS = 100.0  # 360 km/h: anything faster is a broken GPS


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
    takes (they come back as :class:`Generic`). Raises :class:`FrameError`, never anything else."""
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
