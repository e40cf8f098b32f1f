"""The WebSocket gateway at ``/v1/ws``: the parts of ``server/ws/`` tied together.

Everything a socket does passes here, and nothing here is a business rule: frames are decoded into
typed messages (``realtime/messages.py``), channel rules come from ``realtime/channels.py``, fixes go
to ``dispatch/location_ingest.py``, a doctor's availability to ``dispatch/availability.py``, other ops
to handlers registered by the subsystems that own them (``ops.py``). The domain services are built by
the application (``server/app.py``, :func:`~server.app.build_gateway`) and handed in; the gateway
runs them for the life of the process. docs/protocol.md is the client's reference; error codes live
in ``realtime/errors.py``, close codes in ``realtime/protocol.py``.

Cost per connection and per frame is measured by ``loadtests/bench_ingest.py`` against a bare
endpoint under the same uvicorn settings; with 5,000 doctors at 4 frames/s it went from ~8,300 to
~21,000 frames per CPU-second and from 43.5 to ~23 KB per idle connection (bare: ~25,000-32,000 and
20 KB), by: no ``asyncio.wait_for`` per received frame (a task and a timer per frame, the largest
single cost): the idle timeout is one timer per connection, re-armed lazily; no reader, closer or
parked writer task per connection; WebSocket connections skip Starlette's middleware and router
(``asgi.py``), whose suspended frames held ~4.4 KB per connection; location frames take a
synchronous path (no coroutine per frame) and the per-op metric children are looked up once; and
the garbage collector's thresholds (``server.cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dispatch.availability import Availability
from dispatch.breadcrumbs import BreadcrumbWriter
from dispatch.call_feed import CallStatusFollower, follow
from dispatch.location_ingest import LocationIngest
from models.enums import Role
from realtime.hub import Hub
from realtime.protocol import ReannounceReason, reannounce_frame
from server.services import Services
from server.ws.connection import Connection, member
from server.ws.intake import RATES, Intake, OpHandler
from server.ws.presence import ONLINE_CHANNEL, Presence
from server.ws.revocation import REVOKED, RevocationFollower, follow_revocations
from server.ws.subscriptions import Subscriptions
from server.ws.transport import Transport

log = logging.getLogger("tot.ws")

WS_PATH = "/v1/ws"
SPECIALTIES_AT_ONCE = 100
"""``set_specialties`` calls in flight at once when the engine changed (one Redis script each)."""


class Gateway:
    """All WebSocket connections of this process.

    ``services``: the application's services (settings, engine, database, tokens, metrics; op
    handlers reach the dispatch services through it). ``ingest``: takes location fixes.
    ``breadcrumbs``: writes the fixes of doctors on calls (the ingest's writer, started and stopped
    here). ``call_follower``: follows call status changes for the ingest. ``availability``: a doctor's
    profile on connect and the ``doctor.status`` op."""

    def __init__(
        self,
        services: Services,
        *,
        ingest: LocationIngest,
        breadcrumbs: BreadcrumbWriter,
        call_follower: CallStatusFollower,
        availability: Availability,
    ) -> None:
        self.services = services
        settings = services.settings
        engine = services.engine
        self.hub = Hub(engine.broker)
        self.ingest = ingest
        self.breadcrumbs = breadcrumbs
        self.call_follower = call_follower
        self.availability = availability
        self.connections: dict[str, Connection] = {}
        self._doctor_connections: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.reannounce_requests = 0
        """``reannounce`` frames sent since start (the metric ``tot_ws_reannounce_requests``)."""
        self.presence = Presence(engine.presence)
        self.subscriptions = Subscriptions(
            self.hub, services.sessions, self.presence, self.connections, settings.ws_max_subscriptions
        )
        self.intake = Intake(
            self, services.metrics, settings.ws_max_frame_bytes, ingest, self.subscriptions, self._stop
        )
        self.transport = Transport(
            settings,
            services.metrics,
            services.tokens,
            services.access,
            engine.broker,
            self.connections,
            self.intake,
            self.subscriptions.watch,
            self._on_connect,
            self._on_disconnect,
        )
        # The transport's own method, not a wrapper: a wrapper's suspended frame would stay for each
        # connection's whole life (bytes per idle connection, loadtests/bench_ingest.py).
        self.serve = self.transport.serve
        """Run one connection to its end (:meth:`Transport.serve`)."""
        self.revocations = RevocationFollower(self.connections.values, self._stop, services.access)
        """Closes a revoked account's sockets on this process (``server/ws/revocation.py``)."""
        services.metrics.ws_direct_frames.set_function(lambda: self.intake.direct_frames)

    # --- life cycle -------------------------------------------------------------------------------

    def register_op(self, op: str, handler: OpHandler, roles: set[Role] | frozenset[Role]) -> None:
        """Let ``roles`` send ``op``; ``handler`` answers it."""
        self.intake.register(op, handler, roles)

    async def start(self) -> None:
        """Start the hub, the ingest loop, the breadcrumb writer, the presence refresher, follow
        call status changes (the ingest stops tracking ended calls) and account revocations."""
        self._tasks = [
            asyncio.create_task(self.hub.run(), name="hub"),
            asyncio.create_task(self.ingest.run(), name="ingest"),
            asyncio.create_task(self.presence.refresh(), name="presence"),
            asyncio.create_task(follow(self.hub, self.call_follower), name="call-feed"),
            asyncio.create_task(follow_revocations(self.hub, self.revocations), name="revocations"),
        ]
        self.breadcrumbs.start()

    async def stop(self) -> None:
        """Stop background work; flush pending fixes, breadcrumbs and doctors' status changes."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.ingest.flush()
        await self.breadcrumbs.stop()
        await self.availability.writes.aclose()

    async def engine_changed(self, _epoch: str = "") -> int:
        """The live engine was lost or replaced (a local step of ``dispatch/engine_watch.py``): this
        process's doctors' specialties go back into the index (verified doctors only, as on connect),
        every presence entry joins again, and every doctor connection gets ``reannounce`` (the app
        re-sends its status and position, docs/protocol.md). Returns the frames sent. Engine errors
        are logged (the frames go out regardless)."""
        doctors = [
            conn
            for conn in list(self.connections.values())
            if conn.principal.role is Role.DOCTOR and not conn.stopping
        ]
        frame = reannounce_frame(ReannounceReason.ENGINE_RESET).decode()
        verified = {conn.user: conn.doctor_specialties for conn in doctors if conn.doctor_verified}
        # The specialties first, each doctor's before its frame goes out: a re-announced "available"
        # must find them in the index. The frames cost nothing; the specialties one script each.
        listed = list(verified.items())
        try:
            for start in range(0, len(listed), SPECIALTIES_AT_ONCE):
                chunk = listed[start : start + SPECIALTIES_AT_ONCE]
                await asyncio.gather(*(self.availability.locations.set_specialties(u, s) for u, s in chunk))
        except Exception:  # the re-announce is still worth asking for (the rebuild restored most)
            log.exception("restoring this process's doctors' specialties failed")
        for conn in doctors:
            conn.session.send(frame)
        self.reannounce_requests += len(doctors)
        if doctors:
            log.warning("asked this process's doctors to re-announce", extra={"connections": len(doctors)})
        await self.presence.refresh_once()
        return len(doctors)

    # --- one connection ---------------------------------------------------------------------------

    def _stop(self, conn: Connection, code: int, reason: str) -> None:
        self.transport.stop(conn, code, reason)

    async def _on_connect(self, conn: Connection) -> None:
        """Join ``online``; a doctor's profile (verified, specialties); the ``hello`` frame. A connection
        whose token was revoked while it was being checked is closed with 4410 instead."""
        principal = conn.principal
        user = conn.user
        await self.presence.join(conn, ONLINE_CHANNEL, member(conn), {"role": principal.role.value})
        if principal.role is Role.DOCTOR:
            admission = await self.availability.admit(principal.user_id)
            if admission is not None:
                conn.doctor_verified = admission.verified
                conn.doctor_specialties = admission.specialties
            self._doctor_connections[user] = self._doctor_connections.get(user, 0) + 1
        if self.revocations.revoked_meanwhile(conn):  # after the bookkeeping _on_disconnect undoes
            self._stop(conn, *REVOKED)
            return
        settings = self.services.settings
        conn.session.send_frame(
            {
                "op": "hello",
                "connection": conn.id,
                "user": user,
                "role": principal.role.value,
                "server_time": int(time.time() * 1000),
                "limits": {
                    "max_frame_bytes": settings.ws_max_frame_bytes,
                    "idle_timeout_s": settings.ws_idle_timeout_s,
                    "location_per_s": RATES["location"].rate,
                },
            }
        )

    async def _on_disconnect(self, conn: Connection) -> None:
        """Leave the hub and presence (a failure is logged: entries expire on their own)."""
        try:
            await self.hub.remove_all(conn.session)
            await self.presence.leave_all(conn)
        except Exception:
            log.exception("disconnect clean-up failed", extra={"conn": conn.id})
        if conn.principal.role is Role.DOCTOR:
            user = conn.user
            left = self._doctor_connections.get(user, 1) - 1
            if left <= 0:
                self._doctor_connections.pop(user, None)
            else:
                self._doctor_connections[user] = left
