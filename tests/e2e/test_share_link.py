"""The relative's share link over HTTP against real server processes, on both deployments (SQLite with
the memory engine, PostgreSQL with Redis): only the call's patient makes one; the link shows the
status and, once a doctor is assigned, the doctor's live position with distance and ETA, to anyone
holding the token and no account; only the token's hash is stored; the link dies with the call. Also
the patient app's page, manifest and service worker as a phone fetches them."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from models.enums import Role
from tests.conftest import create_migrated_pg_database, drop_pg_database, redis_test_url
from tests.e2e.dispatch_world import CENTRE, City, city, forget_engine_keys, offset


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    cwd = tmp_path_factory.mktemp(f"share-{request.param}")
    if request.param == "sqlite":
        with city(cwd, doctors=1, patients=2) as c:
            yield c
        return
    database_url = asyncio.run(create_migrated_pg_database("tot_share"))
    prefix = ""
    try:
        with city(cwd, doctors=1, patients=2, database_url=database_url, engine_url=redis_test_url()) as c:
            prefix = c.env["TOT_ENGINE_PREFIX"]
            yield c
    finally:
        if prefix:
            asyncio.run(forget_engine_keys(prefix))
        asyncio.run(drop_pg_database(database_url))


async def anonymous(world: City, path: str, accept: str = "application/json") -> httpx.Response:
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as client:
        return await client.get(path, headers={"Accept": accept})


async def stored_hashes(world: City) -> list[str]:
    engine = create_async_engine(world.database_url)
    try:
        async with engine.connect() as conn:
            return [row[0] for row in await conn.execute(sa.text("SELECT token_hash FROM share_links"))]
    finally:
        await engine.dispose()


async def until_doctor_at(world: City, path: str, lat: float, timeout_s: float = 15.0) -> dict[str, object]:
    """Poll the link (as the page does) until it shows the doctor at latitude ``lat``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        body: dict[str, object] = (await anonymous(world, path)).json()
        doctor = body.get("doctor")
        if isinstance(doctor, dict) and abs(float(doctor["lat"]) - lat) < 1e-6:
            return body
        if loop.time() > deadline:
            raise TimeoutError(f"the link never showed the doctor at {lat}: {body}")
        await asyncio.sleep(0.2)


async def test_a_link_follows_the_visit_and_dies_with_it(world: City) -> None:
    patient, other = world.of_role(Role.PATIENT)
    doctor_person = world.of_role(Role.DOCTOR)[0]
    app = world.doctor(doctor_person, *offset(*CENTRE, 2_000))
    await app.start()
    try:
        call = (await world.create_call(patient, *CENTRE)).json()
        share = f"/v1/calls/{call['id']}/share"
        # Only the call's own patient: another patient does not see it, a doctor may not share.
        assert (await world.http("POST", share, other)).status_code == 404
        assert (await world.http("POST", share, doctor_person)).status_code == 403
        assert (await world.http("POST", share, world.dispatcher)).status_code == 403
        made = await world.http("POST", share, patient)
        assert made.status_code == 201, made.text
        link = made.json()
        token = link["token"]
        assert len(token) == 43 and link["path"] == f"/track/{token}"
        assert await stored_hashes(world) == [hashlib.sha256(token.encode()).hexdigest()]
        api_path = f"/v1/track/{token}"

        before = await anonymous(world, api_path)
        assert before.status_code == 200, before.text
        assert before.json()["status"] in {"searching", "offered"} and before.json()["doctor"] is None
        page = await anonymous(world, link["path"], accept="text/html")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["referrer-policy"] == "no-referrer"

        offer = await app.wait_for("offer.created", lambda d: d["call"]["id"] == call["id"])
        await app.client.request("offer.accept", offer=offer["offer"])
        shown = await until_doctor_at(world, api_path, app.lat)
        assert shown["status"] == "assigned"
        far = shown["doctor"]
        assert isinstance(far, dict) and 1_900 < float(far["distance_m"]) < 2_100 and int(far["eta_s"]) > 0
        app.lat, app.lon = offset(*CENTRE, 500)
        await app.fix()
        near = (await until_doctor_at(world, api_path, app.lat))["doctor"]
        assert isinstance(near, dict) and float(near["distance_m"]) < float(far["distance_m"])
        assert int(near["eta_s"]) < int(far["eta_s"])

        # Unknown and malformed tokens are 404 with the error body, the page too.
        for bad in (secrets.token_urlsafe(32), "short", "x" * 44):
            response = await anonymous(world, f"/v1/track/{bad}")
            assert response.status_code in (404, 422), response.text
            if response.status_code == 404:
                assert response.json()["error"]["code"] == "not_found"
        unknown = await anonymous(world, f"/track/{secrets.token_urlsafe(32)}", accept="text/html")
        assert unknown.status_code == 404 and '"ended":"not_found"' in unknown.text

        for status in ("en_route", "arrived", "in_progress", "completed"):
            response = await world.http(
                "POST", f"/v1/calls/{call['id']}/status", doctor_person, json={"status": status}
            )
            assert response.status_code == 200, response.text
        gone = await anonymous(world, api_path)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "link_expired"
        gone_page = await anonymous(world, link["path"], accept="text/html,application/xhtml+xml")
        assert gone_page.status_code == 410 and '"ended":"link_expired"' in gone_page.text
        gone_json = await anonymous(world, link["path"])
        assert gone_json.status_code == 410 and gone_json.json()["error"]["code"] == "link_expired"
        # A final call gets no new link.
        again = await world.http("POST", share, patient)
        assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_transition"
    finally:
        await app.stop()


async def test_a_cancelled_calls_link_is_refused(world: City) -> None:
    patient = world.of_role(Role.PATIENT)[1]
    call = (await world.create_call(patient, *offset(*CENTRE, -40_000))).json()  # nobody near: searching
    link = (await world.http("POST", f"/v1/calls/{call['id']}/share", patient)).json()
    assert (await anonymous(world, f"/v1/track/{link['token']}")).status_code == 200
    cancelled = await world.http("POST", f"/v1/calls/{call['id']}/cancel", patient, json={"reason": "better"})
    assert cancelled.status_code == 200, cancelled.text
    response = await anonymous(world, f"/v1/track/{link['token']}")
    assert response.status_code == 410 and response.json()["error"]["code"] == "link_expired"


async def test_the_app_page_manifest_and_service_worker(world: City) -> None:
    page = await anonymous(world, "/app")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'id="app-config"' in page.text and 'rel="manifest" href="/app/manifest.webmanifest"' in page.text
    manifest = await anonymous(world, "/app/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    body = manifest.json()
    assert body["start_url"] == "/app" and body["scope"] == "/app" and body["display"] == "standalone"
    for icon in body["icons"]:
        assert (await anonymous(world, icon["src"])).status_code == 200
    worker = await anonymous(world, "/app/sw.js")
    assert worker.status_code == 200
    assert worker.headers["content-type"].split(";")[0] in {"text/javascript", "application/javascript"}
    assert worker.headers["service-worker-allowed"] == "/app"
    # Every file the worker caches exists (a missing one would make its install fail).
    shell = worker.text.split("const SHELL = [", 1)[1].split("];", 1)[0]
    for path in [p.strip().strip('",') for p in shell.splitlines() if p.strip()]:
        assert (await anonymous(world, path)).status_code == 200, path


def test_the_track_page_and_worker_paths_exist_on_disk() -> None:
    static = Path(__file__).resolve().parents[2] / "server" / "static"
    assert (static / "track" / "index.html").is_file() and (static / "patient" / "sw.js").is_file()
