"""The doctor's app (``/doctor``) in a real browser: headless Chromium with an emulated position moved
along a route, against a real server on the embedded default (SQLite, memory engine), then the same
on PostgreSQL with the Redis engine.

The tests run in file order on one signed-in page (like a doctor's shift): sign in and go on shift,
positions reach the server, a patient's call is offered with a countdown and accepted from the
keyboard, the visit runs en route → arrived → in progress with chat both ways (one line sent while the
socket was down and recovered from the channel's history), then completed with a price. Then an offer
expires while the page is hidden and offline; the doctor raises an SOS (with its confirmation step)
that a dispatcher's console shows, sounds and acknowledges; a browser without the location permission
says so; a Russian browser gets the app in Russian. Screenshots go to ``build/doctor-screenshots/``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page

from models.enums import Role
from realtime.client import Event, TotClient
from tests.e2e.apps_browser import deployed_city, geolocation, until
from tests.e2e.console_browser import ROOT, chromium, sign_in
from tests.e2e.dispatch_world import CENTRE, PASSWORD, City, Person, offset

OFFER_TIMEOUT_S = 6
SETTINGS = {
    "TOT_OFFER_TIMEOUT": str(OFFER_TIMEOUT_S),  # short offers: the expiry test waits one out
    "TOT_MAP_FEED_INTERVAL_MS": "300",
    "TOT_CONSOLE_MAP_VIEW": f"{CENTRE[0]},{CENTRE[1]},13",
}
WAIT_MS = 15_000
SCREENSHOTS = ROOT / "build" / "doctor-screenshots"
ROUTE = [offset(*CENTRE, -1_200 + 300 * i, -400 + 100 * i) for i in range(5)]
"""Where the phone is, step by step: 1.2 km south-west of the centre, walking north-east."""
CALL_AT = offset(*CENTRE, 200, 100)


async def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def docs_copy(path: Path, name: str) -> None:
    """With ``TOT_DOCTOR_DOCS_SCREENSHOT=1``, refresh ``docs/<name>`` from a screenshot."""
    if os.environ.get("TOT_DOCTOR_DOCS_SCREENSHOT"):
        shutil.copy(path, ROOT / "docs" / name)


async def new_context(browser: Browser, *, located: bool = True, locale: str = "en-US") -> BrowserContext:
    """A phone-sized context; ``located``: with the geolocation permission and the route's first point."""
    options: dict[str, Any] = {"viewport": {"width": 420, "height": 900}, "locale": locale}
    if located:
        options["geolocation"] = geolocation(*ROUTE[0])
        options["permissions"] = ["geolocation"]
    return await browser.new_context(**options)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    """One doctor and one patient on the embedded default (SQLite, memory engine), then on PostgreSQL
    with the Redis engine."""
    cwd = tmp_path_factory.mktemp("doctor-app")
    with deployed_city(request.param, cwd, SETTINGS, "tot_doctor_app") as c:
        yield c


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture(scope="module")
async def page(world: City, browser: Browser) -> AsyncIterator[Page]:
    context = await new_context(browser)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: print(f"page {msg.type}: {msg.text}"))
    yield page
    await context.close()
    assert errors == [], f"the page threw: {errors}"


def doctor(world: City) -> Person:
    return world.of_role(Role.DOCTOR)[0]


def patient(world: City) -> Person:
    return world.of_role(Role.PATIENT)[0]


async def server_position(world: City) -> tuple[float, float] | None:
    """Where the server has the (only) doctor: the live doctors' box is that one point."""
    body = (await world.http("GET", "/v1/map/extent", world.dispatcher)).json()
    if not body["bbox"]:
        return None
    west, south, _, _ = body["bbox"]
    return south, west


async def wait_position(world: City, lat: float, lon: float) -> None:
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            at = await server_position(world)
            if at and abs(at[0] - lat) < 1e-6 and abs(at[1] - lon) < 1e-6:
                return
            await asyncio.sleep(0.1)


