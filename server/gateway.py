"""The WebSocket gateway at ``/v1/ws``: connect, authenticate, read frames, write frames.

Everything a socket does passes here, and nothing here is a business rule: frames are decoded into
typed messages (``realtime/messages.py``), channel rules come from ``realtime/channels.py``, fixes go to
``dispatch/location_ingest.py``, other ops to handlers registered by the subsystems that own them.
docs/protocol.md is the client's reference; codes live in ``realtime/protocol.py``.

Per connection: one reader (this coroutine) and one writer task draining the session's outbox. A
refused frame gets an ``error`` frame and the connection stays; the connection is closed only with a
documented code (unauthorized, origin, idle, flood, slow consumer, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from dispatch.doctor_states import DoctorStatus
from dispatch.location_ingest import FixOutcome, IngestSettings, LocationIngest
from geo.location_index import DoctorPosition
from models.enums import Role
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from realtime import channels
from realtime.broker import StreamPosition
from realtime.hub import Hub
from realtime.messages import FrameError, Generic, Location, Ping, Subscribe, Unsubscribe, decode
from realtime.outbox import Outbox, OutboxClosed
from realtime.protocol import CloseCode, ErrorCode, ack_frame, error_frame
from realtime.rate_limit import Rate, TokenBucket
from realtime.session import Session
from server.auth.principal import Principal, authenticate
from server.errors import ApiError
from server.services import Services

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
PRESENCE_TOUCH_S = 20.0
"""How often this process refreshes its presence entries (well inside the presence TTL of 60 s)."""
ONLINE_CHANNEL = "online"
"""Presence channel with one member per connected client (``user:<id>``), for "who is online"."""


@dataclass
class Connection:
    """One accepted socket: who it is and what it holds."""

    id: str
    principal: Principal
    session: Session
    buckets: dict[str, TokenBucket] = field(default_factory=dict)
    refusals: list[float] = field(default_factory=list)
    doctor_verified: bool = False
    doctor_specialties: tuple[str, ...] = ()
    close_code: int | None = None
    close_reason: str = ""


OpHandler = Callable[["Gateway", Connection, Generic], Awaitable[dict[str, Any] | None]]
"""An op handler: returns the ``ack`` fields, or raises ``FrameError``."""


@dataclass(frozen=True, slots=True)
class OpSpec:
    """A registered op: its handler and the roles that may send it."""

    handler: OpHandler
    roles: frozenset[Role]


class Gateway:
    """All WebSocket connections of this process."""

    def __init__(self, services: Services) -> None:
        self.services = services
        settings = services.settings
        engine = services.engine
        self.hub = Hub(engine.broker)
        self.ingest = LocationIngest(
            engine.locations,
            engine.states,
            engine.broker,
            IngestSettings(
                max_past_ms=settings.location_max_past_s * 1000,
                max_future_ms=settings.location_max_future_s * 1000,
                forward_interval_ms=settings.position_forward_interval_ms,
                offline_after_ms=settings.doctor_offline_after_s * 1000,
            ),
        )
        self.ops: dict[str, OpSpec] = {}
        self.connections: dict[str, Connection] = {}
        self._doctor_connections: dict[str, int] = {}
        self._presence: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle -------------------------------------------------------------------------------

    def register_op(self, op: str, handler: OpHandler, roles: set[Role] | frozenset[Role]) -> None:
        """Let ``roles`` send ``op``; ``handler`` answers it."""
        self.ops[op] = OpSpec(handler, frozenset(roles))

    async def start(self) -> None:
        """Start the hub, the ingest loop and the presence refresher."""
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="hub"),
            asyncio.create_task(self.ingest.run(), name="ingest"),
            asyncio.create_task(self._touch_presence(), name="presence"),
        ]

    async def stop(self) -> None:
        """Stop background work; flush pending fixes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.ingest.flush()

    async def _touch_presence(self) -> None:
        presence = self.services.engine.presence
        while True:
            await asyncio.sleep(PRESENCE_TOUCH_S)
            for channel, members in list(self._presence.items()):
                try:
                    missing = await presence.touch(channel, members)
                    for client_id in missing:  # expired while we were slow: join again
                        await presence.join(channel, client_id, {})
                except Exception:
                    log.exception("presence touch failed", extra={"channel": channel})

    async def _join(self, channel: str, client_id: str, info: dict[str, Any]) -> None:
        self._presence.setdefault(channel, set()).add(client_id)
        await self.services.engine.presence.join(channel, client_id, info)

    async def _leave(self, channel: str, client_id: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.discard(client_id)
            if not members:
                del self._presence[channel]
        await self.services.engine.presence.leave(channel, client_id)

    # --- one connection ---------------------------------------------------------------------------

    def _origin_allowed(self, ws: WebSocket) -> bool:
        allowed = self.services.settings.ws_allowed_origins
        origin = ws.headers.get("origin")
        return not allowed or origin is None or origin.rstrip("/") in allowed

    async def serve(self, ws: WebSocket) -> None:
        """Run one connection to its end."""
        metrics = self.services.metrics
        await ws.accept()
        if not self._origin_allowed(ws):
            await self._refuse(ws, CloseCode.ORIGIN_NOT_ALLOWED, "origin_not_allowed")
            return
        try:
            principal = authenticate(ws, self.services.tokens)
        except ApiError as exc:
            await self._refuse(ws, CloseCode.UNAUTHORIZED, exc.code)
            return

        conn_id = uuid.uuid4().hex
        outbox = Outbox(max_frames=self.services.settings.ws_send_queue_frames)
        closing = asyncio.Event()

        def overflow() -> None:
            conn.close_code, conn.close_reason = CloseCode.SLOW_CONSUMER, "slow_consumer"
            closing.set()

        conn = Connection(conn_id, principal, Session(conn_id, self.services.engine.broker, outbox, overflow))
        self.connections[conn_id] = conn
        metrics.ws_connections.labels(principal.role.value).inc()
        writer = asyncio.create_task(self._write(ws, conn, outbox, closing))
        reader = asyncio.create_task(self._read(ws, conn))
        closer = asyncio.create_task(closing.wait())
        try:
            await self._on_connect(conn)
            await asyncio.wait({reader, writer, closer}, return_when=asyncio.FIRST_COMPLETED)
        except Exception:
            log.exception("connection failed", extra={"conn": conn_id})
            conn.close_code, conn.close_reason = CloseCode.INTERNAL_ERROR, "internal_error"
        finally:
            for task in (reader, writer, closer):
                task.cancel()
            for task in (reader, writer, closer):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if conn.close_code is not None:
                metrics.ws_closes.labels(str(conn.close_code)).inc()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(conn.close_code, conn.close_reason), timeout=2)
            outbox.close()
            await self._on_disconnect(conn)
            del self.connections[conn_id]
            metrics.ws_connections.labels(principal.role.value).dec()

    async def _refuse(self, ws: WebSocket, code: CloseCode, reason: str) -> None:
        self.services.metrics.ws_closes.labels(str(int(code))).inc()
        log.info("connection refused", extra={"code": int(code), "reason": reason})
        await ws.close(code, reason)

    async def _on_connect(self, conn: Connection) -> None:
        principal = conn.principal
        user = str(principal.user_id)
        await self._join(ONLINE_CHANNEL, f"user:{user}:{conn.id}", {"role": principal.role.value})
        if principal.role is Role.DOCTOR:
            async with self.services.sessions() as db:
                profile = await doctor_repo.get_profile(db, principal.user_id)
            if profile is not None:
                conn.doctor_verified = profile.verified
                conn.doctor_specialties = tuple(profile.specialties)
                if profile.verified:
                    await self.services.engine.locations.set_specialties(user, profile.specialties)
            self._doctor_connections[user] = self._doctor_connections.get(user, 0) + 1
        conn.session.send_frame(
            {
                "op": "hello",
                "connection": conn.id,
                "user": user,
                "role": principal.role.value,
                "server_time": int(time.time() * 1000),
                "limits": {
                    "max_frame_bytes": self.services.settings.ws_max_frame_bytes,
                    "idle_timeout_s": self.services.settings.ws_idle_timeout_s,
                    "location_per_s": RATES["location"].rate,
                },
            }
        )

    async def _on_disconnect(self, conn: Connection) -> None:
        try:
            await self.hub.remove_all(conn.session)
            for channel, members in list(self._presence.items()):
                for client_id in [m for m in members if m.endswith(conn.id)]:
                    await self._leave(channel, client_id)
        except Exception:
            log.exception("disconnect clean-up failed", extra={"conn": conn.id})
        if conn.principal.role is Role.DOCTOR:
            user = str(conn.principal.user_id)
            left = self._doctor_connections.get(user, 1) - 1
            if left <= 0:
                self._doctor_connections.pop(user, None)
            else:
                self._doctor_connections[user] = left

    async def _write(self, ws: WebSocket, conn: Connection, outbox: Outbox, closing: asyncio.Event) -> None:
        timeout = self.services.settings.ws_send_timeout_s
        while True:
            try:
                frames = await outbox.get()
            except OutboxClosed:
                return
            for frame in frames:
                try:
                    await asyncio.wait_for(
                        ws.send({"type": "websocket.send", "text": frame}), timeout=timeout
                    )
                except TimeoutError:
                    conn.close_code, conn.close_reason = CloseCode.SLOW_CONSUMER, "slow_consumer"
                    closing.set()
                    return

    async def _read(self, ws: WebSocket, conn: Connection) -> None:
        settings = self.services.settings
        metrics = self.services.metrics
        known = frozenset(self.ops)
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), timeout=settings.ws_idle_timeout_s)
            except TimeoutError:
                conn.close_code, conn.close_reason = CloseCode.IDLE_TIMEOUT, "idle_timeout"
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                self._error(conn, FrameError(ErrorCode.BAD_FRAME, "send JSON as text frames, not binary"))
                continue
            if len(text) > settings.ws_max_frame_bytes:
                self._error(
                    conn,
                    FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame over {settings.ws_max_frame_bytes} bytes"),
                )
                continue
            try:
                msg = decode(text, known)
            except FrameError as exc:
                metrics.ws_frames.labels("invalid").inc()
                self._error(conn, exc)
                continue
            op = msg.op if isinstance(msg, Generic) else type(msg).__name__.lower()
            metrics.ws_frames.labels(op).inc()
            try:
                if not self._take_token(conn, op):
                    if self._flooding(conn):
                        conn.close_code, conn.close_reason = CloseCode.FLOOD, "flood"
                        return
                    raise FrameError(ErrorCode.RATE_LIMITED, f"too many {op} frames; slow down", ref=msg.ref)
                await self._handle(conn, msg)
            except FrameError as exc:
                self._error(conn, exc)
            except Exception:
                log.exception("op failed", extra={"conn": conn.id, "op": op})
                self._error(conn, FrameError(ErrorCode.INTERNAL_ERROR, "internal error", ref=msg.ref))

    def _take_token(self, conn: Connection, op: str) -> bool:
        bucket = conn.buckets.get(op)
        now = time.monotonic()
        if bucket is None:
            bucket = conn.buckets[op] = TokenBucket(RATES.get(op, DEFAULT_RATE), now)
        return bucket.take(now)

    def _flooding(self, conn: Connection) -> bool:
        now = time.monotonic()
        conn.refusals = [t for t in conn.refusals if now - t < FLOOD_WINDOW_S]
        conn.refusals.append(now)
        return len(conn.refusals) > FLOOD_REFUSALS

    def _error(self, conn: Connection, exc: FrameError) -> None:
        self.services.metrics.ws_errors.labels(exc.code.value).inc()
        log.info("frame refused", extra={"conn": conn.id, "code": exc.code.value, "field": exc.field})
        conn.session.send(error_frame(exc.code, exc.message, exc.ref, exc.field).decode())

    # --- ops --------------------------------------------------------------------------------------

    async def _handle(
        self, conn: Connection, msg: Location | Subscribe | Unsubscribe | Ping | Generic
    ) -> None:
        if isinstance(msg, Location):
            await self._location(conn, msg)
        elif isinstance(msg, Subscribe):
            await self._subscribe(conn, msg)
        elif isinstance(msg, Unsubscribe):
            await self._unsubscribe(conn, msg)
        elif isinstance(msg, Ping):
            conn.session.send_frame({"op": "pong", **({"ref": msg.ref} if msg.ref is not None else {})})
        else:
            spec = self.ops[msg.op]
            if conn.principal.role not in spec.roles:
                raise FrameError(ErrorCode.FORBIDDEN, f"your role may not send {msg.op}", ref=msg.ref)
            try:
                result = await spec.handler(self, conn, msg)
            except FrameError as exc:
                exc.ref = msg.ref
                raise
            if msg.ref is not None:
                conn.session.send(ack_frame(msg.ref, **(result or {})).decode())

    async def _location(self, conn: Connection, msg: Location) -> None:
        if conn.principal.role is not Role.DOCTOR:
            raise FrameError(ErrorCode.FORBIDDEN, "only doctors send locations", ref=msg.ref)
        position = DoctorPosition(
            doctor_id=str(conn.principal.user_id),
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
        self.services.metrics.fixes.labels(outcome.value).inc()
        if outcome is FixOutcome.OUT_OF_WINDOW:
            raise FrameError(
                ErrorCode.TIMESTAMP_OUT_OF_WINDOW, "ts is too far from server time", field="ts", ref=msg.ref
            )
        if msg.ref is not None:
            conn.session.send(ack_frame(msg.ref, ignored=outcome is FixOutcome.STALE).decode())

    async def _subscribe(self, conn: Connection, msg: Subscribe) -> None:
        try:
            channel = channels.parse(msg.ch)
        except channels.BadChannel as exc:
            raise FrameError(ErrorCode.BAD_CHANNEL, str(exc), field="ch", ref=msg.ref) from None
        session = conn.session
        if channel.name in session.channels:
            raise FrameError(ErrorCode.INVALID_FIELD, "already subscribed", field="ch", ref=msg.ref)
        if len(session.channels) >= self.services.settings.ws_max_subscriptions:
            raise FrameError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, "subscription limit reached", ref=msg.ref)
        parties = None
        if channel.kind is channels.ChannelKind.CALL and conn.principal.role not in channels.STAFF_ROLES:
            async with self.services.sessions() as db:
                parties = await call_repo.call_parties(db, uuid.UUID(channel.key))
            if parties is None:
                raise FrameError(ErrorCode.NOT_FOUND, "no such call", field="ch", ref=msg.ref)
        if not channels.may_subscribe(channel, conn.principal.user_id, conn.principal.role, parties):
            raise FrameError(
                ErrorCode.FORBIDDEN, "you may not subscribe to this channel", field="ch", ref=msg.ref
            )
        since = None if msg.since is None else StreamPosition(msg.since.offset, msg.since.epoch)
        session.begin(channel.name)
        try:
            await self.hub.add(channel.name, session)
            await session.start(channel.name, since, msg.ref)
        except Exception:
            session.forget(channel.name)
            await self.hub.remove(channel.name, session)
            log.exception("subscribe failed", extra={"channel": channel.name})
            raise FrameError(ErrorCode.UNAVAILABLE, "could not subscribe now; retry", ref=msg.ref) from None
        member = f"user:{conn.principal.user_id}:{conn.id}"
        await self._join(channel.name, member, {"role": conn.principal.role.value})

    async def _unsubscribe(self, conn: Connection, msg: Unsubscribe) -> None:
        if not conn.session.forget(msg.ch):
            raise FrameError(
                ErrorCode.NOT_SUBSCRIBED, "not subscribed to this channel", field="ch", ref=msg.ref
            )
        await self.hub.remove(msg.ch, conn.session)
        await self._leave(msg.ch, f"user:{conn.principal.user_id}:{conn.id}")
        conn.session.send_frame(
            {"op": "unsubscribed", "ch": msg.ch, **({"ref": msg.ref} if msg.ref is not None else {})}
        )


