"""Booked visits read back (issue 20), on SQLite and on PostgreSQL/PostGIS, each on a fresh database with
the app's clock a ManualClock: the doctor's agenda in their time zone and who else may read it, a
patient's upcoming and past visits (their own only), and the doctor's secret ICS feed parsed with
``icalendar`` (one event per visit, UID the call's id, cancelled ones STATUS:CANCELLED, a rotated token
dead at once, each doctor's token showing only their visits)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import icalendar
import pytest

from tests.clock import ManualClock
from tests.conftest import (
    app_client_for,
    create_migrated_pg_database,
    drop_pg_database,
    make_settings,
    migrated_sqlite_url,
)
from tests.helpers import register, staff
from tests.integration.planned_world import MOSCOW, PlannedWorld, ms

MONDAY = dt.date(2027, 3, 1)
BEFORE_MONDAY = dt.datetime(2027, 2, 24, 12, 0, tzinfo=dt.UTC)
MONDAY_HOURS = [{"weekday": 0, "start": "09:00", "end": "13:00"}]
DAY: dict[str, Any] = {"from": "2027-03-01", "days": 1}
LATER: dict[str, Any] = {"from": "2027-03-02", "days": 3}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PlannedWorld]:
    """A fresh database of each dialect with the clinic, its admin and the app on a manual clock."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("agenda") / "tot.db"
        url = await asyncio.to_thread(migrated_sqlite_url, path)
    else:
        url = await create_migrated_pg_database("tot_agenda")
    clock = ManualClock(ms(BEFORE_MONDAY))
    try:
        async with app_client_for(make_settings(url), now=clock.utcnow) as client:
            planned = PlannedWorld(client, url, clock)
            await planned.setup()
            yield planned
    finally:
        if request.param == "postgresql":
            await drop_pg_database(url)


async def doctor_in(world: PlannedWorld, service: str, zone: str = "Europe/Moscow") -> dict[str, Any]:
    doctor = await world.doctor()
    await world.schedule(doctor, time_zone=zone, weekly=MONDAY_HOURS, service_ids=[service])
    return doctor


async def booked(
    world: PlannedWorld, patient: dict[str, Any], service: str, doctor: dict[str, Any], start: str
) -> dict[str, Any]:
    response = await world.book(patient, service, doctor, start, MOSCOW)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def agenda(
    world: PlannedWorld, who: dict[str, Any], doctor: str = "me", **params: Any
) -> httpx.Response:
    return await world.client.get(f"/v1/doctors/{doctor}/agenda", params=params, headers=world.auth(who))


