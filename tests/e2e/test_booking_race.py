"""Twenty patients book the same slot of one doctor at once against real server processes: exactly one
201, nineteen 409 ``slot_taken``; the winner's retry with its ``Idempotency-Key`` returns the first
booking (200). On the embedded deployment (one process, SQLite: the check inside its one serialised
connection) and on the scale-out one (two processes sharing PostgreSQL, where the doctor's schedule row
lock and the exclusion constraint decide, and Redis), the requests spread over both processes.

The server runs on the wall clock, so the slot is three days ahead of now at 10:00 UTC, inside hours
that cover the whole day: nothing here waits for time to pass.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from models.enums import Role
from tests.conftest import create_pg_database, drop_pg_database, redis_test_url
from tests.e2e.dispatch_world import City, Person, city, forget_engine_keys

PATIENTS = 20
PLACE = (55.7558, 37.6173)


def _slot_start() -> str:
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)
    return dt.datetime.combine(day, dt.time(10, 0), dt.UTC).isoformat()


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, object]:
    assert response.status_code == status, response.text
    body: dict[str, object] = response.json()
    return body


async def _prepare(world: City) -> tuple[Person, str]:
    """A clinic, its service, the doctor in it with an all-day schedule; returns the doctor and the
    service id."""
    admin = world.of_role(Role.ADMIN)[0]
    doctor = world.of_role(Role.DOCTOR)[0]
    clinic = await _ok(
        await world.http("POST", "/v1/clinics", admin, json={"name": f"C {uuid.uuid4().hex[:6]}"}), 201
    )
    await _ok(await world.http("PATCH", "/v1/doctors/me", doctor, json={"clinic_id": clinic["id"]}))
    service = await _ok(
        await world.http(
            "POST",
            f"/v1/clinics/{clinic['id']}/services",
            admin,
            json={"name": "Home visit", "specialty": "therapist", "duration_min": 30, "price": "2000.00"},
        ),
        201,
    )
    every_day = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
    await _ok(
        await world.http(
            "PUT",
            f"/v1/doctors/{doctor.id}/schedule",
            admin,
            json={"time_zone": "UTC", "weekly": every_day, "service_ids": [service["id"]]},
        )
    )
    return doctor, str(service["id"])


async def _race(world: City) -> None:
    doctor, service_id = await _prepare(world)
    start = _slot_start()
    patients = world.of_role(Role.PATIENT)
    assert len(patients) == PATIENTS

    def body() -> dict[str, object]:
        return {
            "service_id": service_id,
            "slot": {"doctor_id": doctor.id, "start": start},
            "address": "Test street 1",
            "lat": PLACE[0],
            "lon": PLACE[1],
        }

    answers = await asyncio.gather(
        *(
            world.http(
                "POST",
                "/v1/bookings",
                p,
                server=i % len(world.servers),
                json=body(),
                headers={"Idempotency-Key": f"race-{i}"},
            )
            for i, p in enumerate(patients)
        )
    )
    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 409: PATIENTS - 1}, [r.text for r in answers]
    assert {r.json()["error"]["code"] for r in answers if r.status_code == 409} == {"slot_taken"}
    winner = next(i for i, r in enumerate(answers) if r.status_code == 201)
    first = answers[winner].json()
    again = await world.http(
        "POST", "/v1/bookings", patients[winner], json=body(), headers={"Idempotency-Key": f"race-{winner}"}
    )
    assert again.status_code == 200, again.text
    assert (again.json()["id"], again.json()["call_id"]) == (first["id"], first["call_id"])
    calls = await world.http("GET", "/v1/calls?urgency=planned&limit=200", world.dispatcher)
    assert [c["id"] for c in calls.json()["items"]] == [first["call_id"]]  # the losers left no call


@pytest.mark.parametrize("deployment", ["embedded", "scale-out"])
def test_twenty_bookings_of_one_slot_on_real_servers(tmp_path: Path, deployment: str) -> None:
    if deployment == "embedded":
        with city(tmp_path, doctors=1, patients=PATIENTS) as world:
            asyncio.run(_race(world))
        return
    database_url = asyncio.run(create_pg_database("tot_booking_race"))
    prefix = ""
    try:
        with city(
            tmp_path,
            doctors=1,
            patients=PATIENTS,
            servers=2,
            database_url=database_url,
            engine_url=redis_test_url(),
        ) as world:
            prefix = world.env["TOT_ENGINE_PREFIX"]
            asyncio.run(_race(world))
    finally:
        if prefix:
            asyncio.run(forget_engine_keys(prefix))
        asyncio.run(drop_pg_database(database_url))
