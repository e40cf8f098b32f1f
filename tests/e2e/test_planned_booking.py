"""Planned visits in the browser (issue 20): a patient books tomorrow 10:00 in the patient's app, the
doctor sees it in the doctor's app's agenda and in the calendar feed the app links to, and with the
server's clock moved to the visit's lead time the doctor's app receives the planned call's offer.

A real server process on the embedded default (SQLite, memory engine), then on PostgreSQL with the
Redis engine; headless Chromium (Playwright) with two phones in Moscow's time zone. The server's clock
is moved with the test-only ``TOT_TEST_CLOCK_FILE`` (server/test_clock.py): the offset written to the
file shifts the calls', the bookings' and the offer loop's clock, while the live engine keeps the wall
clock (the phone's fixes stay fresh). The lead time is ``TOT_PLANNED_LEAD_TIME`` (an hour): the step
armed for 09:00 runs once the server's clock reads 09:00 tomorrow. With one doctor on shift the
ordinary search offers the call to the booked doctor.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import pytest
from playwright.async_api import Browser

from models.enums import Role
from tests.e2e.apps_browser import deployed_city, go_on_shift, shot, shows, until, watch_errors
from tests.e2e.console_browser import chromium, sign_in
from tests.e2e.dispatch_world import CENTRE, PASSWORD, City, Person

MOSCOW = ZoneInfo("Europe/Moscow")
LEAD_S = 3600
WAIT_MS = 30_000
SERVICE = "Therapist at home"
HAS_OPTION = "(id) => [...document.querySelectorAll('#book-service option')].some((o) => o.value === id)"


def move_clock(path: Path, offset_s: float) -> None:
    """Set the server's test clock to the wall clock plus ``offset_s`` seconds."""
    path.write_text(f"{offset_s:.3f}", encoding="utf-8")


@pytest.fixture(scope="module")
def clock_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("planned-clock") / "clock"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, clock_file: Path
) -> Iterator[City]:
    """One doctor, one patient, a dispatcher and an admin, the server on the test clock: on the
    embedded default (SQLite, memory engine), then on PostgreSQL with the Redis engine."""
    cwd = tmp_path_factory.mktemp("planned-booking")
    settings = {"TOT_TEST_CLOCK_FILE": str(clock_file), "TOT_PLANNED_LEAD_TIME": str(LEAD_S)}
    with deployed_city(request.param, cwd, settings, "tot_planned_booking") as c:
        yield c


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


def one(world: City, role: Role) -> Person:
    return world.of_role(role)[0]


async def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def open_clinic(world: City) -> str:
    """A clinic with a 40-minute therapist's visit; the doctor joins it and works every day 08:00-20:00
    Moscow time. Returns the service's id."""
    admin, doctor = one(world, Role.ADMIN), one(world, Role.DOCTOR)
    clinic = await ok(await world.http("POST", "/v1/clinics", admin, json={"name": "Home visits"}), 201)
    service = await ok(
        await world.http(
            "POST",
            f"/v1/clinics/{clinic['id']}/services",
            admin,
            json={
                "name": "Therapist at home",
                "specialty": "therapist",
                "duration_min": 40,
                "price": "2500.00",
            },
        ),
        201,
    )
    await ok(await world.http("PATCH", "/v1/doctors/me", doctor, json={"clinic_id": clinic["id"]}))
    weekly = [{"weekday": d, "start": "08:00", "end": "20:00"} for d in range(7)]
    schedule = {"time_zone": "Europe/Moscow", "weekly": weekly, "service_ids": [service["id"]]}
    await ok(await world.http("PUT", f"/v1/doctors/{doctor.id}/schedule", admin, json=schedule))
    service_id: str = service["id"]
    return service_id


