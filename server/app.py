"""The ASGI application: routes, middleware, error handlers and the lifespan that opens and closes
the database and the live engine."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from dispatch.agenda import AgendaService
from dispatch.availability import Availability
from dispatch.booking import BookingService
from dispatch.booking_reminders import BookingReminders
from dispatch.breadcrumbs import BreadcrumbWriter
from dispatch.calendar_feed import CalendarFeeds
from dispatch.call_feed import CallStatusFollower
from dispatch.call_places import CallPlaces
from dispatch.calls import CallService
from dispatch.catalogue import Catalogue
from dispatch.chat import ChatService
from dispatch.doctor_schedules import DoctorSchedules
from dispatch.location_ingest import IngestSettings, LocationIngest
from dispatch.offer_loop import OfferLoop
from dispatch.outbox_relay import OutboxRelay
from dispatch.publisher import EventPublisher
from dispatch.ratings import RatingService
from dispatch.sos import SosService, SosSettings
from dispatch.zones import ZoneIndex, warm_cells
from models.db import make_engine, make_sessionmaker
from models.types import utcnow
from realtime.map_feed import MapFeed
from server.abuse import AuthLimits, HashGate, open_storage
from server.auth.access import AccessCheck
from server.auth.tokens import TokenService
from server.engine import open_engine
from server.engine_care import EngineCare
from server.errors import EXCEPTION_HANDLERS
from server.metrics import Metrics, MetricsMiddleware
from server.notify import offer_seen
from server.notify.rules import NOTIFY_TYPES
from server.notify.service import Notify
from server.routes import admin as _admin_routes  # noqa: F401  (importing registers the routes)
from server.routes import agenda as _agenda_routes  # noqa: F401
from server.routes import api, doctor_app
from server.routes import auth as _auth_routes  # noqa: F401
from server.routes import bookings as _booking_routes  # noqa: F401
from server.routes import calls as _call_routes  # noqa: F401
from server.routes import candidates as _candidate_routes  # noqa: F401
from server.routes import chat as _chat_routes  # noqa: F401
from server.routes import clinic_catalogue as _catalogue_routes  # noqa: F401
from server.routes import clinics as _clinic_routes  # noqa: F401
from server.routes import console as console_routes
from server.routes import doctors as _doctor_routes  # noqa: F401
from server.routes import notifications as _notification_routes  # noqa: F401
from server.routes import notify_preferences as _preference_routes  # noqa: F401
from server.routes import patient_app as patient_routes
from server.routes import phone as _phone_routes  # noqa: F401
from server.routes import push as _push_routes  # noqa: F401
from server.routes import ratings as _rating_routes  # noqa: F401
from server.routes import schedules as _schedule_routes  # noqa: F401
from server.routes import share as share_routes
from server.routes import sos as _sos_routes  # noqa: F401
from server.routes import system as _system_routes  # noqa: F401
from server.routes import telegram as _telegram_routes  # noqa: F401
from server.routes import zones as _zone_routes  # noqa: F401
from server.services import PlannedVisits, Services
from server.settings import Settings
from server.test_clock import FileOffsetClock
from server.ws import ops as ws_ops
from server.ws.gateway import Gateway

log = logging.getLogger("tot.app")


async def websocket_endpoint(ws: WebSocket) -> None:
    """``/v1/ws``: every client's one socket (docs/protocol.md)."""
    gateway: Gateway = ws.app.state.gateway
    await gateway.serve(ws)


ZONES_REFRESH_S = 60.0
"""How often a process re-reads zones (``tot-dispatch zones import`` runs in another process)."""


async def _load_zones(sessions: async_sessionmaker[AsyncSession]) -> ZoneIndex:
    zones = ZoneIndex(sessions)
    try:
        await zones.reload()
        warm_cells(zones)
    except Exception:  # an unmigrated database: serve health and errors rather than refuse to start
        log.exception("could not load zones")
    return zones


async def _stop_tasks(tasks: list[asyncio.Task[None]], retry_s: float = 0.5) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again every ``retry_s`` seconds any that lives on:
    a cancellation can reach a worker's loop as an ordinary exception, which the loop logs and goes on
    (seen: the offer loop kept sleeping after a cancel that arrived inside a Redis call, and the app's
    shutdown waited for it forever)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_s)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception(), extra={"task": task.get_name()})


async def _refresh_zones(zones: ZoneIndex) -> None:
    while True:
        await asyncio.sleep(ZONES_REFRESH_S)
        try:
            before = len(zones)
            if await zones.reload() != before:
                warm_cells(zones)
        except Exception:
            log.exception("could not reload zones")


def build_gateway(services: Services) -> Gateway:
    """The socket gateway of ``services``, with the domain services it drives built here: the location
    ingest, its breadcrumb writer, the call-status follower that tells the ingest when a call ends, and
    the doctors' availability. Ops are registered by the caller; nothing runs until ``start``."""
    settings = services.settings
    engine = services.engine
    breadcrumbs = BreadcrumbWriter(services.sessions)
    ingest = LocationIngest(
        engine.locations,
        engine.states,
        services.publisher,
        IngestSettings(
            max_past_ms=settings.location_max_past_s * 1000,
            max_future_ms=settings.location_max_future_s * 1000,
            forward_interval_ms=settings.position_forward_interval_ms,
            offline_after_ms=settings.doctor_offline_after_s * 1000,
            ranking=settings.dispatch().ranking,
        ),
        places=CallPlaces(services.sessions),
        breadcrumbs=breadcrumbs,
    )
    return Gateway(
        services,
        ingest=ingest,
        breadcrumbs=breadcrumbs,
        call_follower=CallStatusFollower(ingest.call_changed),
        availability=Availability(
            services.sessions, engine.states, engine.locations, services.publisher, ingest.invalidate
        ),
    )