async def set_offline(page: Page, offline: bool) -> None:
    await page.context.set_offline(offline)
    if offline:
        # The app drops its socket on the browser's "offline" event; close it here too in case the
        # event came first or not at all.
        await page.evaluate("() => window.totDoctor.socket.ws && window.totDoctor.socket.ws.close()")
        await page.wait_for_selector("#conn.conn-offline")
    else:
        await page.wait_for_selector("#conn.conn-online", timeout=WAIT_MS)


async def test_installable_manifest_and_service_worker(world: City) -> None:
    async with httpx.AsyncClient(base_url=world.url) as client:
        manifest = await client.get("/doctor/manifest.webmanifest")
        worker = await client.get("/doctor/sw.js")
        page = await client.get("/doctor")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    assert manifest.json()["scope"] == "/doctor" and manifest.json()["start_url"] == "/doctor"
    assert worker.status_code == 200 and worker.headers["service-worker-allowed"] == "/doctor"
    assert 'importScripts("/static/shared/push-sw.js")' in worker.text  # web push (test_push_browser.py)
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="application/json" id="doctor-config">' in page.text


async def test_sign_in_go_on_shift_and_positions_reach_the_server(world: City, page: Page) -> None:
    await page.goto(f"{world.url}/doctor")
    await page.fill("#login-name", patient(world).email)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_selector("#login-error:has-text('This app is for doctors')")

    await sign_in(page, world.url, doctor(world).email, PASSWORD, path="/doctor")
    assert await page.text_content("#me") == "Doctor 0"
    await page.click("#shift-available")
    await page.wait_for_selector("#location-state[data-state='ok']", timeout=WAIT_MS)
    await page.wait_for_selector("#server-status[data-status='available']", timeout=WAIT_MS)
    assert await page.get_attribute("#shift-available", "aria-pressed") == "true"
    # Headless Chromium refuses the wake lock; the app says whether the screen is kept awake.
    wake = "() => ['on', 'refused', 'unsupported'].includes(window.totDoctor.shift.wake.state)"
    await until(page, wake)
    await wait_position(world, *ROUTE[0])
    for lat, lon in ROUTE[1:3]:  # walking: each new position is streamed
        await page.context.set_geolocation(geolocation(lat, lon))
        await wait_position(world, lat, lon)
    # The server rebuilt its live state (as after a Redis restart): the app sends its position and status.
    sent = await page.evaluate("() => window.totDoctor.shift.sent")
    await page.evaluate("() => window.totDoctor.socket._frame({op: 'reannounce', reason: 'engine_reset'})")
    await until(page, "(sent) => window.totDoctor.shift.sent > sent", sent)
    # The service worker took the scope of the page itself.
    scope = await page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
    assert scope == f"{world.url}/doctor"
    await shot(page, "1-on-shift")


