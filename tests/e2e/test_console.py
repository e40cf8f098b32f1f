"""The dispatcher console in a real browser: headless Chromium against a real server process with
simulated doctors streaming their positions over WebSockets.

The tests run in file order on one signed-in page (like a dispatcher's shift): sign in, watch a
doctor move, see a new call appear and assign it, acknowledge and resolve an SOS, lose the
connection and get every missed event back. Each step saves a screenshot under
``build/console-screenshots/``; with ``TOT_CONSOLE_DOCS_SCREENSHOT=1`` the SOS step also refreshes
``docs/console.png``. Tests never reach the internet: this server has no street map (zones only).

Then a browser that prefers Russian gets the console in Russian (and switches to English, remembered
over a reload), and a server without zones opens the console on its live doctors; its street map
points at a local port where nothing listens, so every tile fails, and the console works all the same.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Page

from models.enums import Role
from tests.e2e.console_browser import ROOT, chromium, screenshot, sign_in
from tests.e2e.dispatch_world import CENTRE, PASSWORD, City, Doctor, city, offset
from tests.e2e.process import cli

SETTINGS = {
    "TOT_MAP_FEED_INTERVAL_MS": "300",
    "TOT_CONSOLE_MAP_VIEW": f"{CENTRE[0]},{CENTRE[1]},13",
}
FAR_VIEW = "59.9386,30.3141,12"
"""The configured first view of the server without zones: St Petersburg, 630 km from the doctors."""
WAIT_MS = 15_000


def zones_geojson(path: Path) -> Path:
    """Two square zones of ~6 x 6 km side by side around the centre."""
    features = []
    for code, west_m in (("west", -6_000.0), ("east", 0.0)):
        south, west = offset(*CENTRE, -3_000, west_m)
        north, east = offset(*CENTRE, 3_000, west_m + 6_000)
        ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
        features.append(
            {
                "type": "Feature",
                "properties": {"code": code, "name": f"Zone {code}"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    cwd = tmp_path_factory.mktemp("console")
    with city(cwd, doctors=5, patients=2, settings=SETTINGS) as c:
        geojson = str(zones_geojson(cwd / "zones.geojson"))
        result = cli(["zones", "import", geojson, "--code-property", "code"], c.env, cwd)
        assert result.returncode == 0 and "2 created" in result.stdout, result.stdout + result.stderr
        yield c


@pytest.fixture(scope="module")
async def doctors(world: City) -> AsyncIterator[list[Doctor]]:
    """A available at the centre, B 1.5 km north, C 2.5 km east (available), D paused, E offline."""
    people = world.of_role(Role.DOCTOR)
    places = [(0, 0), (1_500, 0), (0, 2_500), (-1_500, -1_000), (-800, -3_000)]
    apps = [world.doctor(p, *offset(*CENTRE, n, e)) for p, (n, e) in zip(people, places, strict=True)]
    for app in apps[:3]:
        await app.start()
    await apps[3].start(available=False)
    await apps[3].client.request("doctor.status", status="paused")
    await apps[4].start(available=False)
    yield apps
    for app in apps:
        await app.stop()


@pytest.fixture(scope="module")
async def page(world: City, doctors: list[Doctor]) -> AsyncIterator[Page]:
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1400, "height": 860}, locale="en-US")
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: print(f"page {msg.type}: {msg.text}"))
        yield page
        assert errors == [], f"the page threw: {errors}"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    """A server without zones whose configured view is far from its doctors."""
    settings = {
        "TOT_MAP_FEED_INTERVAL_MS": "300",
        "TOT_CONSOLE_MAP_VIEW": FAR_VIEW,
        "TOT_CONSOLE_TILE_URL": "http://127.0.0.1:9/{z}/{x}/{y}.png",  # nothing listens: every tile fails
    }
    with city(tmp_path_factory.mktemp("console-bare"), doctors=2, patients=0, settings=settings) as c:
        yield c


async def js(page: Page, expression: str, arg: Any = None) -> Any:
    """Evaluate ``expression`` (a function of ``arg``) in the page."""
    return await page.evaluate(expression, arg)


async def until(page: Page, predicate: str, arg: Any = None, timeout_ms: int = WAIT_MS) -> None:
    """Wait until the JS function ``predicate(arg)`` is truthy in the page."""
    await page.wait_for_function(predicate, arg=arg, timeout=timeout_ms)


IN_VIEW = """(points) => {
  const map = window.totConsole && window.totConsole.map;
  return !!map && points.every(([lat, lon]) => map.getBounds().contains([lat, lon]));
}"""

DOCTOR_AT = """([id, lat, lon, state]) => {
  const d = window.totConsole && window.totConsole.doctors.get(id);
  if (!d) return false;
  const at = d.marker.getLatLng();
  return Math.abs(at.lat - lat) < 1e-5 && Math.abs(at.lng - lon) < 1e-5 && (!state || d.state === state);
}"""


async def test_sign_in_then_zones_and_a_live_socket(world: City, page: Page) -> None:
    await page.goto(f"{world.url}/console")
    await page.fill("#login-name", world.dispatcher.email)
    await page.fill("#login-password", "not the password")
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:has-text('Wrong login or password')")
    patient = world.of_role(Role.PATIENT)[0]
    await page.fill("#login-name", patient.email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:has-text('dispatchers and admins')")

    await sign_in(page, world.url, world.dispatcher.email, PASSWORD)
    await until(page, "() => window.totConsole.zones === 2")
    assert await page.text_content("#me") == "Dispatcher 0 (dispatcher)"
    await screenshot(page, "1-signed-in")


async def test_doctors_appear_by_state_and_a_doctor_moves(page: Page, doctors: list[Doctor]) -> None:
    a, b, c, d, e = doctors
    states = ((a, "available"), (b, "available"), (c, "available"), (d, "paused"), (e, "offline"))
    for doctor, state in states:
        await until(page, DOCTOR_AT, [doctor.id, doctor.lat, doctor.lon, state])
    a.lat, a.lon = offset(*CENTRE, 0, 900)  # its app streams the new place within a second
    await until(page, DOCTOR_AT, [a.id, a.lat, a.lon, "available"])
    # Positions come as one batch per cell per tick (here several doctors in one), not a frame each.
    stats = await js(page, "() => window.totConsole.doctors.stats")
    assert stats["maxEntries"] >= 2
    await screenshot(page, "2-doctor-moved")


async def test_the_first_screen_shows_the_zones_and_every_doctor(page: Page, doctors: list[Doctor]) -> None:
    assert await js(page, "() => window.totConsole.view") == "zones"
    assert await js(page, IN_VIEW, [[d.lat, d.lon] for d in doctors])
    assert await js(page, "() => window.totConsole.map.baseLayer") is None  # tiles off in tests


async def test_a_new_call_appears_and_is_assigned_from_the_ranked_list(
    world: City, page: Page, doctors: list[Doctor]
) -> None:
    a, b, c, *_ = doctors
    patient = world.of_role(Role.PATIENT)[0]
    # Nobody is a pediatrician: the search escalates at once and the call waits for a human.
    response = await world.create_call(patient, *offset(*CENTRE, 600, 300), specialty="pediatrician")
    call_id = response.json()["id"]
    item = page.locator(f"#queue li[data-call='{call_id}']")
    await item.and_(page.locator(".escalated")).wait_for(timeout=WAIT_MS)
    assert await page.locator("#queue li").first.get_attribute("data-call") == call_id
    await page.wait_for_selector(f".call-marker[data-call='{call_id}'][data-status='escalated']")

    await item.click()
    await page.click("#show-candidates")
    await page.wait_for_selector(".detail :text('No available doctor')")
    await page.check(".detail input[type=checkbox]")  # any specialty
    await page.wait_for_selector(f".candidates li[data-doctor='{a.id}']")
    ranked = await page.eval_on_selector_all(".candidates li", "items => items.map(li => li.dataset.doctor)")
    assert ranked == [a.id, b.id, c.id]  # 849 m, 949 m, 2,280 m from the call
    await page.click(f".candidates li[data-doctor='{a.id}'] button")

    assigned = await world.wait_status(call_id, {"assigned"})
    assert assigned["doctor_id"] == a.id
    await a.wait_for("call.assigned", lambda data: data["call"]["id"] == call_id)
    await item.and_(page.locator(".assigned")).wait_for(timeout=WAIT_MS)
    await until(page, DOCTOR_AT, [a.id, a.lat, a.lon, "busy"])
    await page.wait_for_selector(".timeline li:has-text('escalated → assigned')")
    await screenshot(page, "3-call-assigned")


async def test_an_sos_cannot_be_missed_and_is_acknowledged_then_resolved(
    world: City, page: Page, doctors: list[Doctor]
) -> None:
    raiser = doctors[1]
    ack = await raiser.client.request(
        "sos", kind="danger", lat=raiser.lat, lon=raiser.lon, message="aggressive dog"
    )
    sos_id = ack["sos"]["id"]
    item = page.locator(f"#sos-banner .sos-item.open[data-sos='{sos_id}']")
    await item.wait_for(timeout=WAIT_MS)
    await page.wait_for_selector(f".sos-marker[data-sos='{sos_id}']")
    await until(page, "() => window.totConsole.sos.alarm.beeps > 0")
    assert "aggressive dog" in (await item.text_content() or "")
    shot = await screenshot(page, "4-sos")
    if os.environ.get("TOT_CONSOLE_DOCS_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "console.png")

    await item.locator(".sos-ack").click()
    assert (await raiser.wait_for("sos.acknowledged"))["id"] == sos_id
    acknowledged = page.locator(f"#sos-banner .sos-item.acknowledged[data-sos='{sos_id}']")
    await acknowledged.wait_for(timeout=WAIT_MS)
    beeps = await js(page, "() => window.totConsole.sos.alarm.beeps")
    await asyncio.sleep(2.5)  # the alarm stops once nothing is unacknowledged
    assert await js(page, "() => window.totConsole.sos.alarm.beeps") == beeps

    await acknowledged.locator("input").fill("dog owner came")
    await acknowledged.locator(".sos-resolve").click()
    await page.wait_for_selector("#sos-banner", state="hidden")
    alert = (await world.http("GET", f"/v1/sos/{sos_id}", world.dispatcher)).json()
    assert alert["status"] == "resolved" and alert["resolution_note"] == "dog owner came"
    assert alert["acknowledged_by"] == world.dispatcher.id


async def _go_offline(page: Page) -> None:
    await page.context.set_offline(True)
    # The page drops its socket on the browser's "offline" event; close it here too in case the
    # event came first or not at all.
    await js(page, "() => window.totConsole.socket.ws && window.totConsole.socket.ws.close()")
    await page.wait_for_selector("#conn.conn-offline")
    await page.wait_for_selector("#conn:has-text('offline')")


async def test_reconnects_by_itself_and_recovers_missed_calls(world: City, page: Page) -> None:
    patient = world.of_role(Role.PATIENT)[1]
    reloads = await js(page, "() => window.totConsole.calls.reloads")

    # 1. Offline for a while: the call created meanwhile comes back from the channel's history.
    await _go_offline(page)
    await screenshot(page, "5-offline")
    missed = (await world.create_call(patient, *offset(*CENTRE, -500, 500), specialty="pediatrician")).json()
    await asyncio.sleep(1.0)
    assert await page.locator(f"#queue li[data-call='{missed['id']}']").count() == 0
    await page.context.set_offline(False)
    await page.wait_for_selector("#conn.conn-online", timeout=WAIT_MS)
    await page.wait_for_selector(f"#queue li[data-call='{missed['id']}']", timeout=WAIT_MS)
    assert await js(page, "() => window.totConsole.calls.reloads") == reloads  # recovered, not re-read

    # 2. History cannot fill the gap (here: an epoch the server never had): the page re-reads REST.
    await _go_offline(page)
    lost = (await world.create_call(patient, *offset(*CENTRE, -700, 900), specialty="pediatrician")).json()
    await js(
        page,
        "() => { window.totConsole.socket.channels.get('dispatch').position = "
        "{offset: 1, epoch: 'ffffffffffffffff'}; }",
    )
    await page.context.set_offline(False)
    await page.wait_for_selector(f"#queue li[data-call='{lost['id']}']", timeout=WAIT_MS)
    assert await js(page, "() => window.totConsole.calls.reloads") == reloads + 1


async def test_a_russian_browser_gets_the_console_in_russian(world: City, page: Page) -> None:
    assert page.context.browser is not None
    context = await page.context.browser.new_context(viewport={"width": 1400, "height": 860}, locale="ru-RU")
    errors: list[str] = []
    try:
        ru = await context.new_page()
        ru.on("pageerror", lambda exc: errors.append(str(exc)))
        await ru.goto(f"{world.url}/console")
        await ru.wait_for_selector("#login-submit:has-text('Войти')")
        assert await ru.get_attribute("html", "lang") == "ru"
        assert await ru.title() == "TOT Dispatch — пульт диспетчера"
        await ru.fill("#login-name", world.dispatcher.email)
        await ru.fill("#login-password", "not the password")
        await ru.click("#login-submit")
        await ru.wait_for_selector("#login-error:has-text('Неверный логин или пароль')")

        await sign_in(ru, world.url, world.dispatcher.email, PASSWORD)
        assert await ru.text_content("#conn") == "на связи"
        assert await ru.text_content(".panel h2") == "Очередь вызовов"
        assert await ru.text_content("#me") == "Dispatcher 0 (диспетчер)"
        assert await ru.text_content("#logout") == "Выйти"
        await ru.wait_for_selector(".legend :text('свободен')")
        await ru.wait_for_selector("#queue li .status:has-text('нужен диспетчер')")  # the escalated calls
        await until(ru, "() => document.getElementById('counts').textContent.includes('на карте')")
        shot = await screenshot(ru, "6-russian")
        if os.environ.get("TOT_CONSOLE_DOCS_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "console-ru.png")

        # Switched to English in the page: everything drawn changes at once, and the choice is kept.
        await ru.select_option("#language", "en")
        await ru.wait_for_selector(".panel h2:has-text('Work queue')")
        assert await ru.text_content("#conn") == "live"
        await ru.wait_for_selector("#queue li .status:has-text('escalated')")
        await ru.wait_for_selector(".legend :text('available')")
        await ru.reload()
        await ru.wait_for_selector("#conn.conn-online", timeout=WAIT_MS)
        assert await ru.text_content(".panel h2") == "Work queue"
        assert await ru.get_attribute("html", "lang") == "en"
    finally:
        await context.close()
    assert errors == [], f"the page threw: {errors}"


async def test_without_zones_the_console_opens_where_the_doctors_are(bare: City, page: Page) -> None:
    assert page.context.browser is not None
    context = await page.context.browser.new_context(viewport={"width": 1400, "height": 860})
    places = [(-2_000, -3_000), (2_500, 4_000)]  # metres north and east of the centre
    people = bare.of_role(Role.DOCTOR)
    apps = [bare.doctor(p, *offset(*CENTRE, n, e)) for p, (n, e) in zip(people, places, strict=True)]
    points = [[app.lat, app.lon] for app in apps]
    try:
        # No zones and no doctor yet (a demo's fleet still signing in): the configured view, asked again
        # every few seconds.
        first = await context.new_page()
        await sign_in(first, bare.url, bare.dispatcher.email, PASSWORD)
        await until(first, "() => window.totConsole.view === 'configured'")
        assert not await js(first, IN_VIEW, points)
        for app in apps:
            await app.start()
        await until(first, IN_VIEW, points)
        assert await js(first, "() => window.totConsole.view") == "doctors"
        for app in apps:
            await until(first, DOCTOR_AT, [app.id, app.lat, app.lon, "available"])
        # No tile could load (nothing listens there), and the map works all the same.
        assert await js(first, "() => window.totConsole.map.tileErrors") > 0
        await screenshot(first, "7-no-zones-doctors")

        # A console opened now starts on the doctors.
        second = await context.new_page()
        await sign_in(second, bare.url, bare.dispatcher.email, PASSWORD)
        await until(second, "() => window.totConsole.view === 'doctors'")
        assert await js(second, IN_VIEW, points)
    finally:
        await context.close()
        for app in apps:
            await app.stop()
