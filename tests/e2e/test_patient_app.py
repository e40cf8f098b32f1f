"""The patient's app (``/app``) in a real browser: headless Chromium against a real server process on
the embedded default, the doctor's side driven from the test over the WebSocket and REST (the
project's client), as the doctor's app would.

One patient's afternoon, in file order on one page: sign up; request a doctor at the browser's
(emulated) location; see the offer accepted and the doctor's marker approach with a falling distance
and ETA; share the tracking with a relative, whose page (a second browser context, no account) shows
the live marker; chat both ways; the doctor completes; rate; the relative's link now refuses. Then a
second call: the SOS with its confirmation step (keyboard), and a cancel; the history lists both.
The service worker registers with scope ``/app``. Screenshots go to ``build/console-screenshots/``."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from models.enums import Role
from tests.e2e.apps_browser import PATIENT_DOCTOR_AT, js, until
from tests.e2e.console_browser import ROOT, chromium, screenshot
from tests.e2e.dispatch_world import CENTRE, City, Doctor, Person, city, offset

WAIT_MS = 15_000
SETTINGS = {
    "TOT_CONSOLE_TILE_URL": "off",  # tests never reach the internet
    "TOT_CONSOLE_MAP_VIEW": f"{CENTRE[0]},{CENTRE[1]},14",
}
PATIENT_PASSWORD = "patient-pass-1"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("patient-app"), doctors=1, patients=0, settings=SETTINGS) as c:
        yield c


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture(scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        viewport={"width": 1200, "height": 820},
        locale="en-US",
        geolocation={"latitude": CENTRE[0], "longitude": CENTRE[1], "accuracy": 10},
        permissions=["geolocation"],
    )
    yield ctx
    await ctx.close()


@pytest.fixture(scope="module")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: print(f"page {msg.type}: {msg.text}"))
    yield p
    assert errors == [], f"the page threw: {errors}"


@pytest.fixture(scope="module")
async def doctor(world: City) -> AsyncIterator[Doctor]:
    """The doctor's app: 2 km north of the patient, available."""
    app = world.doctor(world.of_role(Role.DOCTOR)[0], *offset(*CENTRE, 2_000))
    await app.start()
    yield app
    await app.stop()


TRACK_DOCTOR_AT = """([lat, lon]) => {
  const m = window.totTrack && window.totTrack.markers.doctor;
  return !!m && Math.abs(m.getLatLng().lat - lat) < 1e-6 && Math.abs(m.getLatLng().lng - lon) < 1e-6;
}"""


STATE: dict[str, Any] = {"call": None, "email": f"patient-{uuid.uuid4().hex[:8]}@app.test"}
APPROACH = "() => window.totPatient && window.totPatient.approach && window.totPatient.approach.distance_m"
DOCTOR_AT = PATIENT_DOCTOR_AT


