"""The WebSocket gateway at ``/v1/ws``: connect, authenticate, read frames, write frames.

Everything a socket does passes here, and nothing here is a business rule: frames are decoded into
typed messages (``realtime/messages.py``), channel rules come from ``realtime/channels.py``, fixes go to
``dispatch/location_ingest.py``, other ops to handlers registered by the subsystems that own them.
docs/protocol.md is the client's reference; codes live in ``realtime/protocol.py``.

Per connection: the connection's own task reads frames, except location fixes arriving while it is
idle, which the protocol hands over directly (``server/ws_protocol.py``, :meth:`Gateway._direct_text`);
frames queued in the session's outbox are written at once while the socket takes them, and a writer
task exists only while the transport is full. A refused frame gets an ``error`` frame and the
connection stays; the connection is closed only with a documented code (unauthorized, origin, idle,
flood, slow consumer, shutdown).

Cost per connection and per frame is measured by ``loadtests/bench_ingest.py`` against a bare
endpoint under the same uvicorn settings; with 5,000 doctors at 4 frames/s it went from ~8,300 to
~21,000 frames per CPU-second and from 43.5 to ~23 KB per idle connection (bare: ~25,000-32,000 and
20 KB), by: no ``asyncio.wait_for`` per received frame (a task and a timer per frame, the largest
single cost): the idle timeout is one timer per connection, re-armed lazily; no reader, closer or
parked writer task per connection; WebSocket connections skip Starlette's middleware and router
(:func:`asgi_app`), whose suspended frames held ~4.4 KB per connection; location frames take a
synchronous path (no coroutine per frame) and the per-op metric children are looked up once; and
the garbage collector's thresholds (``server.cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import sqlalchemy.exc
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from dispatch.breadcrumbs import BreadcrumbWriter
from dispatch.call_feed import CallStatusFollower, follow
from dispatch.call_places import CallPlaces
from dispatch.doctor_states import DoctorStatus
from dispatch.events import CALL_UNASSIGNED
from dispatch.location_ingest import FixOutcome, IngestSettings, LocationIngest
from geo.location_index import DoctorPosition
from models.enums import Role
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from realtime import channels
from realtime.broker import Publication, StreamPosition
from realtime.hub import Hub
from realtime.messages import FrameError, Generic, Location, Ping, Subscribe, Unsubscribe, decode
from realtime.outbox import Outbox
from realtime.protocol import (
    CloseCode,
    ErrorCode,
    UnsubscribeReason,
    ack_frame,
    error_frame,
    unsubscribed_frame,
)
from realtime.rate_limit import Rate, TokenBucket
from realtime.session import Session, WatchCallback
from server.auth.principal import Principal, authenticate
from server.errors import ApiError
from server.services import Services
from server.ws_protocol import protocol_of

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
PRESENCE_TOUCH_BATCH = 256
"""Presence entries refreshed between two yields to the event loop: 10,000 doctors hold ~20,000
entries (``online`` and each one's ``doctor:<id>``), and refreshing them all in one go stalled the
loop for 80-270 ms every 20 s (measured with a loop watchdog under loadtests/bench_sos.py)."""
ONLINE_CHANNEL = "online"
"""Presence channel with one member per connected client (``user:<id>``), for "who is online"."""
CALL_PREFIX = f"{channels.ChannelKind.CALL.value}:"
"""The start of every ``call:<id>`` channel name (session channel names are canonical)."""

WS_PATH = "/v1/ws"
SLOW_CONSUMER = (CloseCode.SLOW_CONSUMER, "slow_consumer")
YIELD_EVERY_FRAMES = 16
"""The read loop yields to the event loop at least this often (and after every frame that queued a reply)."""


@dataclass(slots=True)
class Connection:
    """One accepted socket: who it is and what it holds.

    ``user`` is ``str(principal.user_id)``, computed once. The rest is the gateway's bookkeeping: the
    socket's ASGI ``send``, the connection's own task (``task``, it reads frames), the writer task
    (``writer``, only while frames are queued), when the last frame arrived (monotonic seconds) and
    the idle timer; ``stopping`` once a close was decided or clean-up began."""

    id: str
    principal: Principal
    session: Session
    send: Send
    user: str = ""
    buckets: dict[str, TokenBucket] | None = None  # created by the first frame
    refusals: list[float] | None = None  # created by the first refused frame
    doctor_verified: bool = False
    doctor_specialties: tuple[str, ...] = ()
    close_code: int | None = None
    close_reason: str = ""
    task: asyncio.Task[Any] | None = None
    writer: asyncio.Task[None] | None = None
    last_frame: float = 0.0
    idle_timer: asyncio.TimerHandle | None = None
    stopping: bool = False
    cancelled: bool = False
    parked: bool = False  # the task waits in receive() with nothing of this socket's being handled
    presence: set[tuple[str, str]] | None = None  # (channel, client id) joined by this connection
    send_now: Callable[[str], bool] | None = None  # writes a text frame at once if it can (ws_protocol)
    subscribing: str | None = None
    """The ``call:<id>`` channel of the ``subscribe`` in flight (ops run one at a time per connection);
    a ``call.unassigned`` for it meanwhile sets it back to None (see :meth:`Gateway._call_unassigned`)."""


class _Callbacks:
    """A connection's outbox and session callbacks. They hold the connection's id, not the
    connection: no reference cycle for the garbage collector to find (and one small object instead of
    two closures: ~0.4 KB less per connection)."""

    __slots__ = ("conn_id", "gateway")

    def __init__(self, gateway: Gateway, conn_id: str) -> None:
        self.gateway = gateway
        self.conn_id = conn_id

    def overflow(self) -> None:
        self.gateway._stop(self.conn_id, *SLOW_CONSUMER)

    def ready(self) -> None:
        self.gateway._start_writer(self.conn_id)


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
        self.breadcrumbs = BreadcrumbWriter(services.sessions)
        self.ingest = LocationIngest(
            engine.locations,
            engine.states,
            engine.broker,
            IngestSettings(
                max_past_ms=settings.location_max_past_s * 1000,
                max_future_ms=settings.location_max_future_s * 1000,
                forward_interval_ms=settings.position_forward_interval_ms,
                offline_after_ms=settings.doctor_offline_after_s * 1000,
                ranking=settings.dispatch().ranking,
            ),
            places=CallPlaces(services.sessions),
            breadcrumbs=self.breadcrumbs,
        )
        self.call_follower = CallStatusFollower(engine.broker, self.ingest.call_changed)
        self.ops: dict[str, OpSpec] = {}
        self._known_ops: frozenset[str] = frozenset()
        self._frame_counters: dict[str, Any] = {}
        self._fix_counters: dict[FixOutcome, Any] = {}
        self.connections: dict[str, Connection] = {}
        self._doctor_connections: dict[str, int] = {}
        self._presence: dict[str, set[str]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._releases: set[asyncio.Task[None]] = set()  # subscriptions the server ended, being released
        self._watch: dict[str, WatchCallback] = {CALL_UNASSIGNED: self._call_unassigned}
        """Event types whose delivery to a connection the gateway acts on (``Session.watch``)."""
        self.direct_frames = 0
        """Frames taken on the protocol's direct path (``server/ws_protocol.py``) since start."""
        services.metrics.ws_direct_frames.set_function(lambda: self.direct_frames)

    # --- life cycle -------------------------------------------------------------------------------

    def register_op(self, op: str, handler: OpHandler, roles: set[Role] | frozenset[Role]) -> None:
        """Let ``roles`` send ``op``; ``handler`` answers it."""
        self.ops[op] = OpSpec(handler, frozenset(roles))
        self._known_ops = frozenset(self.ops)

    async def start(self) -> None:
        """Start the hub, the ingest loop, the breadcrumb writer, the presence refresher, and follow
        call status changes (the ingest stops tracking ended calls)."""
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="hub"),
            asyncio.create_task(self.ingest.run(), name="ingest"),
            asyncio.create_task(self._touch_presence(), name="presence"),
            asyncio.create_task(follow(self.hub, self.call_follower), name="call-feed"),
        ]
        self.breadcrumbs.start()

    async def stop(self) -> None:
        """Stop background work; flush pending fixes and breadcrumbs."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.ingest.flush()
        await self.breadcrumbs.stop()

    async def _touch_presence(self) -> None:
        presence = self.services.engine.presence
        while True:
            await asyncio.sleep(PRESENCE_TOUCH_S)
            since_yield = 0
            for channel, members in list(self._presence.items()):
                listed = list(members)
                for start in range(0, len(listed), PRESENCE_TOUCH_BATCH):
                    chunk = listed[start : start + PRESENCE_TOUCH_BATCH]
                    try:
                        missing = await presence.touch(channel, chunk)
                        for client_id in missing:  # expired while we were slow: join again
                            await presence.join(channel, client_id, {})
                    except Exception:
                        log.exception("presence touch failed", extra={"channel": channel})
                    since_yield += len(chunk)
                    if since_yield >= PRESENCE_TOUCH_BATCH:
                        since_yield = 0
                        await asyncio.sleep(0)

    async def _join(self, conn: Connection, channel: str, client_id: str, info: dict[str, Any]) -> None:
        self._presence.setdefault(channel, set()).add(client_id)
        if conn.presence is None:
            conn.presence = set()
        conn.presence.add((channel, client_id))
        await self.services.engine.presence.join(channel, client_id, info)

    async def _leave(self, conn: Connection, channel: str, client_id: str) -> None:
        if conn.presence is not None:
            conn.presence.discard((channel, client_id))
        members = self._presence.get(channel)
        if members is not None:
            members.discard(client_id)
            if not members:
                del self._presence[channel]
        await self.services.engine.presence.leave(channel, client_id)

    # --- one connection ---------------------------------------------------------------------------

    def _origin_allowed(self, ws: WebSocket) -> bool:
        allowed = self.services.settings.ws_allowed_origins
        # A throwaway view of the scope: ``ws.headers`` would stay cached for the connection's life.
        origin = HTTPConnection(ws.scope).headers.get("origin")
        return not allowed or origin is None or origin.rstrip("/") in allowed

    async def serve(self, ws: WebSocket, receive: Receive | None = None, send: Send | None = None) -> None:
        """Run one connection to its end, in the connection's own task, which reads its frames.

        ``receive`` and ``send`` are the connection's ASGI callables, used directly once the socket
        is accepted and authenticated (default ``ws.receive`` and ``ws.send``): Starlette's state
        checks per message add nothing then (uvicorn only delivers ``websocket.receive`` and
        ``websocket.disconnect``, and the gateway sends ``websocket.close`` once), and ``ws`` is not
        kept (~0.5 KB per connection)."""
        metrics = self.services.metrics
        settings = self.services.settings
        await ws.accept()
        if not self._origin_allowed(ws):
            await self._refuse(ws, CloseCode.ORIGIN_NOT_ALLOWED, "origin_not_allowed")
            return
        try:
            # A throwaway view of the scope: ``ws`` would keep the parsed query string (with the
            # token) and headers cached for the connection's lifetime.
            principal = authenticate(HTTPConnection(ws.scope), self.services.tokens)
        except ApiError as exc:
            await self._refuse(ws, CloseCode.UNAUTHORIZED, exc.code)
            return

        conn_id = uuid.uuid4().hex
        outbox = Outbox(max_frames=settings.ws_send_queue_frames)
        callbacks = _Callbacks(self, conn_id)
        outbox.on_ready = callbacks.ready
        conn = Connection(
            conn_id,
            principal,
            Session(conn_id, self.services.engine.broker, outbox, callbacks.overflow, self._watch),
            ws.send if send is None else send,
            user=str(principal.user_id),
            task=asyncio.current_task(),
        )
        self.connections[conn_id] = conn
        metrics.ws_connections.labels(principal.role.value).inc()
        if receive is None:
            receive = ws.receive
        # uvicorn's protocol, subclassed (server/ws_protocol.py); None under another server.
        protocol = protocol_of(receive)
        if protocol is not None:
            conn.send_now = protocol.send_text_now
        del ws
        monotonic = time.monotonic
        try:
            await self._on_connect(conn)
            # The read loop. Kept in this coroutine rather than a method of its own: one suspended
            # frame less per connection. One timer per connection instead of one per frame: a frame
            # only records its time, and the timer, when due, re-arms itself for what is left.
            conn.last_frame = monotonic()
            conn.idle_timer = asyncio.get_running_loop().call_later(
                settings.ws_idle_timeout_s, self._idle_check, conn
            )
            # Location fixes are taken straight from the protocol while this task is parked
            # (server/ws_protocol.py): no queue, no task step per fix.
            if protocol is not None:
                protocol.direct_text = functools.partial(self._direct_text, conn)
            handled = 0
            while not conn.stopping:
                if conn.writer is not None or handled % YIELD_EVERY_FRAMES == YIELD_EVERY_FRAMES - 1:
                    # receive() does not suspend while uvicorn holds parsed frames (one socket read
                    # can hold hundreds): let the writer send the replies so far (else a burst of
                    # requests overflows the outbox before it sends any), and other connections run.
                    await asyncio.sleep(0)
                handled += 1
                conn.parked = True
                try:
                    message = await receive()
                finally:
                    conn.parked = False
                conn.last_frame = now = monotonic()
                if message["type"] == "websocket.disconnect":
                    break
                op = self._frame(conn, message, now)
                if op is not None:
                    await op
        except asyncio.CancelledError:
            # _stop() cancelled us (idle, slow consumer) to interrupt a pending receive; any other
            # cancellation goes on after the clean-up.
            assert conn.task is not None
            if not (conn.cancelled and conn.task.uncancel() == 0):
                raise
        except Exception:
            log.exception("connection failed", extra={"conn": conn_id})
            conn.close_code, conn.close_reason = CloseCode.INTERNAL_ERROR, "internal_error"
        finally:
            conn.stopping = True
            if protocol is not None:
                protocol.direct_text = None  # it would otherwise keep the connection alive
            if conn.idle_timer is not None:
                conn.idle_timer.cancel()
            writer = conn.writer
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
            if conn.close_code is not None:
                metrics.ws_closes.labels(str(conn.close_code)).inc()
                close = {"type": "websocket.close", "code": conn.close_code, "reason": conn.close_reason}
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.send(close), timeout=2)
            outbox.close()
            await self._on_disconnect(conn)
            del self.connections[conn_id]
            metrics.ws_connections.labels(principal.role.value).dec()

    def _stop(self, conn_or_id: Connection | str, code: int, reason: str) -> None:
        """Close a connection with ``code``: from inside its own task the read loop sees ``stopping``
        after the current frame; from anywhere else (a timer, the writer, another connection's fan-out)
        the task is cancelled out of its pending receive or handler."""
        conn = self.connections.get(conn_or_id) if isinstance(conn_or_id, str) else conn_or_id
        if conn is None or conn.stopping:
            return
        conn.stopping = True
        conn.close_code, conn.close_reason = code, reason
        task = conn.task
        if task is not None and asyncio.current_task() is not task:
            conn.cancelled = True
            task.cancel()

    def _start_writer(self, conn_id: str) -> None:
        """A frame landed in the connection's empty outbox (called inside ``Outbox.push``): write it
        now when the socket takes it without waiting, else start the writer task."""
        conn = self.connections.get(conn_id)
        if conn is None or conn.writer is not None or conn.stopping:
            return
        send_now = conn.send_now
        if send_now is not None:
            # No task and no loop iteration between a delivery and the socket (server/ws_protocol.py).
            outbox = conn.session.outbox
            while frames := outbox.take(1):
                if not send_now(frames[0]):
                    conn.writer = asyncio.create_task(self._write(conn, frames[0]))
                    return
            return
        conn.writer = asyncio.create_task(self._write(conn))

    async def _refuse(self, ws: WebSocket, code: CloseCode, reason: str) -> None:
        self.services.metrics.ws_closes.labels(str(int(code))).inc()
        log.info("connection refused", extra={"code": int(code), "reason": reason})
        await ws.close(code, reason)

    async def _on_connect(self, conn: Connection) -> None:
        principal = conn.principal
        user = conn.user
        await self._join(conn, ONLINE_CHANNEL, f"user:{user}:{conn.id}", {"role": principal.role.value})
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
            # This connection's own entries: scanning every channel's members made each disconnect
            # O(connections), and 10,000 closing at once stalled the loop for seconds.
            for channel, client_id in list(conn.presence or ()):
                await self._leave(conn, channel, client_id)
        except Exception:
            log.exception("disconnect clean-up failed", extra={"conn": conn.id})
        if conn.principal.role is Role.DOCTOR:
            user = conn.user
            left = self._doctor_connections.get(user, 1) - 1
            if left <= 0:
                self._doctor_connections.pop(user, None)
            else:
                self._doctor_connections[user] = left

    async def _write(self, conn: Connection, first: str | None = None) -> None:
        """Send ``first`` (a frame already taken from the outbox) and what the outbox holds, then end
        (``_start_writer`` starts another on the next frame)."""
        send, outbox = conn.send, conn.session.outbox
        timeout = self.services.settings.ws_send_timeout_s
        try:
            while frames := ([first] if first is not None else outbox.take()):
                first = None
                for frame in frames:
                    try:
                        async with asyncio.timeout(timeout):
                            await send({"type": "websocket.send", "text": frame})
                    except TimeoutError:
                        self._stop(conn, *SLOW_CONSUMER)
                        return
        finally:
            conn.writer = None

    def _idle_check(self, conn: Connection) -> None:
        """The idle timer: close after ``ws_idle_timeout_s`` without a frame, else wait for the rest."""
        timeout = self.services.settings.ws_idle_timeout_s
        left = conn.last_frame + timeout - time.monotonic()
        if left > 0:
            conn.idle_timer = asyncio.get_running_loop().call_later(left, self._idle_check, conn)
        else:
            conn.idle_timer = None
            self._stop(conn, CloseCode.IDLE_TIMEOUT, "idle_timeout")

    def _frame(self, conn: Connection, message: Message, now: float) -> Coroutine[Any, Any, None] | None:
        """Take one received message: checks, decoding, metrics, rate limit, and location fixes (the
        hot path, handled here without a coroutine). Any other op comes back as a coroutine for the
        read loop to await. Refusals become error frames; a flood stops the connection."""
        text = message.get("text")
        max_frame_bytes = self.services.settings.ws_max_frame_bytes
        if text is None:
            self._error(conn, FrameError(ErrorCode.BAD_FRAME, "send JSON as text frames, not binary"))
            return None
        if len(text) > max_frame_bytes:
            self._error(conn, FrameError(ErrorCode.FRAME_TOO_LARGE, f"frame over {max_frame_bytes} bytes"))
            return None
        try:
            msg = decode(text, self._known_ops)
        except FrameError as exc:
            self.services.metrics.ws_frames.labels("invalid").inc()
            self._error(conn, exc)
            return None
        return self._take(conn, msg, now)

    def _direct_text(self, conn: Connection, text: str) -> bool:
        """A text message straight from the protocol (``server/ws_protocol.py``), before any queue:
        taken (True) when it is a well-formed location fix and the connection's task is parked in
        ``receive`` (so no earlier frame of this socket is still being handled: order is kept).
        Anything else is left to the read loop (False), which then sees it as usual."""
        if not conn.parked or conn.stopping or len(text) > self.services.settings.ws_max_frame_bytes:
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
            counter = self._frame_counters[op] = self.services.metrics.ws_frames.labels(op)
        counter.inc()
        try:
            if not self._take_token(conn, op, now):
                if self._flooding(conn):
                    self._stop(conn, CloseCode.FLOOD, "flood")
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
        self.services.metrics.ws_errors.labels(exc.code.value).inc()
        log.info("frame refused", extra={"conn": conn.id, "code": exc.code.value, "field": exc.field})
        conn.session.send(error_frame(exc.code, exc.message, exc.ref, exc.field).decode())

    # --- ops --------------------------------------------------------------------------------------

    async def _handle(
        self, conn: Connection, msg: Location | Subscribe | Unsubscribe | Ping | Generic
    ) -> None:
        if isinstance(msg, Location):
            self._location(conn, msg)
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
            counter = self._fix_counters[outcome] = self.services.metrics.fixes.labels(outcome.value)
        counter.inc()
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
        if channel.kind is channels.ChannelKind.CALL:
            conn.subscribing = channel.name
        try:
            await self._subscribe_checked(conn, msg, channel)
        finally:
            conn.subscribing = None

    async def _subscribe_checked(self, conn: Connection, msg: Subscribe, channel: channels.Channel) -> None:
        """The rest of ``subscribe``, for a ``channel`` of the right shape and within the limits.

        The call's parties are read once, here. A doctor's ``call.unassigned`` for this call delivered
        while the subscription is being made clears ``conn.subscribing``: the parties just read may
        predate it (before the checks: refused), or the ``subscribed`` reply has gone out (after:
        ended as :meth:`_call_unassigned` would have). One delivered before the read cannot be missed:
        the change is committed before it is published.

        A doctor's ``call:`` channel also needs the connection to follow ``doctor:<id>``, where
        ``call.unassigned`` arrives (without it nothing would end the subscription when the call is
        taken from them): ``doctor_channel_required`` otherwise, after ``forbidden`` (only the assigned
        doctor learns of the rule). The same two points as above apply should ``doctor:<id>`` be left
        while the subscription is being made (ops run one at a time per connection, so an
        ``unsubscribe`` cannot do it today): refused before the checks, ended after (reason
        ``doctor_channel_left``, as :meth:`_unsubscribe` would have)."""
        session = conn.session
        parties = None
        if channel.kind is channels.ChannelKind.CALL and conn.principal.role not in channels.STAFF_ROLES:
            async with self.services.sessions() as db:
                parties = await call_repo.call_parties(db, uuid.UUID(channel.key))
            if parties is None:
                raise FrameError(ErrorCode.NOT_FOUND, "no such call", field="ch", ref=msg.ref)
        allowed = channels.may_subscribe(channel, conn.principal.user_id, conn.principal.role, parties)
        if not allowed or self._unassigned_meanwhile(conn, channel):
            raise FrameError(
                ErrorCode.FORBIDDEN, "you may not subscribe to this channel", field="ch", ref=msg.ref
            )
        if self._without_doctor_channel(conn, channel):
            own = channels.doctor_channel(conn.user)
            raise FrameError(
                ErrorCode.DOCTOR_CHANNEL_REQUIRED,
                f"subscribe to {own} first: a doctor follows a call only while following {own}",
                field="ch",
                ref=msg.ref,
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
        await self._join(conn, channel.name, self._member(conn), {"role": conn.principal.role.value})
        if self._unassigned_meanwhile(conn, channel):
            self._end_subscription(conn, channel.name, UnsubscribeReason.UNASSIGNED)
        elif self._without_doctor_channel(conn, channel):
            self._end_subscription(conn, channel.name, UnsubscribeReason.DOCTOR_CHANNEL_LEFT)

    @staticmethod
    def _unassigned_meanwhile(conn: Connection, channel: channels.Channel) -> bool:
        return channel.kind is channels.ChannelKind.CALL and conn.subscribing != channel.name

    @staticmethod
    def _without_doctor_channel(conn: Connection, channel: channels.Channel) -> bool:
        """A doctor's ``call:`` channel on a connection that does not follow ``doctor:<id>``."""
        return (
            channel.kind is channels.ChannelKind.CALL
            and conn.principal.role is Role.DOCTOR
            and channels.doctor_channel(conn.user) not in conn.session.channels
        )

    @staticmethod
    def _member(conn: Connection) -> str:
        """The connection's presence client id: ``user:<user id>:<connection id>``."""
        return f"user:{conn.user}:{conn.id}"

    async def _unsubscribe(self, conn: Connection, msg: Unsubscribe) -> None:
        """Leave ``msg.ch``. A doctor leaving their own ``doctor:<id>`` leaves every ``call:`` channel
        of the connection too (a call's chat reaches its doctor only while ``call.unassigned`` can):
        each gets ``{"op":"unsubscribed","ch":"call:<id>","reason":"doctor_channel_left"}`` first, and
        is released, then ``doctor:<id>`` is, and its ``unsubscribed`` reply comes last."""
        session = conn.session
        if not session.forget(msg.ch):
            raise FrameError(
                ErrorCode.NOT_SUBSCRIBED, "not subscribed to this channel", field="ch", ref=msg.ref
            )
        if msg.ch == channels.doctor_channel(conn.user):  # only this doctor could subscribe to it
            ended = [
                channel
                for channel in list(session.channels)
                if channel.startswith(CALL_PREFIX)
                and self._end(conn, channel, UnsubscribeReason.DOCTOR_CHANNEL_LEFT)
            ]
            for channel in ended:
                await self._release_logged(conn, channel)
        await self._release(conn, msg.ch)
        session.send(unsubscribed_frame(msg.ch, msg.ref).decode())

    async def _release(self, conn: Connection, channel: str) -> None:
        """What a subscription holds besides the session's state, once the session forgot ``channel``:
        the hub's place (and with the process's last one, the broker's interest) and the connection's
        presence entry. Nothing is released while the session holds the channel again: an end the
        server decided runs in a task, and the client may have subscribed anew meanwhile."""
        session = conn.session
        if channel in session.channels:
            return
        await self.hub.remove(channel, session)
        if channel not in session.channels:
            await self._leave(conn, channel, self._member(conn))

    def _call_unassigned(self, session: Session, publication: Publication) -> None:
        """``call.unassigned`` was just queued for a connection (``Session.watch``), data
        ``{"call": "<call id>", "reason": ...}``: its doctor lost the call. The subscription to
        ``call:<id>`` was checked once, when it was made, so the server ends it: the session forgets
        the channel now (nothing later published there reaches this client), the client gets
        ``{"op":"unsubscribed","ch":"call:<id>","reason":"unassigned"}`` right behind the event, and
        the hub and presence entries are released in a task (they need the engine). Runs inside
        delivery (it must not raise): only this event type gets here, and only it is decoded."""
        conn = self.connections.get(session.id)
        if conn is None or conn.stopping or publication.channel != channels.doctor_channel(conn.user):
            return  # only the doctor's own channel speaks for the doctor (only they may subscribe to it)
        try:
            call = uuid.UUID(publication.decode()["data"]["call"])
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("call.unassigned without a call id", extra={"channel": publication.channel})
            return
        channel = channels.call_channel(call)
        if conn.subscribing == channel:
            conn.subscribing = None  # the subscribe in flight finishes the job (_subscribe_checked)
        else:
            self._end_subscription(conn, channel, UnsubscribeReason.UNASSIGNED)

    def _end(self, conn: Connection, channel: str, reason: UnsubscribeReason) -> bool:
        """The server ends the connection's subscription to ``channel`` if it has one (True then): the
        session forgets it at once and the client gets ``unsubscribed`` with ``reason``. The caller
        releases the rest (:meth:`_release`)."""
        if not conn.session.forget(channel):
            return False
        conn.session.send(unsubscribed_frame(channel, reason=reason).decode())
        return True

    def _end_subscription(self, conn: Connection, channel: str, reason: UnsubscribeReason) -> None:
        """:meth:`_end`, with the rest released in a task (for callers that cannot wait, such as
        delivery)."""
        if not self._end(conn, channel, reason):
            return
        task = asyncio.create_task(self._release_logged(conn, channel))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_logged(self, conn: Connection, channel: str) -> None:
        try:
            await self._release(conn, channel)
        except Exception:
            log.exception(
                "releasing an ended subscription failed", extra={"channel": channel, "conn": conn.id}
            )


def asgi_app(app: Starlette) -> ASGIApp:
    """``app`` with WebSocket connections to ``/v1/ws`` handed straight to the gateway.

    Starlette would pass them through its middleware and router, whose frames stay suspended for the
    connection's whole life: ~4.4 KB per idle connection measured here (loadtests/bench_ingest.py),
    for layers that do nothing to a WebSocket (the metrics middleware and the error pages are for
    HTTP; the gateway catches its own errors). Everything else, the lifespan included, goes to ``app``.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == scope.get("root_path", "") + WS_PATH:
            scope["app"] = app
            gateway: Gateway = app.state.gateway
            await gateway.serve(WebSocket(scope, receive, send), receive, send)
        else:
            await app(scope, receive, send)

    return asgi


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