async def test_a_booking_reaches_the_agenda_and_the_doctor_is_offered_it_at_lead_time(
    world: City, browser: Browser, clock_file: Path
) -> None:
    service_id = await open_clinic(world)
    patient, doctor = one(world, Role.PATIENT), one(world, Role.DOCTOR)
    # Two phones in Moscow: "tomorrow" is Moscow's tomorrow.
    patient_ctx = await browser.new_context(
        viewport={"width": 420, "height": 1400},
        locale="en-US",
        timezone_id="Europe/Moscow",
        geolocation={"latitude": CENTRE[0], "longitude": CENTRE[1], "accuracy": 10},
        permissions=["geolocation"],
    )
    doctor_ctx = await browser.new_context(
        viewport={"width": 420, "height": 1400},
        locale="en-US",
        timezone_id="Europe/Moscow",
        geolocation={"latitude": CENTRE[0] + 0.01, "longitude": CENTRE[1], "accuracy": 10},
        permissions=["geolocation"],
    )
    try:
        pp = await patient_ctx.new_page()
        dp = await doctor_ctx.new_page()
        errors = watch_errors(pp, "patient") + watch_errors(dp, "doctor")
        # The doctor is on shift, with an empty agenda.
        await sign_in(dp, world.url, doctor.email, PASSWORD, path="/doctor")
        await go_on_shift(dp)
        await shows(dp, "#agenda-days")
        # The patient books tomorrow 10:00.
        await pp.goto(f"{world.url}/app")
        await pp.fill("#login-name", patient.email)
        await pp.fill("#login-password", PASSWORD)
        await pp.click("#login-submit")
        await shows(pp, "#request:not([hidden])")
        await pp.fill("#address", "Tverskaya 1, flat 5")
        await pp.click("#locate")
        await until(pp, "() => !!(window.totPatient && window.totPatient.markers.point)")
        tomorrow = (dt.datetime.now(MOSCOW) + dt.timedelta(days=1)).date()
        assert await pp.input_value("#book-date") == tomorrow.isoformat()
        await until(pp, HAS_OPTION, service_id)
        await pp.select_option("#book-service", service_id)
        await pp.fill("#book-address", "Tverskaya 1, flat 5")
        await pp.click("#book-find")
        ten = f"{tomorrow.isoformat()}T10:00:00+03:00"
        slot = pp.locator(f"#book-slots button[data-start='{ten}']")
        await slot.wait_for(timeout=WAIT_MS)
        await slot.click()
        assert "10:00" in (await pp.text_content("#book-submit") or "")
        await pp.click("#book-submit")
        await until(pp, "() => document.getElementById('book-done').textContent.includes('10:00')")
        upcoming = pp.locator("#visits-upcoming li")
        await upcoming.first.wait_for(timeout=WAIT_MS)
        assert await upcoming.count() == 1
        await shot(pp, "planned-screenshots", "patient-booked")
        # After a reload the booked visit is under "My visits", not the call being followed.
        await pp.reload()
        await shows(pp, "#request:not([hidden])")
        await upcoming.first.wait_for(timeout=WAIT_MS)
        assert await pp.locator("#call").is_hidden() and await upcoming.count() == 1
        call_id = await upcoming.first.get_attribute("data-call")
        assert call_id
        booked = await ok(await world.http("GET", f"/v1/calls/{call_id}", patient))
        start = dt.datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, tzinfo=MOSCOW)
        assert booked["urgency"] == "planned" and booked["status"] == "created"
        assert booked["scheduled_at"] == int(start.timestamp() * 1000)
        assert booked["address"] == "Tverskaya 1, flat 5"

        # The doctor's agenda shows it (first name, service, time on the doctor's clock).
        await dp.click("#agenda-refresh")
        visit = dp.locator(f".agenda-visit[data-call='{call_id}']")
        await visit.wait_for(timeout=WAIT_MS)
        text = await visit.text_content() or ""
        assert "10:00" in text and SERVICE in text and "Patient" in text
        assert await dp.get_attribute(".agenda-day:has(.agenda-visit)", "data-date") == tomorrow.isoformat()

        # The calendar link: the feed parses, the visit's UID is the call's id; a new link kills it.
        await dp.click("#calendar-link")
        link = await dp.locator("#calendar-url").input_value()
        async with httpx.AsyncClient(timeout=30) as http:
            feed = icalendar.Calendar.from_ical((await http.get(link)).content)
            events = list(feed.walk("VEVENT"))
            assert [str(e["UID"]) for e in events] == [call_id]
            assert events[0].decoded("DTSTART") == start.astimezone(dt.UTC)
            await dp.click("#calendar-link")  # a first press only asks
            assert await dp.locator("#calendar-url").input_value() == link
            await dp.click("#calendar-link")
            await until(dp, "(old) => document.getElementById('calendar-url').value !== old", link)
            assert (await http.get(link)).status_code == 404

        await shot(dp, "planned-screenshots", "doctor-agenda")
        # Nothing is offered before the lead time.
        assert await dp.locator("#offer").is_hidden()
        # The server's clock moves to the lead time (09:00 tomorrow, Moscow): the doctor is offered the call.
        offset = (start - dt.timedelta(seconds=LEAD_S) - dt.datetime.now(dt.UTC)).total_seconds() + 2
        await asyncio.to_thread(move_clock, clock_file, offset)
        await dp.locator("#offer[data-state='open']").wait_for(timeout=WAIT_MS)
        offered = await dp.evaluate("() => window.totDoctor.offer.offer.call")
        assert offered["id"] == call_id and offered["urgency"] == "planned"
        assert "Tverskaya 1" in (await dp.text_content("#offer") or "")
        await world.wait_status(call_id, {"offered"})
        await shot(dp, "planned-screenshots", "doctor-offered")
        # The patient cancels it under "My visits" (a second press): the offer is withdrawn, the visit
        # is past and struck through in the agenda, in Russian.
        cancel = pp.locator(f"#visits-upcoming li[data-call='{call_id}'] .visit-cancel")
        await cancel.click()
        await cancel.click()
        await pp.locator(f"#visits-past li[data-call='{call_id}'][data-status='cancelled']").wait_for(
            timeout=WAIT_MS
        )
        await dp.locator("#offer[data-state='withdrawn']").wait_for(timeout=WAIT_MS)
        await dp.select_option("#language", "ru")
        await dp.click("#agenda-refresh")
        await dp.locator(f".agenda-visit.cancelled[data-call='{call_id}']").wait_for(timeout=WAIT_MS)
        assert "Расписание визитов" in (await dp.text_content("#agenda") or "")
        assert (await world.call(call_id))["status"] == "cancelled"
        assert errors == [], errors
    finally:
        await patient_ctx.close()
        await doctor_ctx.close()
        await asyncio.to_thread(move_clock, clock_file, 0)