async def test_the_agenda_shows_visits_in_the_doctors_zone(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=40, before=0, after=0)
    doctor = await doctor_in(world, service, "Asia/Yekaterinburg")
    patient = await register(world.client, "patient", full_name="Anna Petrova")
    # Moscow's 10:00 is 12:00 in Yekaterinburg (+05:00): the doctor works 09:00-13:00 on their clock.
    first = await booked(world, patient, service, doctor, "2027-03-01T10:00:00+03:00")
    second = await booked(world, patient, service, doctor, "2027-03-01T08:00:00+03:00")
    response = await agenda(world, doctor, **DAY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["time_zone"] == "Asia/Yekaterinburg" and body["from"] == "2027-03-01" and body["days"] == 1
    assert [i["call_id"] for i in body["items"]] == [second["call_id"], first["call_id"]]  # start order
    item = body["items"][1]
    assert item["start"] == "2027-03-01T12:00:00+05:00" and item["end"] == "2027-03-01T12:40:00+05:00"
    assert item["start_ms"] == first["start_ms"] and item["status"] == "created" and not item["cancelled"]
    assert item["patient_first_name"] == "Anna" and item["address"] == "Test street 1"
    assert item["service"]["id"] == service and item["service"]["duration_min"] == 40
    assert "Petrova" not in response.text and patient["user"]["email"] not in response.text
    # Another day: nothing; the default day is today on the doctor's clock (the Wednesday before).
    assert (await agenda(world, doctor, **LATER)).json()["items"] == []
    today = (await agenda(world, doctor)).json()
    assert today["from"] == "2027-02-24" and today["days"] == 7 and len(today["items"]) == 2
    # A cancelled visit stays in the agenda, marked.
    cancel = await world.client.post(
        f"/v1/bookings/{second['id']}/cancel", json={"reason": "better"}, headers=world.auth(patient)
    )
    assert cancel.status_code == 200, cancel.text
    items = (await agenda(world, doctor, **DAY)).json()["items"]
    assert [(i["call_id"], i["cancelled"], i["status"]) for i in items] == [
        (second["call_id"], True, "cancelled"),
        (first["call_id"], False, "created"),
    ]


async def test_who_may_read_a_doctors_agenda(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service()
    doctor = await doctor_in(world, service)
    other_doctor = await doctor_in(world, service)
    patient = await register(world.client, "patient")
    await booked(world, patient, service, doctor, "2027-03-01T10:00:00+03:00")
    doctor_id = doctor["user"]["id"]
    dispatcher = await staff(world.client, world.database_url, "dispatcher")
    stranger_admin = await staff(world.client, world.database_url, "clinic_admin")
    await world.new_clinic(stranger_admin)
    for reader in (world.admin, world.clinic_admin, dispatcher, doctor):
        response = await agenda(world, reader, doctor_id, **DAY)
        assert response.status_code == 200, response.text
        assert len(response.json()["items"]) == 1
    for reader in (stranger_admin, other_doctor):
        assert (await agenda(world, reader, doctor_id, **DAY)).status_code == 403
    assert (await agenda(world, patient, doctor_id, **DAY)).status_code == 403
    assert (await agenda(world, other_doctor, **DAY)).json()["items"] == []  # their own: empty
    unknown = await agenda(world, world.admin, "00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404
    bad = await agenda(world, doctor, days=0)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "days"
    bad = await agenda(world, doctor, **{"from": "Monday"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "from"


async def test_a_patient_sees_their_upcoming_and_past_visits(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=30, before=0, after=0)
    doctor = await doctor_in(world, service)
    patient = await register(world.client, "patient")
    other = await register(world.client, "patient")
    early = await booked(world, patient, service, doctor, "2027-03-01T09:00:00+03:00")
    late = await booked(world, patient, service, doctor, "2027-03-01T11:00:00+03:00")
    theirs = await booked(world, other, service, doctor, "2027-03-01T12:00:00+03:00")

    async def visits(who: dict[str, Any], scope: str) -> list[str]:
        response = await world.client.get("/v1/bookings", params={"scope": scope}, headers=world.auth(who))
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == scope
        return [i["call_id"] for i in response.json()["items"]]

    assert await visits(patient, "upcoming") == [early["call_id"], late["call_id"]]
    assert await visits(patient, "past") == []
    assert await visits(other, "upcoming") == [theirs["call_id"]]
    first = (await world.client.get("/v1/bookings", headers=world.auth(patient))).json()["items"][0]
    assert first["start"] == "2027-03-01T09:00:00+03:00" and first["time_zone"] == "Europe/Moscow"
    assert first["booking_id"] == early["id"] and first["service"]["price"] == "2500.00"
    # Cancelled: past at once. Over: past once the clock passes its end.
    cancel = await world.client.post(
        f"/v1/bookings/{late['id']}/cancel", json={"reason": "well again"}, headers=world.auth(patient)
    )
    assert cancel.status_code == 200
    assert await visits(patient, "upcoming") == [early["call_id"]]
    past = (await world.client.get("/v1/bookings?scope=past", headers=world.auth(patient))).json()["items"]
    assert [(i["call_id"], i["cancelled"]) for i in past] == [(late["call_id"], True)]
    world.at(dt.datetime(2027, 3, 1, 6, 31, tzinfo=dt.UTC))  # 09:31 in Moscow: the 09:00 visit is over
    assert await visits(patient, "upcoming") == []
    assert await visits(patient, "past") == [late["call_id"], early["call_id"]]  # latest first
    # Only patients, and only their own.
    for reader in (doctor, world.admin):
        assert (await world.client.get("/v1/bookings", headers=world.auth(reader))).status_code == 403
    bad = await world.client.get("/v1/bookings?scope=soon", headers=world.auth(patient))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "scope"
    world.at(BEFORE_MONDAY)


def events(text: bytes) -> dict[str, icalendar.Component]:
    """The feed's events by UID (asserting the document parses and UIDs are unique)."""
    calendar = icalendar.Calendar.from_ical(text)
    found = [c for c in calendar.walk("VEVENT")]
    by_uid = {str(e["UID"]): e for e in found}
    assert len(by_uid) == len(found), "one event per visit"
    return by_uid


async def test_the_ics_feed(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=40, before=10, after=10)
    doctor = await doctor_in(world, service)
    other_doctor = await doctor_in(world, service)
    patient = await register(world.client, "patient", full_name="Boris Ivanov")
    kept = await booked(world, patient, service, doctor, "2027-03-01T10:00:00+03:00")
    dropped = await booked(world, patient, service, doctor, "2027-03-01T12:00:00+03:00")
    theirs = await booked(world, patient, service, other_doctor, "2027-03-01T10:00:00+03:00")
    cancel = await world.client.post(
        f"/v1/bookings/{dropped['id']}/cancel", json={"reason": "no"}, headers=world.auth(patient)
    )
    assert cancel.status_code == 200

    async def token_of(who: dict[str, Any]) -> dict[str, Any]:
        response = await world.client.post("/v1/doctors/me/calendar-token", headers=world.auth(who))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        assert body["path"] == f"/v1/calendar/{body['token']}.ics" and len(body["token"]) == 43
        return body

    mine = await token_of(doctor)
    response = await world.client.get(mine["path"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    assert response.headers["cache-control"] == "no-store"
    found = events(response.content)
    assert set(found) == {kept["call_id"], dropped["call_id"]}
    event = found[kept["call_id"]]
    start = event.decoded("DTSTART")
    assert start == dt.datetime(2027, 3, 1, 7, 0, tzinfo=dt.UTC) and start.utcoffset() == dt.timedelta(0)
    assert event.decoded("DTEND") == dt.datetime(2027, 3, 1, 7, 40, tzinfo=dt.UTC)
    assert str(event["STATUS"]) == "CONFIRMED" and str(event["LOCATION"]) == "Test street 1"
    assert str(event["SUMMARY"]).startswith("Visit ") and str(event["DESCRIPTION"]) == "Boris"
    assert event.decoded("SEQUENCE") == 0
    cancelled = found[dropped["call_id"]]
    assert str(cancelled["STATUS"]) == "CANCELLED" and cancelled.decoded("SEQUENCE") == 1
    assert b"Ivanov" not in response.content and patient["user"]["email"].encode() not in response.content
    # No account needed, and another doctor's token sees only theirs.
    other = await token_of(other_doctor)
    assert set(events((await world.client.get(other["path"])).content)) == {theirs["call_id"]}
    # A move raises SEQUENCE.
    moved = await world.client.post(
        f"/v1/bookings/{kept['id']}/reschedule",
        json={"slot": {"start": "2027-03-01T11:00:00+03:00"}},
        headers=world.auth(patient),
    )
    assert moved.status_code == 200, moved.text
    event = events((await world.client.get(mine["path"])).content)[kept["call_id"]]
    assert event.decoded("DTSTART") == dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC)
    assert event.decoded("SEQUENCE") == 1
    # Rotating kills the old address at once.
    rotated = await token_of(doctor)
    assert rotated["token"] != mine["token"]
    gone = await world.client.get(mine["path"])
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    assert set(events((await world.client.get(rotated["path"])).content)) == {
        kept["call_id"],
        dropped["call_id"],
    }
    assert (await world.client.get("/v1/calendar/not-a-token.ics")).status_code == 404
    # Visits that started more than 30 days ago leave the feed.
    world.at(dt.datetime(2027, 4, 1, 9, 0, tzinfo=dt.UTC))
    assert events((await world.client.get(rotated["path"])).content) == {}
    world.at(BEFORE_MONDAY)
    # Only doctors have a feed.
    refused = await world.client.post("/v1/doctors/me/calendar-token", headers=world.auth(patient))
    assert refused.status_code == 403