async def test_sign_up_and_the_service_worker(world: City, page: Page) -> None:
    await page.goto(f"{world.url}/app")
    await page.wait_for_selector("#signup-form", timeout=WAIT_MS)
    await page.fill("#signup-name", "Anna Petrova")
    await page.fill("#signup-login", STATE["email"])
    await page.fill("#signup-password", PATIENT_PASSWORD)
    await page.click("#signup-submit")
    await page.wait_for_selector("#request:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_selector("#conn.conn-online", timeout=WAIT_MS)
    assert await page.text_content("#me") == "Anna Petrova"
    assert await page.text_content("#history-empty") == "No calls yet."
    session = await js(page, "() => JSON.parse(localStorage.getItem('tot-patient-session'))")
    STATE["patient"] = Person(
        session["user"]["id"], Role.PATIENT, session["tokens"]["access_token"], STATE["email"]
    )
    scope = await js(page, "() => navigator.serviceWorker.ready.then((r) => r.scope)")
    assert scope == f"{world.url}/app"
    assert await js(page, "() => caches.keys()") == ["tot-patient-shell-v4"]


async def test_request_a_doctor_and_watch_the_doctor_approach(
    world: City, page: Page, doctor: Doctor
) -> None:
    await page.fill("#address", "Red Square 1, flat 2")
    await page.click("#locate")
    await page.wait_for_selector("#point-note:has-text('Your location')", timeout=WAIT_MS)
    await page.select_option("#specialty", "therapist")
    await page.fill("#symptoms", "Fever since the morning")
    async with page.expect_request(lambda r: r.url.endswith("/v1/calls") and r.method == "POST") as sent:
        await page.click("#request-submit")
    await page.wait_for_selector("#call:not([hidden])", timeout=WAIT_MS)
    call = await js(page, "() => window.totPatient.call")
    # Sent with a key: an answer lost on a bad network and the request sent again make one call.
    key = (await sent.value).headers.get("idempotency-key", "")
    assert len(key) == 32, key
    STATE["call"] = call["id"]
    assert abs(call["lat"] - CENTRE[0]) < 1e-6 and call["symptoms"] == "Fever since the morning"

    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call["id"])
    await doctor.client.request("offer.accept", offer=offer["offer"])
    await page.wait_for_selector("#call-status[data-status='assigned']", timeout=WAIT_MS)
    await until(page, DOCTOR_AT, [doctor.lat, doctor.lon])
    await until(page, APPROACH)
    first = await js(page, "() => window.totPatient.approach")
    assert 1_900 < first["distance_m"] < 2_100 and first["eta_s"] > 0
    assert await page.is_visible("#call-approach")
    assert "km" in (await page.text_content("#call-distance") or "")

    # The phone loses its network while the doctor sets off: the app says so, and once back it
    # recovers the missed status from the channel's history (offset recovery).
    await page.context.set_offline(True)
    await page.wait_for_selector("#conn.conn-offline", timeout=WAIT_MS)
    response = await world.http(
        "POST", f"/v1/calls/{call['id']}/status", doctor.person, json={"status": "en_route"}
    )
    assert response.status_code == 200, response.text
    assert await js(page, "() => window.totPatient.call.status") == "assigned"
    await page.context.set_offline(False)
    await page.wait_for_selector("#conn.conn-online", timeout=WAIT_MS)
    await page.wait_for_selector("#call-status[data-status='en_route']", timeout=WAIT_MS)
    doctor.lat, doctor.lon = offset(*CENTRE, 600)
    await doctor.fix()
    await until(page, DOCTOR_AT, [doctor.lat, doctor.lon])
    nearer = await js(page, "() => window.totPatient.approach")
    assert nearer["distance_m"] < first["distance_m"] - 1_000 and nearer["eta_s"] < first["eta_s"]
    assert "m" in (await page.text_content("#call-distance") or "")
    assert await page.text_content("#call-doctor") == "Your doctor: Doctor 0"
    await page.reload()  # the app finds its open call again, with the doctor's name
    await page.wait_for_selector("#call-status[data-status='en_route']", timeout=WAIT_MS)
    await page.wait_for_selector("#call-doctor:has-text('Doctor 0')", timeout=WAIT_MS)
    await until(page, DOCTOR_AT, [doctor.lat, doctor.lon])
    await screenshot(page, "patient-approach")
    if os.environ.get("TOT_PATIENT_DOCS_SCREENSHOT"):
        await page.screenshot(path=str(ROOT / "docs" / "patient-app.png"))


async def test_the_share_link_shows_the_doctor_without_an_account(
    world: City, page: Page, browser: Browser, doctor: Doctor
) -> None:
    await page.click("#share")
    await page.wait_for_selector("#share-box:not([hidden])", timeout=WAIT_MS)
    link = await page.input_value("#share-link")
    assert link.startswith(f"{world.url}/track/")
    relative = await browser.new_context(locale="ru-RU")  # no account, another language
    try:
        track = await relative.new_page()
        await track.goto(link)
        await track.wait_for_selector("#track-status[data-status='en_route']", timeout=WAIT_MS)
        assert await track.text_content("#track-status") == "врач в пути"
        await track.wait_for_function(
            TRACK_DOCTOR_AT,
            arg=[doctor.lat, doctor.lon],
            timeout=WAIT_MS,
        )
        doctor.lat, doctor.lon = offset(*CENTRE, 300)
        await doctor.fix()
        await track.wait_for_function(
            "(lat) => Math.abs(window.totTrack.markers.doctor.getLatLng().lat - lat) < 1e-6",
            arg=doctor.lat,
            timeout=WAIT_MS,
        )
        STATE["track"] = link
        STATE["relative"] = relative
        STATE["track_page"] = track
    except BaseException:
        await relative.close()
        raise