async def test_an_offer_counts_down_and_is_accepted_from_the_keyboard(world: City, page: Page) -> None:
    response = await world.create_call(patient(world), *CALL_AT, symptoms="fever since yesterday")
    assert response.status_code == 201, response.text
    call_id = response.json()["id"]
    card = page.locator("#offer[data-state='open']")
    await card.wait_for(timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.id") == "offer"  # the focus moved to it
    assert "fever since yesterday" in (await card.text_content() or "")
    assert "null" not in (await card.text_content() or "")
    first = await page.text_content("#offer .countdown")
    assert first and first.startswith("0:0")
    await until(page, "(first) => document.querySelector('#offer .countdown').textContent !== first", first)
    await shot(page, "2-offer")
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.className") == "primary accept"
    await page.keyboard.press("Enter")

    assigned = await world.wait_status(call_id, {"assigned"})
    assert assigned["doctor_id"] == doctor(world).id
    await page.wait_for_selector(f"#visit[data-call='{call_id}'][data-status='assigned']", timeout=WAIT_MS)
    assert await page.locator("#offer").is_hidden()
    await page.wait_for_selector("#server-status[data-status='busy']", timeout=WAIT_MS)
    href = await page.get_attribute("#nav-osm", "href") or ""
    assert href.startswith("https://www.openstreetmap.org/directions?") and f"{CALL_AT[0]}" in href
    place = f"{CALL_AT[0]},{CALL_AT[1]}"
    assert await page.get_attribute("#nav-geo", "href") == f"geo:{place}?q={place}"


async def current_call(page: Page) -> str:
    call_id = await page.get_attribute("#visit", "data-call")
    assert call_id
    return call_id


async def step(world: City, page: Page, status: str) -> None:
    call_id = await current_call(page)
    await page.click(f"#visit-next[data-next='{status}']")
    await world.wait_status(call_id, {status})
    await page.wait_for_selector(f"#visit[data-status='{status}']", timeout=WAIT_MS)


async def patient_says(world: City, call_id: str, msg_id: str, text: str) -> httpx.Response:
    """The patient's chat line, over REST."""
    body = {"client_msg_id": msg_id, "text": text}
    return await world.http("POST", f"/v1/calls/{call_id}/messages", patient(world), json=body)


MOVING = """([lat, lon]) => window.totDoctor.shift._position({
  coords: { latitude: lat, longitude: lon, accuracy: 5, heading: 90, speed: 3 }, timestamp: Date.now() })"""
"""A fix as a phone in a moving car gives it (Playwright emulates neither heading nor speed), handed to
the app's watchPosition callback."""


async def patient_sees_position(world: City, page: Page, call_id: str) -> dict[str, Any]:
    """The first ``doctor.position`` with a heading the call's patient gets while the app reports the
    moving fix (each forwarded at most once a second of fix time: sent again until one arrives)."""
    seen: list[dict[str, Any]] = []

    async def read(client: TotClient) -> None:
        async for event in client.events():
            if isinstance(event, Event) and event.type == "doctor.position" and event.data["heading"]:
                seen.append(event.data)

    async with TotClient(world.url, patient(world).token) as watcher:
        await watcher.subscribe(f"call:{call_id}")
        reader = asyncio.create_task(read(watcher))
        try:
            async with asyncio.timeout(WAIT_MS / 1000):
                while not seen:
                    await page.evaluate(MOVING, list(ROUTE[3]))
                    await asyncio.sleep(0.3)
        finally:
            reader.cancel()
    return seen[0]


async def test_status_buttons_and_chat_both_ways_across_a_dropped_socket(world: City, page: Page) -> None:
    call_id = await current_call(page)
    await step(world, page, "en_route")
    await page.context.set_geolocation(geolocation(*ROUTE[3]))
    await wait_position(world, *ROUTE[3])
    position = await patient_sees_position(world, page, call_id)
    assert (position["acc"], position["heading"], position["speed"]) == (5, 90, 3)

    await page.fill("#chat-text", "I will be there in ten minutes")
    await page.press("#chat-text", "Enter")
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            lines = (await world.http("GET", f"/v1/calls/{call_id}/messages", patient(world))).json()["items"]
            if [m["text"] for m in lines] == ["I will be there in ten minutes"]:
                break
            await asyncio.sleep(0.1)
    sent = await patient_says(world, call_id, "p-1", "Door code 42")
    assert sent.status_code in (200, 201), sent.text
    await page.wait_for_selector("#chat-lines li.theirs:has-text('Door code 42')", timeout=WAIT_MS)

    # The socket drops; meanwhile the patient writes: the line comes back from the channel's history.
    reloads = await page.evaluate("() => window.totDoctor.visit.reloads")
    await set_offline(page, True)
    await shot(page, "3-offline")
    missed = await patient_says(world, call_id, "p-2", "Third floor")
    assert missed.status_code in (200, 201), missed.text
    await asyncio.sleep(0.5)
    assert await page.locator("#chat-lines li:has-text('Third floor')").count() == 0
    await set_offline(page, False)
    await page.wait_for_selector("#chat-lines li.theirs:has-text('Third floor')", timeout=WAIT_MS)
    assert await page.evaluate("() => window.totDoctor.visit.reloads") == reloads  # recovered, not re-read
    await step(world, page, "arrived")
    await step(world, page, "in_progress")
    assert "null" not in (await page.text_content("#visit") or "")
    await page.context.set_geolocation(geolocation(*ROUTE[4]))
    me = "([lat, lon]) => { const m = window.totDoctor.visit.me; return m && m.getLatLng().lat === lat; }"
    await until(page, me, list(ROUTE[4]))  # the map follows the doctor
    docs_copy(await shot(page, "4-visit"), "doctor-app.png")


async def test_completed_with_the_final_price(world: City, page: Page) -> None:
    call_id = await current_call(page)
    await page.click("#visit-next[data-next='completed']")  # no price yet: refused in the page
    await page.wait_for_selector("#visit .error:has-text('Enter the final price')")
    await page.fill("#visit-price", "2500,50")
    await page.click("#visit-next[data-next='completed']")
    done = await world.wait_status(call_id, {"completed"})
    assert done["price_final"] == "2500.50"
    await page.wait_for_selector("#visit[data-status='completed'] .note:has-text('2500.50')", timeout=WAIT_MS)
    await page.click("#visit-close")
    assert await page.locator("#visit").is_hidden()
    await page.wait_for_selector("#server-status[data-status='available']", timeout=WAIT_MS)


async def test_an_offer_comes_back_after_a_reload_and_is_declined(world: City, page: Page) -> None:
    response = await world.create_call(patient(world), *CALL_AT)
    call_id = response.json()["id"]
    await page.wait_for_selector("#offer[data-state='open']", timeout=WAIT_MS)
    offer_id = await page.get_attribute("#offer", "data-offer")
    await page.reload()  # the phone's browser dropped the tab: the offer is read back over REST
    await page.wait_for_selector(f"#offer[data-state='open'][data-offer='{offer_id}']", timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.id") == "offer"
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.className") == "decline"
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#offer", state="hidden")
    async with asyncio.timeout(WAIT_MS / 1000):
        while True:
            answer = await world.http("GET", f"/v1/calls/{call_id}/offers", world.dispatcher)
            if [o["outcome"] for o in answer.json()["items"]] == ["declined"]:
                break
            await asyncio.sleep(0.1)
    await page.wait_for_selector("#location-state[data-state='ok']", timeout=WAIT_MS)  # the shift resumed


HIDE = """(hidden) => {
  if (hidden) Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
  else delete document.visibilityState;
  document.dispatchEvent(new Event("visibilitychange"));
}"""


async def test_an_offer_that_expired_while_the_app_was_hidden_says_so(world: City, page: Page) -> None:
    response = await world.create_call(patient(world), *CALL_AT)
    call_id = response.json()["id"]
    await page.wait_for_selector("#offer[data-state='open']", timeout=WAIT_MS)
    # The phone goes to sleep: the page is hidden and the network gone, so neither the page's clock
    # nor the server's offer.expired can update the card.
    await page.evaluate(HIDE, True)
    await set_offline(page, True)
    countdown = await page.text_content("#offer .countdown")
    async with asyncio.timeout(OFFER_TIMEOUT_S + 10):
        while True:
            answer = await world.http("GET", f"/v1/calls/{call_id}/offers", world.dispatcher)
            offers = answer.json()["items"]
            if offers and offers[0]["outcome"] == "expired":
                break
            await asyncio.sleep(0.2)
    assert await page.text_content("#offer .countdown") == countdown  # nothing ran while hidden
    await page.evaluate(HIDE, False)
    await page.wait_for_selector("#offer[data-state='expired'] .outcome:has-text('This offer expired')")
    assert await page.locator("#offer .accept").count() == 0
    await shot(page, "5-offer-expired")
    await set_offline(page, False)
    await page.click("#offer .dismiss")
    assert await page.locator("#offer").is_hidden()


async def test_an_sos_is_confirmed_sounded_in_the_console_and_acknowledged(
    world: City, page: Page, browser: Browser
) -> None:
    console_context = await browser.new_context(viewport={"width": 1400, "height": 860}, locale="en-US")
    try:
        console = await console_context.new_page()
        await sign_in(console, world.url, world.dispatcher.email, PASSWORD)

        # The confirmation step, from the keyboard: Escape cancels and gives the focus back.
        await page.focus("#sos-danger")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#sos-confirm:has-text('Send an SOS “DANGER”')")
        assert await page.evaluate("() => document.activeElement.id") == "sos-send"
        await page.keyboard.press("Escape")
        assert await page.locator("#sos-confirm").is_hidden()
        assert await page.evaluate("() => document.activeElement.id") == "sos-danger"
        assert (await world.http("GET", "/v1/sos", world.dispatcher)).json()["items"] == []

        await page.keyboard.press("Enter")
        await page.fill("#sos-message", "aggressive dog")
        await page.focus("#sos-send")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("#sos-status[data-status='open']", timeout=WAIT_MS)
        sos_id = await page.get_attribute("#sos-status", "data-sos")
        item = console.locator(f"#sos-banner .sos-item.open[data-sos='{sos_id}']")
        await item.wait_for(timeout=WAIT_MS)
        assert "aggressive dog" in (await item.text_content() or "")
        await until(console, "() => window.totConsole.sos.alarm.beeps > 0")
        await shot(page, "6-sos-sent")

        await item.locator(".sos-ack").click()
        acknowledged = f"#sos-status[data-sos='{sos_id}'][data-status='acknowledged']"
        await page.wait_for_selector(acknowledged, timeout=WAIT_MS)
        assert "A dispatcher acknowledged" in (await page.text_content("#sos-status") or "")
        docs_copy(await shot(page, "7-sos-acknowledged"), "doctor-app-sos.png")
    finally:
        await console_context.close()


async def test_location_denied_is_shown(world: City, browser: Browser) -> None:
    context = await new_context(browser, located=False)
    try:
        denied = await context.new_page()
        await sign_in(denied, world.url, doctor(world).email, PASSWORD, path="/doctor")
        await denied.click("#shift-available")
        state = "#location-state[data-state='denied']:has-text('Location denied')"
        await denied.wait_for_selector(state, timeout=WAIT_MS)
        assert "Allow location" in (await denied.text_content("#location-help") or "")
        assert await denied.locator("#location-help").is_visible()
        await shot(denied, "8-location-denied")
        await denied.click("#logout")  # off shift, then signed out
        await denied.wait_for_selector("#login-form", timeout=WAIT_MS)
        assert await denied.evaluate("() => localStorage.getItem('tot-doctor-session')") is None
        assert await denied.evaluate("() => localStorage.getItem('tot-doctor-shift')") == "offline"
    finally:
        await context.close()


async def test_a_russian_browser_gets_the_app_in_russian(world: City, browser: Browser) -> None:
    context = await new_context(browser, locale="ru-RU")
    try:
        ru = await context.new_page()
        await ru.goto(f"{world.url}/doctor")
        await ru.wait_for_selector("#login-submit:has-text('Войти')")
        assert await ru.title() == "TOT Dispatch — врач"
        await sign_in(ru, world.url, doctor(world).email, PASSWORD, path="/doctor")
        assert await ru.text_content("#conn") == "на связи"
        assert await ru.text_content("#shift-available") == "На смене"
        await ru.click("#shift-available")
        await ru.wait_for_selector("#location-state[data-state='ok']:has-text('Геолокация')", timeout=WAIT_MS)
        docs_copy(await shot(ru, "9-russian"), "doctor-app-ru.png")
        await ru.click("#shift-offline")
        await ru.select_option("#language", "en")
        await ru.wait_for_selector("#shift-available:has-text('On shift')")
    finally:
        await context.close()


async def test_the_installed_app_opens_offline(world: City, browser: Browser) -> None:
    context = await new_context(browser)
    try:
        app = await context.new_page()
        await sign_in(app, world.url, doctor(world).email, PASSWORD, path="/doctor")
        await until(app, "() => !!navigator.serviceWorker.controller")  # installed, and controls the page
        await context.set_offline(True)
        await app.reload()
        # The shell came from the service worker's cache: the signed-in app, saying it is offline.
        await app.wait_for_selector("#app:not([hidden]) #conn.conn-offline", timeout=WAIT_MS)
        assert await app.text_content("#me") == "Doctor 0"
        assert await app.text_content("#shift-available") == "On shift"  # the catalogue, cached too
        await shot(app, "10-offline-shell")
        await context.set_offline(False)
        await app.wait_for_selector("#conn.conn-online", timeout=WAIT_MS)
    finally:
        await context.close()
