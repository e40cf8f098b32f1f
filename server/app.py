"""The ASGI application: routes, middleware, error handlers and the lifespan that opens and closes
the database and the live engine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from models.db import make_engine, make_sessionmaker
from models.enums import Role
from server.auth.tokens import TokenService
from server.engine import open_engine
from server.errors import EXCEPTION_HANDLERS
from server.gateway import Gateway, doctor_status
from server.metrics import Metrics, MetricsMiddleware
from server.routes import api, auth, clinics, doctors, system  # noqa: F401  (registers the routes)
from server.services import Services
from server.settings import Settings

log = logging.getLogger("tot.app")


async def websocket_endpoint(ws: WebSocket) -> None:
    """``/v1/ws``: every client's one socket (docs/protocol.md)."""
    gateway: Gateway = ws.app.state.gateway
    await gateway.serve(ws)


def create_app(settings: Settings) -> Starlette:
    """A new application for ``settings``. Opening connections waits for the lifespan start-up."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = make_engine(settings.database_url)
        engine = open_engine(settings.engine_url, prefix=settings.engine_prefix)
        app.state.services = Services(
            settings=settings,
            db=db,
            sessions=make_sessionmaker(db),
            engine=engine,
            tokens=TokenService(
                settings.secret_key, settings.access_token_ttl_s, settings.refresh_token_ttl_s
            ),
            metrics=metrics,
        )
        gateway = Gateway(app.state.services)
        gateway.register_op("doctor.status", doctor_status, {Role.DOCTOR})
        app.state.gateway = gateway
        await gateway.start()
        log.info("started", extra={"engine": engine.kind, "database": db.dialect.name})
        try:
            yield
        finally:
            await gateway.stop()
            await engine.close()
            await db.dispose()
            log.info("stopped")

    return Starlette(
        routes=[*api.routes(), WebSocketRoute("/v1/ws", websocket_endpoint)],
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