async def test_chat_both_ways(world: City, page: Page, doctor: Doctor) -> None:
    call_id = STATE["call"]
    await page.fill("#chat-text", "The door code is 42")
    await page.press("#chat-text", "Enter")
    await page.wait_for_selector("#chat-log li.mine:has-text('The door code is 42')", timeout=WAIT_MS)
    seen = await world.http("GET", f"/v1/calls/{call_id}/messages", doctor.person)
    assert [m["text"] for m in seen.json()["items"]] == ["The door code is 42"]
    sent = await world.http(
        "POST",
        f"/v1/calls/{call_id}/messages",
        doctor.person,
        json={"client_msg_id": "doc-1", "text": "Thank you, five minutes"},
    )
    assert sent.status_code == 201, sent.text
    await page.wait_for_selector(
        "#chat-log li:not(.mine):has-text('Thank you, five minutes')", timeout=WAIT_MS
    )
    assert await page.input_value("#chat-text") == ""


async def test_the_doctor_completes_and_the_patient_rates(world: City, page: Page, doctor: Doctor) -> None:
    call_id = STATE["call"]
    for status in ("arrived", "in_progress"):
        response = await world.http(
            "POST", f"/v1/calls/{call_id}/status", doctor.person, json={"status": status}
        )
        assert response.status_code == 200, response.text
    await page.wait_for_selector("#call-status[data-status='in_progress']", timeout=WAIT_MS)
    assert await page.is_hidden("#cancel")  # the doctor is there: too late to cancel
    response = await world.http(
        "POST",
        f"/v1/calls/{call_id}/status",
        doctor.person,
        json={"status": "completed", "price_final": "2500.00"},
    )
    assert response.status_code == 200, response.text
    await page.wait_for_selector("#rate:not([hidden])", timeout=WAIT_MS)
    assert await page.is_hidden("#call")
    await page.check("input[name=score][value='5']")
    await page.fill("#rate-comment", "Quick and kind")
    await page.click("#rate-submit")
    await page.wait_for_selector("#request:not([hidden])", timeout=WAIT_MS)
    assert await page.text_content("#point-note") == "Thank you for your score!"
    # The score reached the server: a second one is refused.
    again = await world.http("POST", f"/v1/calls/{call_id}/rating", STATE["patient"], json={"score": 1})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rated", again.text

    # The relative's page now says the visit is over; a reload is refused with 410.
    track: Page = STATE["track_page"]
    try:
        await track.wait_for_selector("#ended[data-code='link_expired']:not([hidden])", timeout=WAIT_MS)
        assert await track.text_content("#ended") == "Визит завершён: ссылка больше не действует."
        reloaded = await track.goto(str(STATE["track"]))
        assert reloaded is not None and reloaded.status == 410
        await track.wait_for_selector("#ended[data-code='link_expired']:not([hidden])", timeout=WAIT_MS)
    finally:
        await STATE["relative"].close()