async def doctor_status(gateway: Gateway, conn: Connection, msg: Generic) -> dict[str, Any]:
    """``doctor.status``: a doctor goes ``available``, ``paused`` or ``offline``.

    Only a verified doctor can become available. ``offered`` and ``busy`` are set by the dispatch
    loop, never by this op (a busy doctor gets ``forbidden``)."""
    wanted = msg.fields.get("status")
    targets = {
        "available": {DoctorStatus.OFFLINE, DoctorStatus.PAUSED, DoctorStatus.AVAILABLE},
        "paused": {DoctorStatus.OFFLINE, DoctorStatus.AVAILABLE, DoctorStatus.PAUSED},
        "offline": {DoctorStatus.AVAILABLE, DoctorStatus.PAUSED, DoctorStatus.OFFLINE},
    }
    if not isinstance(wanted, str) or wanted not in targets:
        raise FrameError(
            ErrorCode.INVALID_FIELD, "status must be available, paused or offline", field="status"
        )
    if wanted == "available" and not conn.doctor_verified:
        raise FrameError(ErrorCode.FORBIDDEN, "an admin has not verified you yet")
    doctor = str(conn.principal.user_id)
    result = await gateway.services.engine.states.compare_and_set(
        doctor, expected=targets[wanted], new=DoctorStatus(wanted)
    )
    if not result.ok:
        raise FrameError(ErrorCode.FORBIDDEN, f"you are {result.state.status.value}; finish that first")
    gateway.ingest.invalidate(doctor)
    state = result.state
    # Every device of the doctor (and, later, the console) follows the change on the doctor's channel.
    await gateway.services.engine.broker.publish(
        channels.doctor_channel(doctor),
        "doctor.status",
        {"status": state.status.value, "version": state.version, "since": state.since_ms},
    )
    return {"status": state.status.value}
