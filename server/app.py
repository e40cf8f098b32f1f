"""The ASGI application: routes, middleware, error handlers and the lifespan that opens and closes
the database and the live engine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from models.db import make_engine, make_sessionmaker
from server.auth.tokens import TokenService
from server.engine import open_engine
from server.errors import EXCEPTION_HANDLERS
from server.metrics import Metrics, MetricsMiddleware
from server.routes import api, auth, clinics, doctors, system  # noqa: F401  (registers the routes)
from server.services import Services
from server.settings import Settings

log = logging.getLogger("tot.app")


def create_app(settings: Settings) -> Starlette:
    """A new application for ``settings``. Opening connections waits for the lifespan start-up."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = make_engine(settings.database_url)
        engine = await open_engine(settings.engine_url)
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
        log.info("started", extra={"engine": engine.kind, "database": db.dialect.name})
        try:
            yield
        finally:
            await engine.close()
            await db.dispose()
            log.info("stopped")

    return Starlette(
        routes=api.routes(),
        middleware=[Middleware(MetricsMiddleware, metrics=metrics)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
