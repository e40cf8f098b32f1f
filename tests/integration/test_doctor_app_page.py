"""The doctor's app as the server serves it (docs/doctor-app.md): the page with its settings block,
the service worker allowed to control ``/doctor``, the manifest, and the app's static files. The app
itself is tested in a browser by tests/e2e/test_doctor_app.py."""

from __future__ import annotations

import httpx
import orjson

from server.console_assets import PACKAGES, installed
from server.routes.doctor_app import DOCTOR_DIR, Manifest
from tests.helpers import bearer, register


async def test_the_page_carries_its_settings_and_the_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/doctor")
    if not all(installed(p) for p in PACKAGES):  # a checkout without Leaflet: the console's 503
        assert response.status_code == 503 and "console_assets" in response.text
        return
    assert response.status_code == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    opening = '<script type="application/json" id="doctor-config">'
    start = response.text.index(opening) + len(opening)
    config = orjson.loads(response.text[start : response.text.index("</script>", start)])
    assert config["staleAfterS"] == 30 and config["heartbeatS"] == 15  # TOT_DOCTOR_OFFLINE_AFTER 60 s
    assert "<!--doctor-config-->" not in response.text


async def test_the_service_worker_may_control_the_page_and_the_manifest_names_it(
    client: httpx.AsyncClient,
) -> None:
    worker = await client.get("/doctor/sw.js")
    assert worker.status_code == 200
    assert worker.headers["content-type"].startswith("text/javascript")
    assert worker.headers["service-worker-allowed"] == "/doctor"
    manifest = await client.get("/doctor/manifest.webmanifest")
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    data = manifest.json()
    Manifest.model_validate(data, strict=True)  # as the OpenAPI document says
    assert (data["scope"], data["start_url"], data["display"]) == ("/doctor", "/doctor", "standalone")


async def test_every_file_the_offline_shell_caches_is_served(client: httpx.AsyncClient) -> None:
    worker = (DOCTOR_DIR / "sw.js").read_text(encoding="utf-8")
    shell = worker[worker.index("const SHELL = [") : worker.index("];")]
    paths = [line.strip().strip('",') for line in shell.splitlines()[1:] if line.strip()]
    assert "/doctor/static/js/main.js" in paths and "/static/i18n/ru.json" in paths
    # Every module of the app is in the shell (a new one forgotten there would break offline starts).
    modules = {f"/doctor/static/js/{p.name}" for p in (DOCTOR_DIR / "js").glob("*.js")}
    assert modules <= set(paths)
    for path in paths:
        if path.startswith("/static/vendor/") and not all(installed(p) for p in PACKAGES):
            continue
        response = await client.get(path)
        expected = {200, 503} if path == "/doctor" else {200}  # the page: 503 without Leaflet
        assert response.status_code in expected, path


async def test_open_offers_are_the_doctors_own(client: httpx.AsyncClient) -> None:
    doctor = await register(client, "doctor")
    mine = await client.get("/v1/offers/open", headers=bearer(doctor["tokens"]["access_token"]))
    assert (mine.status_code, mine.json()) == (200, {"items": []})
    patient = await register(client)
    refused = await client.get("/v1/offers/open", headers=bearer(patient["tokens"]["access_token"]))
    assert refused.status_code == 403
    assert (await client.get("/v1/offers/open")).status_code == 401
