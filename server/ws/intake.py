"""One received frame: size, decoding, metrics, rate limits and flood, then the op.

Location fixes, the bulk of the traffic, are handled synchronously here (no coroutine per fix), from
the read loop or straight from uvicorn's protocol (:meth:`Intake.direct_text`); any other op comes
back to the read loop as a coroutine to await. ``subscribe``/``unsubscribe`` go to
``subscriptions.py``, ``ping`` is answered here, and every other op to the handler registered for it
(:meth:`Intake.register`, by the subsystems that own them: ``ops.py``). A refused frame gets an
``error`` frame and the connection stays; only a flood of refusals closes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy.exc
from starlette.types import Message

from dispatch.location_ingest import FixOutcome, LocationIngest
from geo.location_index import DoctorPosition
from models.enums import Role
from realtime.errors import ErrorCode
from realtime.messages import FrameError, Generic, Location, Ping, Subscribe, Unsubscribe, decode
from realtime.protocol import CloseCode, ack_frame, error_frame
from realtime.rate_limit import Rate, TokenBucket
from server.logs import field_name
from server.metrics import Metrics
from server.ws.connection import Connection
from server.ws.subscriptions import Subscriptions

if TYPE_CHECKING:
    from server.ws.gateway import Gateway

log = logging.getLogger("tot.ws")

RATES = {
    "location": Rate(rate=10, burst=20),
    "subscribe": Rate(rate=20, burst=100),
    "unsubscribe": Rate(rate=20, burst=100),
}
DEFAULT_RATE = Rate(rate=20, burst=40)
FLOOD_REFUSALS = 100
"""Refused frames (rate limit) within :data:`FLOOD_WINDOW_S` that close the connection with FLOOD."""
FLOOD_WINDOW_S = 10.0

OpHandler = Callable[["Gateway", Connection, Generic], Awaitable[dict[str, Any] | None]]
"""An op handler: returns the ``ack`` fields, or raises ``FrameError``."""

Stop = Callable[[Connection, int, str], None]
"""Closes a connection with a code and a reason (``Transport.stop``)."""


@dataclass(frozen=True, slots=True)
class OpSpec:
    """A registered op: its handler and the roles that may send it."""

    handler: OpHandler
    roles: frozenset[Role]


class Intake:
    """Takes the frames of every connection of the process.

    ``gateway``: handed to op handlers. ``max_frame_bytes``: the largest text frame taken.
    ``ingest``: where location fixes go. ``stop``: closes a flooding connection."""

    def __init__(
        self,
        gateway: Gateway,
        metrics: Metrics,
        max_frame_bytes: int,
        ingest: LocationIngest,
        subscriptions: Subscriptions,
        stop: Stop,
    ) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self.max_frame_bytes = max_frame_bytes
        self.ingest = ingest
        self.subscriptions = subscriptions
        self.stop = stop
        self.ops: dict[str, OpSpec] = {}
        self._known_ops: frozenset[str] = frozenset()
        self._frame_counters: dict[str, Any] = {}
        self._fix_counters: dict[FixOutcome, Any] = {}
        self.direct_frames = 0
        """Frames taken on the protocol's direct path (``uvicorn_protocol.py``) since start."""

    def register(self, op: str, handler: OpHandler, roles: set[Role] | frozenset[Role]) -> None:
        """Let ``roles`` send ``op``; ``handler`` answers it."""
        self.ops[op] = OpSpec(handler, frozenset(roles))
        self._known_ops = frozenset(self.ops)

    def frame(self, conn: Connection, message: Message, now: float) -> Coroutine[Any, Any, None] | None:
        """Take one received message: checks, decoding, metrics, rate limit, and location fixes (the
        hot path, handled here without a coroutine). Any other op comes back as a coroutine for the
        read loop to await. Refusals become error frames; a flood stops the connection."""
        text = message.get("text")
        max_frame_bytes = self.max_frame_bytes
        if text is None:
            self._error(conn, FrameError(ErrorCode.BAD_FRAME, "send JSON as text frames, not binary"))
            return None
        if len(text) > max_frame_bytes:
            self._error(conn, FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame over {max_frame_bytes} bytes"))
            return None
        try:
            msg = decode(text, self._known_ops)
        except FrameError as exc:
            self.metrics.ws_frames.labels("invalid").inc()
            self._error(conn, exc)
            return None
        return self._take(conn, msg, now)

    def direct_text(self, conn: Connection, text: str) -> bool:
        """A text message straight from the protocol (``uvicorn_protocol.py``), before any queue:
        taken (True) when it is a well-formed location fix and the connection's task is parked in
        ``receive`` (so no earlier frame of this socket is still being handled: order is kept).
        Anything else is left to the read loop (False), which then sees it as usual."""
        if not conn.parked or conn.stopping or len(text) > self.max_frame_bytes:
            return False
        try:
            msg = decode(text, self._known_ops)
        except FrameError:
            return False  # the read loop refuses it, with the usual error frame and metric
        if type(msg) is not Location:
            return False
        conn.last_frame = now = time.monotonic()
        self.direct_frames += 1
        self._take(conn, msg, now)
        return True

    def _take(
        self, conn: Connection, msg: Location | Subscribe | Unsubscribe | Ping | Generic, now: float
    ) -> Coroutine[Any, Any, None] | None:
        """A decoded frame: metrics, rate limit, and the location fix handled at once; any other op
        comes back as a coroutine for the read loop to await."""
        if type(msg) is Location:
            op = "location"
        else:
            op = msg.op if isinstance(msg, Generic) else type(msg).__name__.lower()
        counter = self._frame_counters.get(op)
        if counter is None:
            counter = self._frame_counters[op] = self.metrics.ws_frames.labels(op)
        counter.inc()
        try:
            if not self._take_token(conn, op, now):
                if self._flooding(conn):
                    self.stop(conn, CloseCode.FLOOD, "flood")
                    return None
                raise FrameError(ErrorCode.RATE_LIMITED, f"too many {op} frames; slow down", ref=msg.ref)
            if isinstance(msg, Location):
                self._location(conn, msg)
                return None
        except FrameError as exc:
            self._error(conn, exc)
            return None
        except Exception:
            log.exception("op failed", extra={"conn": conn.id, "op": op})
            self._error(conn, FrameError(ErrorCode.INTERNAL_ERROR, "internal error", ref=msg.ref))
            return None
        assert not isinstance(msg, Location)
        return self._op(conn, msg, op)

    async def _op(self, conn: Connection, msg: Subscribe | Unsubscribe | Ping | Generic, op: str) -> None:
        try:
            await self._handle(conn, msg)
        except FrameError as exc:
            self._error(conn, exc)
        except sqlalchemy.exc.TimeoutError:
            # Load shedding, as the REST API's 503 busy (server/errors.py): the op never had a
            # database connection, so nothing of it was done.
            log.warning("database pool exhausted; op shed", extra={"conn": conn.id, "op": op})
            self._error(conn, FrameError(ErrorCode.BUSY, "the server is busy; retry shortly", ref=msg.ref))
        except Exception:
            log.exception("op failed", extra={"conn": conn.id, "op": op})
            self._error(conn, FrameError(ErrorCode.INTERNAL_ERROR, "internal error", ref=msg.ref))

    def _take_token(self, conn: Connection, op: str, now: float) -> bool:
        buckets = conn.buckets
        if buckets is None:
            buckets = conn.buckets = {}
        bucket = buckets.get(op)
        if bucket is None:
            bucket = buckets[op] = TokenBucket(RATES.get(op, DEFAULT_RATE), now)
        return bucket.take(now)

    def _flooding(self, conn: Connection) -> bool:
        now = time.monotonic()
        refusals = conn.refusals = [t for t in conn.refusals or () if now - t < FLOOD_WINDOW_S]
        refusals.append(now)
        return len(refusals) > FLOOD_REFUSALS

    def _error(self, conn: Connection, exc: FrameError) -> None:
        self.metrics.ws_errors.labels(exc.code.value).inc()
        # The code and the field's name only: never the frame, its message or a value (chat text...).
        log.info(
            "frame refused", extra={"conn": conn.id, "code": exc.code.value, "field": field_name(exc.field)}
        )
        conn.session.send(error_frame(exc.code, exc.message, exc.ref, exc.field).decode())

    async def _handle(
        self, conn: Connection, msg: Location | Subscribe | Unsubscribe | Ping | Generic
    ) -> None:
        if isinstance(msg, Location):
            self._location(conn, msg)
        elif isinstance(msg, Subscribe):
            await self.subscriptions.subscribe(conn, msg)
        elif isinstance(msg, Unsubscribe):
            await self.subscriptions.unsubscribe(conn, msg)
        elif isinstance(msg, Ping):
            conn.session.send_frame({"op": "pong", **({"ref": msg.ref} if msg.ref is not None else {})})
        else:
            spec = self.ops[msg.op]
            if conn.principal.role not in spec.roles:
                raise FrameError(ErrorCode.FORBIDDEN, f"your role may not send {msg.op}", ref=msg.ref)
            try:
                result = await spec.handler(self.gateway, conn, msg)
            except FrameError as exc:
                exc.ref = msg.ref
                raise
            if msg.ref is not None:
                conn.session.send(ack_frame(msg.ref, **(result or {})).decode())

    def _location(self, conn: Connection, msg: Location) -> None:
        if conn.principal.role is not Role.DOCTOR:
            raise FrameError(ErrorCode.FORBIDDEN, "only doctors send locations", ref=msg.ref)
        position = DoctorPosition(
            doctor_id=conn.user,
            lat=msg.lat,
            lon=msg.lon,
            accuracy_m=msg.acc,
            ts_ms=msg.ts,
            heading_deg=None if msg.heading is None else msg.heading % 360.0,
            speed_mps=msg.speed,
        )
        try:
            outcome = self.ingest.accept(position)
        except ValueError as exc:
            raise FrameError(ErrorCode.INVALID_FIELD, str(exc), ref=msg.ref) from None
        counter = self._fix_counters.get(outcome)
        if counter is None:
            counter = self._fix_counters[outcome] = self.metrics.fixes.labels(outcome.value)
        counter.inc()
        if outcome is FixOutcome.OUT_OF_WINDOW:
            raise FrameError(
                ErrorCode.TIMESTAMP_OUT_OF_WINDOW, "ts is too far from server time", field="ts", ref=msg.ref
            )
        if msg.ref is not None:
            conn.session.send(ack_frame(msg.ref, ignored=outcome is FixOutcome.STALE).decode())
