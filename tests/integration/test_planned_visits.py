"""Planned visits through the REST API (issue 20), on SQLite and on PostgreSQL/PostGIS, each test module
on a fresh database with the app's clock a ManualClock: slots around booked visits with buffers and
travel, local hours in the doctor's zone and across daylight saving, notice, horizon and the grid,
concurrent bookings of one slot, the daily limit, cancel and reschedule, refusals naming the field."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from tests.integration.planned_world import BERLIN, MOSCOW, YEKATERINBURG, PlannedWorld, ms

MSK = ZoneInfo("Europe/Moscow")
MONDAY = dt.date(2027, 3, 1)
"""A Monday; the clock stands on the Wednesday before at noon UTC."""
BEFORE_MONDAY = dt.datetime(2027, 2, 24, 12, 0, tzinfo=dt.UTC)
MONDAY_HOURS = [{"weekday": 0, "start": "09:00", "end": "13:00"}]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PlannedWorld]:
    """A fresh database of each dialect with the clinic, its admin and the app on a manual clock."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("planned") / "tot.db"
        url = await asyncio.to_thread(migrated_sqlite_url, path)
    else:
        url = await create_migrated_pg_database("tot_planned")
    clock = ManualClock(ms(BEFORE_MONDAY))
    try:
        async with app_client_for(make_settings(url), now=clock.utcnow) as client:
            planned = PlannedWorld(client, url, clock)
            await planned.setup()
            yield planned
    finally:
        if request.param == "postgresql":
            await drop_pg_database(url)


def local(text: str, zone: ZoneInfo = MSK) -> dt.datetime:
    """An ISO time with offset, seen in ``zone``."""
    return dt.datetime.fromisoformat(text).astimezone(zone)


def starts(slots: dict[str, Any], doctor: dict[str, Any]) -> list[str]:
    """The local ``HH:MM`` starts of ``doctor``'s slots."""
    return [s["start"][11:16] for s in slots["items"] if s["doctor_id"] == doctor["user"]["id"]]


async def moscow_doctor(world: PlannedWorld, service: str, **schedule: Any) -> dict[str, Any]:
    doctor = await world.doctor()
    body: dict[str, Any] = {"time_zone": "Europe/Moscow", "weekly": MONDAY_HOURS, "service_ids": [service]}
    body.update(schedule)
    await world.schedule(doctor, **body)
    return doctor


async def test_buffers_keep_slots_clear_of_a_booked_visit(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=40, before=10, after=10)
    doctor = await moscow_doctor(world, service)
    patient = await register(world.client, "patient")
    before = await world.slots(service, MOSCOW, MONDAY.isoformat())
    assert before["time_zone"] == "Europe/Moscow"
    free = starts(before, doctor)
    assert free[0] == "09:00" and "10:00" in free and free[-1] == "12:15"  # 12:15 + 40 min = 12:55 <= 13:00
    response = await world.book(patient, service, doctor, "2027-03-01T10:00:00+03:00", MOSCOW)
    assert response.status_code == 201, response.text
    booking = response.json()
    assert booking["start"] == "2027-03-01T10:00:00+03:00" and booking["end"] == "2027-03-01T10:40:00+03:00"
    held = (
        local(booking["start"]) - dt.timedelta(minutes=10),
        local(booking["end"]) + dt.timedelta(minutes=10),
    )
    assert booking["held_from_ms"] == ms(held[0]) and booking["held_until_ms"] == ms(held[1])
    assert booking["call"]["urgency"] == "planned" and booking["call"]["scheduled_at"] == booking["start_ms"]
    after = await world.slots(service, MOSCOW, MONDAY.isoformat())
    mine = [s for s in after["items"] if s["doctor_id"] == doctor["user"]["id"]]
    assert mine, "the rest of the morning is still free"
    for slot in mine:  # a new visit's own hold (buffers around it) must not touch 09:50-10:50
        own_from = local(slot["start"]) - dt.timedelta(minutes=10)
        own_until = local(slot["end"]) + dt.timedelta(minutes=10)
        assert own_until <= held[0] or own_from >= held[1], slot
    assert "09:00" in starts(after, doctor) and "11:00" in starts(after, doctor)
    assert "09:15" not in starts(after, doctor) and "10:45" not in starts(after, doctor)


