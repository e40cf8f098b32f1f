"""One connection's socket: accept, origin and token checks, the read loop, the writer, the idle
timer, and the close with a documented code.

Per connection: the connection's own task reads frames (:meth:`Transport.serve`), except location
fixes arriving while it is idle, which the protocol hands over directly (``uvicorn_protocol.py``,
:meth:`~server.ws.intake.Intake.direct_text`); frames queued in the session's send queue are written at
once while the socket takes them, and a writer task exists only while the transport is full. The
connection is closed only with a documented code (unauthorized, origin, idle, flood, slow consumer,
shutdown, internal error).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

import sqlalchemy.exc
from starlette.requests import HTTPConnection
from starlette.types import Receive, Send
from starlette.websockets import WebSocket

from realtime.broker import Broker
from realtime.errors import ErrorCode
from realtime.protocol import CloseCode
from realtime.send_queue import SendQueue
from realtime.session import RecoveryPolicy, Session, WatchCallback
from server.auth.access import AccessCheck
from server.auth.principal import authenticate
from server.auth.tokens import TokenService
from server.errors import ApiError
from server.metrics import Metrics
from server.settings import Settings
from server.ws.caps import SocketCaps
from server.ws.connection import Connection
from server.ws.intake import Intake
from server.ws.uvicorn_protocol import protocol_of

log = logging.getLogger("tot.ws")

SLOW_CONSUMER = (CloseCode.SLOW_CONSUMER, "slow_consumer")
YIELD_EVERY_FRAMES = 16
"""The read loop yields to the event loop at least this often (and after every frame that queued a reply)."""

Hook = Callable[[Connection], Awaitable[None]]
"""Run when a connection opens (before its first frame) or closes (after its last)."""


class _Callbacks:
    """A connection's send queue and session callbacks. They hold the connection's id, not the
    connection: no reference cycle for the garbage collector to find (and one small object instead of
    two closures: ~0.4 KB less per connection)."""

    __slots__ = ("conn_id", "transport")

    def __init__(self, transport: Transport, conn_id: str) -> None:
        self.transport = transport
        self.conn_id = conn_id

    def overflow(self) -> None:
        self.transport.stop(self.conn_id, *SLOW_CONSUMER)

    def ready(self) -> None:
        self.transport.start_writer(self.conn_id)


class Transport:
    """The sockets of this process's connections.

    ``connections``: the open connections by id (filled and emptied here). ``intake``: takes each
    frame. ``watch``: event types whose delivery a connection's session reports (``Session.watch``).
    ``on_connect``/``on_disconnect``: what the gateway does when a connection opens and closes."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        tokens: TokenService,
        access: AccessCheck,
        broker: Broker,
        connections: dict[str, Connection],
        intake: Intake,
        watch: Mapping[str, WatchCallback],
        on_connect: Hook,
        on_disconnect: Hook,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.tokens = tokens
        self.access = access
        self.broker = broker
        self.connections = connections
        self.intake = intake
        self.watch = watch
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.caps = SocketCaps(settings.ws_max_per_user, settings.ws_max_per_address)
        self.recovery = RecoveryPolicy(  # shared by every session of the process
            attempts=settings.ws_recovery_attempts, attempt_timeout_s=settings.ws_recovery_timeout_s
        )

    def _origin_allowed(self, ws: WebSocket) -> bool:
        allowed = self.settings.ws_allowed_origins
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
        metrics = self.metrics
        settings = self.settings
        await ws.accept()
        if not self._origin_allowed(ws):
            await self._refuse(ws, CloseCode.ORIGIN_NOT_ALLOWED, "origin_not_allowed")
            return
        try:
            # A throwaway view of the scope: ``ws`` would keep the parsed query string (with the
            # token) and headers cached for the connection's lifetime.
            principal = await self.access.check(authenticate(HTTPConnection(ws.scope), self.tokens))
        except ApiError as exc:
            revoked = exc.code is ErrorCode.TOKEN_REVOKED
            await self._refuse(ws, CloseCode.TOKEN_REVOKED if revoked else CloseCode.UNAUTHORIZED, exc.code)
            return
        except sqlalchemy.exc.TimeoutError:
            # The revocation check read the database and no connection came free: as below, busy.
            await self._refuse(ws, CloseCode.TRY_AGAIN_LATER, "busy")
            return
        except Exception:
            # Neither the engine nor the database could say whether the token is revoked: refuse.
            log.exception("token revocation check failed")
            await self._refuse(ws, CloseCode.INTERNAL_ERROR, "internal_error")
            return
        user = str(principal.user_id)
        address = ws.client.host if ws.client else None
        if not self.caps.admit(user, address):
            await self._refuse(ws, CloseCode.TOO_MANY_SOCKETS, "too_many_sockets")
            return

        conn_id = uuid.uuid4().hex
        send_queue = SendQueue(max_frames=settings.ws_send_queue_frames)
        callbacks = _Callbacks(self, conn_id)
        send_queue.on_ready = callbacks.ready
        conn = Connection(
            conn_id,
            principal,
            Session(conn_id, self.broker, send_queue, callbacks.overflow, self.watch, self.recovery),
            ws.send if send is None else send,
            user=user,
            task=asyncio.current_task(),
        )
        self.connections[conn_id] = conn
        metrics.ws_connections.labels(principal.role.value).inc()
        if receive is None:
            receive = ws.receive
        # uvicorn's protocol, subclassed (uvicorn_protocol.py); None under another server.
        protocol = protocol_of(receive)
        if protocol is not None:
            conn.send_now = protocol.send_text_now
        del ws
        monotonic = time.monotonic
        take_frame = self.intake.frame
        try:
            await self.on_connect(conn)
            # The read loop. Kept in this coroutine rather than a method of its own: one suspended
            # frame less per connection. One timer per connection instead of one per frame: a frame
            # only records its time, and the timer, when due, re-arms itself for what is left.
            conn.last_frame = monotonic()
            conn.idle_timer = asyncio.get_running_loop().call_later(
                settings.ws_idle_timeout_s, self._idle_check, conn
            )
            # Location fixes are taken straight from the protocol while this task is parked
            # (uvicorn_protocol.py): no queue, no task step per fix.
            if protocol is not None:
                protocol.direct_text = functools.partial(self.intake.direct_text, conn)
            handled = 0
            while not conn.stopping:
                if conn.writer is not None or handled % YIELD_EVERY_FRAMES == YIELD_EVERY_FRAMES - 1:
                    # receive() does not suspend while uvicorn holds parsed frames (one socket read
                    # can hold hundreds): let the writer send the replies so far (else a burst of
                    # requests overflows the send queue before it sends any), and other connections run.
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
                op = take_frame(conn, message, now)
                if op is not None:
                    await op
        except asyncio.CancelledError:
            # stop() cancelled us (idle, slow consumer) to interrupt a pending receive; any other
            # cancellation goes on after the clean-up.
            assert conn.task is not None
            if not (conn.cancelled and conn.task.uncancel() == 0):
                raise
        except sqlalchemy.exc.TimeoutError:
            # Load shedding at connect (a doctor's profile is read then), as the REST API's 503 busy:
            # "try again later" (RFC 6455 7.4.1), not a bug. Frames' ops shed with a `busy` error
            # frame instead (intake.py).
            log.warning("database pool exhausted; connection shed", extra={"conn": conn_id})
            conn.close_code, conn.close_reason = CloseCode.TRY_AGAIN_LATER, "busy"
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
            send_queue.close()
            await self.on_disconnect(conn)
            del self.connections[conn_id]
            self.caps.release(user, address)
            metrics.ws_connections.labels(principal.role.value).dec()

    def stop(self, conn_or_id: Connection | str, code: int, reason: str) -> None:
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

    def start_writer(self, conn_id: str) -> None:
        """A frame landed in the connection's empty send queue (called inside ``SendQueue.push``): write it
        now when the socket takes it without waiting, else start the writer task."""
        conn = self.connections.get(conn_id)
        if conn is None or conn.writer is not None or conn.stopping:
            return
        send_now = conn.send_now
        if send_now is not None:
            # No task and no loop iteration between a delivery and the socket (uvicorn_protocol.py).
            send_queue = conn.session.send_queue
            while frames := send_queue.take(1):
                if not send_now(frames[0]):
                    conn.writer = asyncio.create_task(self._write(conn, frames[0]))
                    return
            return
        conn.writer = asyncio.create_task(self._write(conn))

    async def _refuse(self, ws: WebSocket, code: CloseCode, reason: str) -> None:
        self.metrics.ws_closes.labels(str(int(code))).inc()
        client = HTTPConnection(ws.scope).client
        log.info(
            "connection refused",
            extra={"code": int(code), "reason": reason, "client": client.host if client else None},
        )
        await ws.close(code, reason)

    async def _write(self, conn: Connection, first: str | None = None) -> None:
        """Send ``first`` (a frame already taken from the send queue) and what the send queue holds, then end
        (``start_writer`` starts another on the next frame)."""
        send, send_queue = conn.send, conn.session.send_queue
        timeout = self.settings.ws_send_timeout_s
        try:
            while frames := ([first] if first is not None else send_queue.take()):
                first = None
                for frame in frames:
                    try:
                        async with asyncio.timeout(timeout):
                            await send({"type": "websocket.send", "text": frame})
                    except TimeoutError:
                        self.stop(conn, *SLOW_CONSUMER)
                        return
                    except OSError:
                        # The client is gone (uvicorn's ClientDisconnected): nothing more to write; the
                        # read loop sees the disconnect and ends the session. Raised here, the writer
                        # task's error was never retrieved and filled the log at every shutdown.
                        self.stop(conn, CloseCode.GOING_AWAY, "client_gone")
                        return
        finally:
            conn.writer = None

    def _idle_check(self, conn: Connection) -> None:
        """The idle timer: close after ``ws_idle_timeout_s`` without a frame, else wait for the rest."""
        timeout = self.settings.ws_idle_timeout_s
        left = conn.last_frame + timeout - time.monotonic()
        if left > 0:
            conn.idle_timer = asyncio.get_running_loop().call_later(left, self._idle_check, conn)
        else:
            conn.idle_timer = None
            self.stop(conn, CloseCode.IDLE_TIMEOUT, "idle_timeout")
