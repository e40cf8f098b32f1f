"""Health, metrics and the API description."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from migrations.runner import head_revision
from server.http import json_response
from server.metrics import CONTENT_TYPE
from server.routes import api
from server.services import services

API_TITLE = "TOT Dispatch"
API_VERSION = "1"


class ComponentHealth(BaseModel):
    """One dependency: ``status`` is ``ok``, ``down`` or (database) ``outdated`` (not migrated to head)."""

    status: str
    kind: str | None = None
    latency_ms: float | None = None
    revision: str | None = None
    detail: str | None = None


class HealthOut(BaseModel):
    """``status`` is ``ok`` only when every component is ``ok``; the response is then 200, else 503."""

    status: str
    database: ComponentHealth
    engine: ComponentHealth


async def _database_health(request: Request) -> dict[str, Any]:
    svc = services(request)
    started = time.perf_counter()
    try:
        async with svc.db.connect() as conn:
            revision = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except Exception as exc:  # any driver error means the database is not usable
        return {"status": "down", "kind": svc.db.dialect.name, "detail": f"{type(exc).__name__}: {exc}"}
    status = "ok" if revision == head_revision() else "outdated"
    return {
        "status": status,
        "kind": svc.db.dialect.name,
        "revision": revision,
        "latency_ms": round((time.perf_counter() - started) * 1e3, 3),
    }


@api.route(
    "GET",
    "/v1/health",
    summary="Database and engine status",
    tag="system",
    response=HealthOut,
    roles=None,
    alternate=(503,),
)
async def health(request: Request) -> Response:
    """Checks the database (reachable, migrated to head) and the live engine (reachable). Public, for
    load balancers and orchestrators; reveals no data."""
    database = await _database_health(request)
    engine = await services(request).engine.health()
    ok = database["status"] == "ok" and engine["status"] == "ok"
    body = {"status": "ok" if ok else "degraded", "database": database, "engine": engine}
    return json_response(body, status_code=200 if ok else 503)


@api.route(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    tag="system",
    roles=None,
    response_media_type=CONTENT_TYPE,
)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition format. Public on purpose (scrapers carry no token); put it behind
    the network's access rules in production."""
    return Response(services(request).metrics.render(), media_type=CONTENT_TYPE)


@api.route("GET", "/v1/openapi.json", summary="This API's OpenAPI document", tag="system", roles=None)
async def openapi(request: Request) -> Response:
    """OpenAPI 3.1, generated from the route declarations."""
    return json_response(api.openapi(title=API_TITLE, version=API_VERSION))