async def test_a_doctor_in_yekaterinburg_gets_local_hours(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=30, before=0, after=0)
    doctor = await world.doctor()
    # The doctor sets their own schedule ("me") and reads it back.
    own = await world.client.put(
        "/v1/doctors/me/schedule",
        json={"time_zone": "Asia/Yekaterinburg", "weekly": MONDAY_HOURS, "service_ids": [service]},
        headers=world.auth(doctor),
    )
    assert own.status_code == 200, own.text
    read = (await world.client.get("/v1/doctors/me/schedule", headers=world.auth(doctor))).json()
    assert read["time_zone"] == "Asia/Yekaterinburg" and read["weekly"] == MONDAY_HOURS
    assert read["service_ids"] == [service] and read["doctor_id"] == doctor["user"]["id"]
    found = await world.slots(service, YEKATERINBURG, MONDAY.isoformat())
    assert found["time_zone"] == "Asia/Yekaterinburg"
    mine = [s for s in found["items"] if s["doctor_id"] == doctor["user"]["id"]]
    assert mine[0]["start"] == "2027-03-01T09:00:00+05:00"
    assert mine[0]["start_ms"] == ms(dt.datetime(2027, 3, 1, 4, 0, tzinfo=dt.UTC))
    assert mine[-1]["end"] == "2027-03-01T13:00:00+05:00"


async def test_daylight_saving_day_in_berlin(world: PlannedWorld) -> None:
    world.at(dt.datetime(2027, 3, 20, 12, 0, tzinfo=dt.UTC))
    service = await world.service(duration=60, before=0, after=0)
    doctor = await world.doctor()
    every_day = [{"weekday": d, "start": "09:00", "end": "13:00"} for d in range(7)]
    # The clocks go forward at 02:00 on Sunday 2027-03-28 (the last Sunday of March): 01:00-05:00 that
    # night is three real hours, and 02:xx does not exist.
    night = [{"date": "2027-03-28", "start": "01:00", "end": "05:00"}]
    await world.schedule(
        doctor, time_zone="Europe/Berlin", weekly=every_day, exceptions=night, service_ids=[service]
    )
    found = await world.slots(service, BERLIN, "2027-03-27", "2027-03-28")
    assert found["time_zone"] == "Europe/Berlin"
    mine = [s for s in found["items"] if s["doctor_id"] == doctor["user"]["id"]]
    by_day = Counter(s["start"][:10] for s in mine)
    saturday = [s for s in mine if s["start"].startswith("2027-03-27")]
    sunday = [s for s in mine if s["start"].startswith("2027-03-28")]
    assert saturday[0]["start"] == "2027-03-27T09:00:00+01:00"
    assert saturday[0]["start_ms"] == ms(dt.datetime(2027, 3, 27, 8, 0, tzinfo=dt.UTC))
    sunday_morning = [s for s in sunday if s["start"][11:13] >= "09"]
    assert sunday_morning[0]["start"] == "2027-03-28T09:00:00+02:00"
    assert sunday_morning[0]["start_ms"] == ms(dt.datetime(2027, 3, 28, 7, 0, tzinfo=dt.UTC))
    night_starts = [s["start"][11:16] for s in sunday if s["start"][11:13] < "09"]
    # 01:00-01:45 (CET), none in 02:xx, 03:00-04:00 (CEST); each ends by 05:00 local (03:00 UTC).
    assert night_starts == ["01:00", "01:15", "01:30", "01:45", "03:00", "03:15", "03:30", "03:45", "04:00"]
    assert all(
        s["end_ms"] <= ms(dt.datetime(2027, 3, 28, 3, 0, tzinfo=dt.UTC))
        for s in sunday
        if s["start"][11:13] < "09"
    )
    assert by_day["2027-03-27"] == by_day["2027-03-28"] - len(night_starts) == 13


@pytest.mark.parametrize(
    ("start", "why"),
    [
        ("2027-03-01T09:07:00+03:00", "not on the slot grid"),
        ("2027-03-01T13:00:00+03:00", "outside the doctor's working hours"),
        ("2027-03-01T12:30:00+03:00", "outside the doctor's working hours"),  # ends 13:10
        ("2027-03-01T09:00:00+03:00", "before the doctor's minimum notice"),
        ("2027-04-05T09:00:00+03:00", "beyond the booking horizon"),
    ],
)
async def test_a_slot_off_offer_is_absent_and_refused(world: PlannedWorld, start: str, why: str) -> None:
    # The clock: Monday 08:00 local, so a 120-minute notice leaves 09:00 and 09:45 out, 10:00 in.
    world.at(dt.datetime(2027, 3, 1, 5, 0, tzinfo=dt.UTC))
    service = await world.service(duration=40, before=0, after=0)
    doctor = await moscow_doctor(world, service, min_notice_min=120)
    when = local(start)
    found = await world.slots(service, MOSCOW, when.date().isoformat())
    assert when.strftime("%H:%M") not in starts(found, doctor)
    if why == "before the doctor's minimum notice":
        assert starts(found, doctor)[0] == "10:00"
    patient = await register(world.client, "patient")
    response = await world.book(patient, service, doctor, start, MOSCOW)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "slot.start" and why in error["message"]