def create_app(settings: Settings, *, now: Callable[[], dt.datetime] = utcnow) -> Starlette:
    """A new application for ``settings``. Opening connections waits for the lifespan start-up.

    ``now``: the clock of the calls and planned visits (aware UTC; tests pass a manual clock's
    ``utcnow``, tests/clock.py); the live engine keeps the wall clock."""
    metrics = Metrics()
    dispatch_now: Callable[[], dt.datetime] = utcnow
    if settings.test_clock_file:
        # Test only (server/test_clock.py): every domain clock, the offer loop's included, follows the
        # offset in the file, so a browser test can move a separate server process to a lead time.
        now = dispatch_now = FileOffsetClock(settings.test_clock_file).utcnow
        log.warning("test clock in use: never in production", extra={"path": settings.test_clock_file})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = make_engine(
            settings.database_url, pool_size=settings.db_pool_size, pool_timeout_s=settings.db_pool_timeout_s
        )
        sessions = make_sessionmaker(db)
        engine = open_engine(settings.engine_url, prefix=settings.engine_prefix)
        zones = await _load_zones(sessions)
        # The one door for domain events (dispatch/publisher.py), the outbox writer; its relay publishes
        # what a committer could not (dispatch/outbox_relay.py), one active across processes.
        # The notification rules read the outbox rows of their event types (server/notify/deriver.py).
        outbox_settings = dataclasses.replace(settings.outbox(), notify_types=NOTIFY_TYPES)
        publisher = EventPublisher(engine.broker, sessions, settings=outbox_settings)
        relay = OutboxRelay(publisher)
        metrics.watch_outbox(publisher.stats)
        calls = CallService(sessions, publisher, zones, now=now)
        dispatch = OfferLoop(
            calls, engine.locations, engine.states, engine.deadlines, settings.dispatch(), now=dispatch_now
        )
        sos = SosService(
            sessions,
            publisher,
            engine.locations,
            engine.sos_deadlines,
            calls,
            SosSettings(radius_m=settings.sos_radius_km * 1000, repeat_s=settings.sos_repeat_s),
            on_emergency=dispatch.trigger,
        )
        notify = Notify(settings, sessions, dispatch)
        publisher.notify_wakeup = notify.deriver.wake
        metrics.watch_notify(notify.sender, notify.deriver)
        app.state.services = Services(
            settings=settings,
            db=db,
            sessions=sessions,
            engine=engine,
            publisher=publisher,
            tokens=TokenService(
                settings.secret_key, settings.access_token_ttl_s, settings.refresh_token_ttl_s
            ),
            metrics=metrics,
            zones=zones,
            calls=calls,
            dispatch=dispatch,
            chat=ChatService(sessions, publisher),
            ratings=RatingService(sessions),
            sos=sos,
            auth_limits=AuthLimits(open_storage(engine, settings.engine_prefix), settings),
            hash_gate=HashGate(settings.hash_concurrency, settings.hash_queue),
            access=AccessCheck(engine.revocations, sessions),
            notify=notify,
            planned=PlannedVisits(
                catalogue=Catalogue(sessions),
                schedules=DoctorSchedules(sessions, now=now),
                bookings=BookingService(sessions, calls, settings.slot_rules(), now=now),
                agenda=AgendaService(sessions, now=now),
                feeds=CalendarFeeds(sessions, now=now),
            ),
        )
        gateway = build_gateway(app.state.services)
        ws_ops.register(gateway)
        offer_seen.register(gateway)
        app.state.gateway = gateway
        await gateway.start()
        # The live engine is a cache of the database: rebuilt at start when empty (always for memory).
        care = EngineCare(app.state.services, gateway)
        await care.start()
        background = [
            *(asyncio.create_task(loop, name=name) for name, loop in care.loops().items()),
            asyncio.create_task(dispatch.run(), name="dispatch"),
            asyncio.create_task(sos.run(), name="sos"),
            asyncio.create_task(_refresh_zones(zones), name="zones"),
            asyncio.create_task(relay.run(), name="outbox_relay"),
            # Booked visits' reminders (T - 24 h, T - 2 h), scanned from the database.
            asyncio.create_task(BookingReminders(sessions, calls.publisher, now).run(), name="reminders"),
            *(asyncio.create_task(loop, name=name) for name, loop in notify.tasks().items()),
            # The console's map: per-cell batches to this process's own map subscribers.
            asyncio.create_task(
                MapFeed(engine.locations, gateway.hub, interval_s=settings.map_feed_interval_ms / 1000).run(),
                name="map_feed",
            ),
        ]
        log.info("started", extra={"engine": engine.kind, "database": db.dialect.name, "zones": len(zones)})
        try:
            yield
        finally:
            await _stop_tasks(background)
            await dispatch.stop()
            await gateway.stop()
            await relay.stop()
            await notify.stop()
            await publisher.aclose()
            await engine.close()
            await db.dispose()
            log.info("stopped")

    return Starlette(
        routes=[
            *api.routes(),
            WebSocketRoute("/v1/ws", websocket_endpoint),
            Mount(
                console_routes.STATIC_PREFIX,
                StaticFiles(directory=console_routes.CONSOLE_DIR, check_dir=False),
                name="console_static",
            ),
            Mount(
                patient_routes.STATIC_PREFIX,
                StaticFiles(directory=patient_routes.PATIENT_DIR, check_dir=False),
                name="patient_static",
            ),
            Mount(
                "/track/static",
                StaticFiles(directory=share_routes.TRACK_DIR, check_dir=False),
                name="track_static",
            ),
            *doctor_app.mounts(),
            *(
                Mount(prefix, StaticFiles(directory=folder, check_dir=False))
                for prefix, folder in console_routes.SHARED_STATIC.items()
            ),
        ],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