async def test_sos_needs_a_confirmation_and_cancel_ends_the_call(
    world: City, page: Page, doctor: Doctor
) -> None:
    await doctor.stop()  # nobody takes the second call: it stays searching
    await page.fill("#address", "Red Square 3")
    await page.click("#locate")
    await page.wait_for_selector("#point-note:has-text('Your location')", timeout=WAIT_MS)
    await page.click("#request-submit")
    await page.wait_for_selector("#call:not([hidden])", timeout=WAIT_MS)
    call_id = (await js(page, "() => window.totPatient.call"))["id"]
    assert call_id != STATE["call"]
    assert await page.text_content("#chat-log") == ""

    # SOS: the first press only asks; Escape goes back with nothing sent, focus on the SOS button.
    await page.focus("#sos")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#sos-confirm:not([hidden])", timeout=WAIT_MS)
    assert await js(page, "() => document.activeElement.id") == "sos-no"
    await page.keyboard.press("Escape")
    assert await page.is_hidden("#sos-confirm")
    assert await js(page, "() => document.activeElement.id") == "sos"
    alerts = await world.http("GET", "/v1/sos", world.dispatcher)
    assert [a for a in alerts.json()["items"] if a.get("call") == call_id] == []
    await page.keyboard.press("Enter")
    await page.click("#sos-yes")
    await page.wait_for_selector("#call-note:has-text('Emergency sent')", timeout=WAIT_MS)
    alerts = await world.http("GET", "/v1/sos", world.dispatcher)
    mine = [a for a in alerts.json()["items"] if a.get("call") == call_id]
    assert len(mine) == 1 and mine[0]["kind"] == "emergency", alerts.text
    acknowledged = await world.http("POST", f"/v1/sos/{mine[0]['id']}/acknowledge", world.dispatcher)
    assert acknowledged.status_code == 200, acknowledged.text
    await page.wait_for_selector("#call-note:has-text('The dispatcher has seen')", timeout=WAIT_MS)

    await page.click("#cancel")
    await page.wait_for_selector("#cancel-confirm:not([hidden])", timeout=WAIT_MS)
    await page.fill("#cancel-reason", "Feeling better")
    await page.click("#cancel-yes")
    await page.wait_for_selector("#request:not([hidden])", timeout=WAIT_MS)
    assert await page.text_content("#request-error") == "The call was cancelled."
    call = await world.call(call_id)
    assert call["status"] == "cancelled" and call["cancel_reason"] == "Feeling better"

    await page.wait_for_selector("#history li:nth-child(2)", timeout=WAIT_MS)
    statuses = await js(
        page, "() => [...document.querySelectorAll('#history li')].map((li) => li.dataset.status)"
    )
    assert statuses == ["cancelled", "completed"]
    await screenshot(page, "patient-history")


async def test_russian_and_a_reload_keeps_the_session(world: City, page: Page) -> None:
    await page.select_option("#language", "ru")
    assert await page.text_content("#request-submit") == "Вызвать врача"
    await page.reload()
    await page.wait_for_selector("#request:not([hidden])", timeout=WAIT_MS)
    assert await page.text_content("#request-submit") == "Вызвать врача"
    assert await page.text_content("#history li:first-child .status") == "отменён"
    if os.environ.get("TOT_PATIENT_DOCS_SCREENSHOT"):
        await page.screenshot(path=str(ROOT / "docs" / "patient-app-ru.png"))


async def test_a_refused_location_is_said_and_the_map_still_works(world: City, browser: Browser) -> None:
    context = await browser.new_context(locale="en-US")  # no geolocation permission
    try:
        page = await context.new_page()
        await page.goto(f"{world.url}/app")
        # Another patient signs up with a phone number written as people write it.
        digits = f"{secrets.randbelow(10**7):07d}"
        await page.fill("#signup-name", "Ivan Sidorov")
        await page.fill("#signup-login", f"+7 (999) {digits[:3]}-{digits[3:5]}-{digits[5:]}")
        await page.fill("#signup-password", PATIENT_PASSWORD)
        await page.click("#signup-submit")
        await page.wait_for_selector("#request:not([hidden])", timeout=WAIT_MS)
        session = await js(page, "() => JSON.parse(localStorage.getItem('tot-patient-session'))")
        assert session["user"]["phone"] == f"+7999{digits}" and session["user"]["role"] == "patient"
        assert await page.text_content("#history-empty") == "No calls yet."
        await page.click("#locate")
        await page.wait_for_selector("#request-error:has-text('may not use your location')", timeout=WAIT_MS)
        await page.fill("#address", "Tverskaya 7")
        await page.click("#request-submit")  # no point yet: refused in the page, nothing sent
        await page.wait_for_selector("#request-error:has-text('Show on the map')", timeout=WAIT_MS)
        await page.click("#map", position={"x": 300, "y": 300})
        await page.wait_for_selector("#point-note:has-text('Point on the map')", timeout=WAIT_MS)
        assert await js(page, "() => !!window.totPatient.markers.point")
    finally:
        await context.close()