async def test_twenty_bookings_of_one_slot_one_wins(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service()
    doctor = await moscow_doctor(world, service)
    patients = [await register(world.client, "patient") for _ in range(20)]
    start = "2027-03-01T11:00:00+03:00"
    answers = await asyncio.gather(
        *(world.book(p, service, doctor, start, MOSCOW, key=f"k-{i}") for i, p in enumerate(patients))
    )
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 409: 19}, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"slot_taken"}
    assert all(r.json()["error"]["message_ru"] for r in answers if r.status_code == 409)
    winner = next(i for i, r in enumerate(answers) if r.status_code == 201)
    again = await world.book(patients[winner], service, doctor, start, MOSCOW, key=f"k-{winner}")
    assert again.status_code == 200, again.text
    assert again.json()["call_id"] == answers[winner].json()["call_id"]
    assert again.json()["id"] == answers[winner].json()["id"]


async def test_daily_limit(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=30, before=0, after=0)
    doctor = await moscow_doctor(world, service, daily_limit=2)
    patient = await register(world.client, "patient")
    for start in ("09:00", "10:00"):
        response = await world.book(patient, service, doctor, f"2027-03-01T{start}:00+03:00", MOSCOW)
        assert response.status_code == 201, response.text
    full = await world.book(patient, service, doctor, "2027-03-01T11:00:00+03:00", MOSCOW)
    assert full.status_code == 409 and full.json()["error"]["code"] == "daily_limit_reached", full.text
    assert starts(await world.slots(service, MOSCOW, MONDAY.isoformat()), doctor) == []


async def test_travel_between_places_eight_km_apart(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=40, before=10, after=10)
    doctor = await moscow_doctor(world, service)
    patient = await register(world.client, "patient")
    first = await world.book(patient, service, doctor, "2027-03-01T09:00:00+03:00", MOSCOW)
    assert first.status_code == 201, first.text
    # 8 km north: 8000 m x 1.4 / (30 km/h) = 1344 s, 23 minutes rounded up; the first hold ends 09:50,
    # so the next visit's buffer may start at 10:13 at the earliest: 10:30 on the 15-minute grid.
    far = (MOSCOW[0] + 8000 / 111_195, MOSCOW[1])
    far_starts = starts(await world.slots(service, far, MONDAY.isoformat()), doctor)
    assert "10:00" not in far_starts and "10:15" not in far_starts and "10:30" in far_starts
    assert "10:00" in starts(await world.slots(service, MOSCOW, MONDAY.isoformat()), doctor)
    back_to_back = await world.book(patient, service, doctor, "2027-03-01T10:00:00+03:00", far)
    assert back_to_back.status_code == 409 and back_to_back.json()["error"]["code"] == "slot_taken"
    later = await world.book(patient, service, doctor, "2027-03-01T10:30:00+03:00", far)
    assert later.status_code == 201, later.text
    assert later.json()["travel_in_s"] == 23 * 60
    assert later.json()["held_from_ms"] == ms(local("2027-03-01T10:30:00+03:00") - dt.timedelta(minutes=33))


