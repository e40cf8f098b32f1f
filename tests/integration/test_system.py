"""Health, metrics, the error shape and the OpenAPI document."""

from __future__ import annotations

import re
import socket

import httpx
import sqlalchemy as sa
from starlette.routing import Route

from migrations import runner
from server.app import create_app
from tests.conftest import app_client_for, make_settings


async def test_health_reports_database_and_engine(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["database"]["revision"] == runner.head_revision()
    assert body["engine"] == {"status": "ok", "kind": "memory"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_is_503_when_the_engine_is_down(database_url: str) -> None:
    settings = make_settings(database_url, engine_url=f"redis://127.0.0.1:{_closed_port()}/0")
    async with app_client_for(settings) as http:
        response = await http.get("/v1/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["engine"]["status"] == "down"
    assert body["database"]["status"] == "ok"


async def test_health_is_503_on_an_unmigrated_database(tmp_path: object) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    async with app_client_for(settings) as http:
        response = await http.get("/v1/health")
    assert response.status_code == 503
    assert response.json()["database"]["status"] == "down"


async def test_health_with_the_redis_engine(database_url: str) -> None:
    from tests.conftest import redis_test_url

    async with app_client_for(make_settings(database_url, engine_url=redis_test_url())) as http:
        body = (await http.get("/v1/health")).json()
    assert body["engine"]["status"] == "ok"
    assert body["engine"]["kind"] == "redis"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/v1/doctors/00000000-0000-4000-8000-000000000001")  # 401, templated route
    text = (await client.get("/metrics")).text
    assert 'tot_http_requests_total{method="GET",route="/v1/doctors/{doctor_id}",status="401"}' in text
    assert "tot_http_request_duration_seconds_bucket" in text
    assert "00000000-0000-4000-8000-000000000001" not in text
    # The loop's live tasks (the app's background loops at least: relay, engine watch, workers).
    tasks = re.search(r"^tot_asyncio_tasks ([0-9.e+]+)$", text, re.MULTILINE)
    assert tasks is not None and float(tasks.group(1)) >= 3


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/no-such-thing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = await client.delete("/v1/health")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_openapi_describes_every_route(client: httpx.AsyncClient, database_url: str) -> None:
    document = (await client.get("/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    app = create_app(make_settings(database_url))
    mounted = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ())
        if method != "HEAD"
    }
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert mounted and mounted == described
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.split("/")[-1] in document["components"]["schemas"]
    register = document["paths"]["/v1/auth/register"]["post"]
    assert "201" in register["responses"] and "409" in register["responses"]
    assert "security" not in register
    assert document["paths"]["/v1/me"]["get"]["security"] == [{"bearer": []}]


async def test_a_request_waiting_too_long_for_a_database_connection_is_shed_with_503(
    database_url: str,
) -> None:
    """Load shedding: with every pooled connection held (one here: ``TOT_DB_POOL_SIZE=1``; SQLite
    always has one), a request gets 503 ``busy`` with ``Retry-After`` after ``TOT_DB_POOL_TIMEOUT``
    instead of queueing for SQLAlchemy's 30 s; once the connection is free the same request is served."""
    settings = make_settings(database_url, db_pool_size=1, db_pool_timeout_s=0.2)
    app = create_app(settings)
    login = {"login": "nobody@example.org", "password": "not-the-password"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tot.test") as http:
            sessions = app.state.services.sessions
            async with sessions() as holder:
                await holder.execute(sa.text("SELECT 1"))  # checks out the pool's only connection
                shed = await http.post("/v1/auth/login", json=login)
            served = await http.post("/v1/auth/login", json=login)

    assert shed.status_code == 503
    assert shed.headers["Retry-After"] == "1"
    assert shed.json()["error"]["code"] == "busy"
    assert served.status_code == 401  # the same request, served once the connection came back