async def test_cancel_frees_and_a_reschedule_into_a_taken_slot_keeps_the_original(
    world: PlannedWorld,
) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service(duration=40, before=10, after=10)
    doctor = await moscow_doctor(world, service)
    patient = await register(world.client, "patient")
    auth = world.auth(patient)
    first = (await world.book(patient, service, doctor, "2027-03-01T10:00:00+03:00", MOSCOW)).json()
    cancelled = await world.client.post(
        f"/v1/bookings/{first['id']}/cancel", json={"reason": "better"}, headers=auth
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["active"] is False and cancelled.json()["call"]["status"] == "cancelled"
    assert "10:00" in starts(await world.slots(service, MOSCOW, MONDAY.isoformat()), doctor)
    gone = await world.client.post(
        f"/v1/bookings/{first['id']}/reschedule",
        json={"slot": {"start": "2027-03-01T11:00:00+03:00"}},
        headers=auth,
    )
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "invalid_transition", gone.text
    # Cancelling the call itself (the life cycle's own endpoint) releases its booking too.
    second = (await world.book(patient, service, doctor, "2027-03-01T10:00:00+03:00", MOSCOW)).json()
    call_cancel = await world.client.post(
        f"/v1/calls/{second['call_id']}/cancel", json={"reason": "x"}, headers=auth
    )
    assert call_cancel.status_code == 200, call_cancel.text
    assert (await world.client.get(f"/v1/bookings/{second['id']}", headers=auth)).json()["active"] is False
    taken = (await world.book(patient, service, doctor, "2027-03-01T10:00:00+03:00", MOSCOW)).json()
    mine = (await world.book(patient, service, doctor, "2027-03-01T12:00:00+03:00", MOSCOW)).json()
    refused = await world.client.post(
        f"/v1/bookings/{mine['id']}/reschedule",
        json={"slot": {"start": "2027-03-01T10:15:00+03:00"}},
        headers=auth,
    )
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "slot_taken", refused.text
    kept = (await world.client.get(f"/v1/bookings/{mine['id']}", headers=auth)).json()
    assert kept["start"] == "2027-03-01T12:00:00+03:00" and kept["active"] is True
    assert kept["call"]["scheduled_at"] == mine["call"]["scheduled_at"]
    misaligned = await world.client.post(
        f"/v1/bookings/{mine['id']}/reschedule",
        json={"slot": {"start": "2027-03-01T11:05:00+03:00"}},
        headers=auth,
    )
    assert misaligned.status_code == 422 and misaligned.json()["error"]["field"] == "slot.start"
    moved = await world.client.post(
        f"/v1/bookings/{mine['id']}/reschedule",
        json={"slot": {"start": "2027-03-01T11:00:00+03:00"}},
        headers=auth,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["start"] == "2027-03-01T11:00:00+03:00"
    assert moved.json()["call"]["scheduled_at"] == moved.json()["start_ms"]
    free = starts(await world.slots(service, MOSCOW, MONDAY.isoformat()), doctor)
    assert "12:00" in free and "11:00" not in free and "10:00" not in free
    assert taken["active"] is True


async def test_bad_input_names_the_field(world: PlannedWorld) -> None:
    world.at(BEFORE_MONDAY)
    service = await world.service()
    pediatric = await world.service(specialty="pediatrician")
    doctor = await world.doctor()
    base: dict[str, Any] = {"time_zone": "Europe/Moscow", "weekly": MONDAY_HOURS, "service_ids": [service]}

    async def refused(
        field: str, who: dict[str, Any] | None = None, target: dict[str, Any] | None = None, **change: Any
    ) -> None:
        response = await world.put_schedule(target or doctor, by=who, **{**base, **change})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field, response.text

    await refused("service_ids.1", service_ids=[service, "00000000-0000-4000-8000-000000000000"])
    await refused("service_ids.0", service_ids=[pediatric])  # a specialty the doctor lacks
    await refused("weekly.0.end", weekly=[{"weekday": 0, "start": "13:00", "end": "09:00"}])
    await refused(
        "weekly.1",
        weekly=[
            {"weekday": 0, "start": "09:00", "end": "13:00"},
            {"weekday": 0, "start": "12:00", "end": "14:00"},
        ],
    )
    await refused("time_zone", time_zone="Mars/Olympus")
    await refused("time_zone", time_zone="+03:00")
    await refused("doctor_id", target=await world.doctor(verified=False))
    # A clinic admin on another clinic's doctor: 403; on their own clinic's service list too.
    other_admin = await staff(world.client, world.database_url, "clinic_admin")
    await world.new_clinic(other_admin)
    forbidden = await world.put_schedule(doctor, by=other_admin, **base)
    assert forbidden.status_code == 403, forbidden.text
    foreign = await world.client.post(
        f"/v1/clinics/{world.clinic_id}/services",
        json={"name": "x", "specialty": "therapist", "duration_min": 30, "price": "1.00"},
        headers=world.auth(other_admin),
    )
    assert foreign.status_code == 403, foreign.text
    # Booking: an unknown service, a doctor who does not offer it, an unverified doctor.
    await world.schedule(doctor, **base)
    patient = await register(world.client, "patient")
    unknown = await world.book(
        patient, "00000000-0000-4000-8000-000000000000", doctor, "2027-03-01T10:00:00+03:00", MOSCOW
    )
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "service_id", unknown.text
    other_service = await world.service()
    not_offered = await world.book(patient, other_service, doctor, "2027-03-01T10:00:00+03:00", MOSCOW)
    assert not_offered.status_code == 422 and not_offered.json()["error"]["field"] == "slot.doctor_id"
    unverified = await world.book(
        patient, service, await world.doctor(verified=False), "2027-03-01T10:00:00+03:00", MOSCOW
    )
    assert unverified.status_code == 422 and unverified.json()["error"]["field"] == "slot.doctor_id"
