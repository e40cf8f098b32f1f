"""The offer loop end to end: a real server process, doctors as real WebSocket clients streaming
positions, patients and a dispatcher over REST.

Each test works in its own area, 0.5 degree of latitude (~55 km) from the others, beyond the search
rings (1 and 3 km here), so the tests share one server without meeting each other's doctors.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from models.enums import Role
from realtime.client import ClientError, Event, TotClient
from tests.e2e.dispatch_world import CENTRE, City, Doctor, Person, city, offset

SETTINGS = {
    "TOT_SEARCH_RINGS_KM": "1,3",
    "TOT_OFFER_TIMEOUT": "2",
    "TOT_MAX_OFFERS_PER_CALL": "5",
    "TOT_BROADCAST_OFFERS": "3",
    "TOT_DISPATCH_STEP_RETRY": "3",
}
_areas = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("dispatch"), doctors=48, patients=4, settings=SETTINGS) as c:
        yield c


class Area:
    """A test's own place on the map, with its doctors."""

    def __init__(self, world: City) -> None:
        self.world = world
        n = next(_areas)
        self.lat, self.lon = CENTRE[0] + 0.5 * n, CENTRE[1]
        self.doctors: list[Doctor] = []
        self._pool = world.of_role(Role.DOCTOR)[n * 4 : n * 4 + 4]

    async def doctor(self, north_m: float, east_m: float = 0.0, available: bool = True) -> Doctor:
        person = self._pool[len(self.doctors)]
        lat, lon = offset(self.lat, self.lon, north_m, east_m)
        doctor = self.world.doctor(person, lat, lon)
        await doctor.start(available)
        self.doctors.append(doctor)
        return doctor

    async def settle(self) -> None:
        """Positions reach the index on the next ingest tick (25 ms)."""
        await asyncio.sleep(0.3)

    async def close(self) -> None:
        for doctor in self.doctors:
            await doctor.stop()


@pytest.fixture
async def area(world: City) -> AsyncIterator[Area]:
    a = Area(world)
    yield a
    await a.close()


def patient(world: City, i: int = 0) -> Person:
    return world.of_role(Role.PATIENT)[i]


async def new_call(area: Area, urgency: str = "urgent", who: Person | None = None, **extra: Any) -> str:
    response = await area.world.create_call(who or patient(area.world), area.lat, area.lon, urgency, **extra)
    assert response.status_code == 201, response.text
    call_id: str = response.json()["id"]
    return call_id


async def test_nearest_doctor_gets_the_offer_and_accepts(area: Area) -> None:
    near = await area.doctor(300)
    far = await area.doctor(800)
    await area.settle()
    watcher = TotClient(area.world.url, patient(area.world).token)
    await watcher.connect()
    try:
        call_id = await new_call(area)
        await watcher.subscribe(f"call:{call_id}")
        offer = await near.wait_for("offer.created")
        assert offer["call"]["id"] == call_id
        assert 250 < offer["distance_m"] < 350 and offer["eta_s"] > 0 and offer["deadline"] > 0
        ack = await near.client.request("offer.accept", offer=offer["offer"])
        assert ack["status"] == "assigned"
        assigned = await near.wait_for("call.assigned")
        assert assigned["call"]["doctor_id"] == near.id
        call = await area.world.call(call_id)
        assert (call["status"], call["doctor_id"]) == ("assigned", near.id)
        assert far.of_type("offer.created") == []
        # The patient sees the assignment with the doctor's name and an ETA.
        async with asyncio.timeout(10):
            async for event in watcher.events():
                if (
                    isinstance(event, Event)
                    and event.type == "call.status"
                    and event.data["status"] == "assigned"
                ):
                    assert event.data["doctor"]["name"] and event.data["eta_s"] > 0
                    break
        history = (await area.world.http("GET", f"/v1/calls/{call_id}/events", patient(area.world))).json()[
            "items"
        ]
        assert [(e["from_status"], e["to_status"]) for e in history] == [
            (None, "created"),
            ("created", "searching"),
            ("searching", "offered"),
            ("offered", "assigned"),
        ]
    finally:
        await watcher.close()


async def test_decline_moves_to_the_next_candidate(area: Area) -> None:
    first = await area.doctor(200)
    second = await area.doctor(600)
    await area.settle()
    call_id = await new_call(area)
    offer = await first.wait_for("offer.created")
    await first.client.request("offer.decline", offer=offer["offer"], reason="stuck in traffic")
    offer2 = await second.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await second.client.request("offer.accept", offer=offer2["offer"])
    call = await area.world.wait_status(call_id, {"assigned"})
    assert call["doctor_id"] == second.id
    offers = (await area.world.http("GET", f"/v1/calls/{call_id}/offers", area.world.dispatcher)).json()[
        "items"
    ]
    assert [(o["doctor_id"], o["outcome"]) for o in offers] == [
        (first.id, "declined"),
        (second.id, "accepted"),
    ]
    with pytest.raises(
        ClientError
    ) as raised:  # declining twice is harmless, accepting a declined offer is not
        await first.client.request("offer.accept", offer=offer["offer"])
    assert raised.value.code == "offer_declined"


async def test_expiry_moves_on_and_a_late_accept_is_refused(area: Area) -> None:
    sleepy = await area.doctor(200)
    awake = await area.doctor(700)
    await area.settle()
    call_id = await new_call(area)
    offer = await sleepy.wait_for("offer.created")
    expired = await sleepy.wait_for("offer.expired", timeout=15)
    assert expired["offer"] == offer["offer"]
    with pytest.raises(ClientError) as raised:
        await sleepy.client.request("offer.accept", offer=offer["offer"])
    assert raised.value.code == "offer_expired"
    offer2 = await awake.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await awake.client.request("offer.accept", offer=offer2["offer"])
    assert (await area.world.wait_status(call_id, {"assigned"}))["doctor_id"] == awake.id


async def test_emergency_broadcast_first_accept_wins(area: Area) -> None:
    doctors = [await area.doctor(100 + 150 * i) for i in range(3)]
    await area.settle()
    call_id = await new_call(area, urgency="emergency")
    offers = [await d.wait_for("offer.created") for d in doctors]
    results = await asyncio.gather(
        *(d.client.request("offer.accept", offer=o["offer"]) for d, o in zip(doctors, offers, strict=True)),
        return_exceptions=True,
    )
    winners = [d for d, r in zip(doctors, results, strict=True) if isinstance(r, dict)]
    losers = [(d, r) for d, r in zip(doctors, results, strict=True) if not isinstance(r, dict)]
    assert len(winners) == 1, results
    for _doctor, error in losers:
        assert isinstance(error, ClientError) and error.code == "offer_withdrawn", error
    call = await area.world.wait_status(call_id, {"assigned"})
    assert call["doctor_id"] == winners[0].id
    outcomes = sorted(
        o["outcome"]
        for o in (await area.world.http("GET", f"/v1/calls/{call_id}/offers", area.world.dispatcher)).json()[
            "items"
        ]
    )
    assert outcomes == ["accepted", "withdrawn", "withdrawn"]


async def test_search_widens_then_escalates_and_a_dispatcher_relaunches(area: Area) -> None:
    far = await area.doctor(2_000)  # outside the 1 km ring, inside the 3 km one
    await area.settle()
    dispatcher = TotClient(area.world.url, area.world.dispatcher.token)
    await dispatcher.connect()
    try:
        await dispatcher.subscribe("dispatch")
        call_id = await new_call(area)
        offer = await far.wait_for("offer.created")
        offers = (await area.world.http("GET", f"/v1/calls/{call_id}/offers", area.world.dispatcher)).json()[
            "items"
        ]
        assert offers[0]["radius_m"] == 3000
        await far.client.request("offer.decline", offer=offer["offer"])
        await area.world.wait_status(call_id, {"escalated"})
        async with asyncio.timeout(10):
            async for event in dispatcher.events():
                if (
                    isinstance(event, Event)
                    and event.type == "call.escalated"
                    and event.data["call"]["id"] == call_id
                ):
                    assert "3 km" in event.data["reason"]
                    break
        relaunched = await area.world.http("POST", f"/v1/calls/{call_id}/relaunch", area.world.dispatcher)
        assert relaunched.status_code == 200
        again = await far.wait_for("offer.created", lambda d: d["offer"] != offer["offer"])
        assert again["call"]["id"] == call_id  # a fresh round asks the decliner again
    finally:
        await dispatcher.close()


async def test_dispatcher_assigns_and_reassigns_by_hand(area: Area) -> None:
    first = await area.doctor(5_000, available=False)  # far and paused: the loop would never pick them
    second = await area.doctor(6_000, available=False)
    await area.settle()
    call_id = await new_call(area)
    await area.world.wait_status(call_id, {"escalated"})
    d = area.world.dispatcher
    assert (
        await area.world.http(
            "POST", f"/v1/calls/{call_id}/assign", patient(area.world), json={"doctor_id": first.id}
        )
    ).status_code == 403
    assigned = await area.world.http(
        "POST", f"/v1/calls/{call_id}/assign", d, json={"doctor_id": first.id, "reason": "phoned"}
    )
    assert assigned.status_code == 200, assigned.text
    assert (await first.wait_for("call.assigned"))["call"]["id"] == call_id
    busy = await area.world.http("POST", f"/v1/calls/{uuid.uuid4()}/assign", d, json={"doctor_id": first.id})
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "doctor_unavailable")
    reassigned = await area.world.http(
        "POST", f"/v1/calls/{call_id}/assign", d, json={"doctor_id": second.id}
    )
    assert reassigned.json()["doctor_id"] == second.id
    assert (await first.wait_for("call.unassigned"))["call"] == call_id
    # The first doctor is free again: available for the next call.
    status = await first.client.request("doctor.status", status="available")
    assert status["status"] == "available"


async def test_cancelling_during_an_offer_withdraws_it(area: Area) -> None:
    doctor = await area.doctor(300)
    await area.settle()
    call_id = await new_call(area)
    offer = await doctor.wait_for("offer.created")
    cancelled = await area.world.http(
        "POST", f"/v1/calls/{call_id}/cancel", patient(area.world), json={"reason": "felt better"}
    )
    assert cancelled.json()["status"] == "cancelled"
    withdrawn = await doctor.wait_for("offer.withdrawn")
    assert withdrawn["offer"] == offer["offer"]
    with pytest.raises(ClientError) as raised:
        await doctor.client.request("offer.accept", offer=offer["offer"])
    assert raised.value.code == "offer_withdrawn"
    again = await area.world.http(
        "POST", f"/v1/calls/{call_id}/cancel", patient(area.world), json={"reason": "twice"}
    )
    assert (again.status_code, again.json()["error"]["status"]) == (409, "cancelled")
    # The doctor is back in the pool: the next call reaches them.
    next_call = await new_call(area)
    assert (await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == next_call))["offer"]


async def test_creation_is_idempotent(area: Area) -> None:
    world, who = area.world, patient(area.world, 1)
    key = f"key-{uuid.uuid4()}"
    first = await world.create_call(who, area.lat, area.lon, key=key)
    second = await world.create_call(who, area.lat, area.lon, key=key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    other = await world.create_call(who, area.lat, area.lon, key=f"key-{uuid.uuid4()}")
    assert other.json()["id"] != first.json()["id"]
    race_key = f"race-{uuid.uuid4()}"
    responses = await asyncio.gather(
        *(world.create_call(who, area.lat, area.lon, key=race_key) for _ in range(6))
    )
    assert {r.json()["id"] for r in responses} == {responses[0].json()["id"]}
    assert sorted(r.status_code for r in responses) == [200] * 5 + [201]


async def test_visit_runs_to_completion_and_roles_are_checked(area: Area) -> None:
    doctor = await area.doctor(300)
    backup = await area.doctor(900)
    await area.settle()
    who = patient(area.world, 2)
    call_id = await new_call(area, who=who)
    offer = await doctor.wait_for("offer.created")
    await doctor.client.request("offer.accept", offer=offer["offer"])
    world = area.world
    doc = Person(doctor.id, Role.DOCTOR, doctor.person.token, "")
    refused = await world.http("POST", f"/v1/calls/{call_id}/status", who, json={"status": "en_route"})
    assert refused.status_code == 403
    skipped = await world.http("POST", f"/v1/calls/{call_id}/status", doc, json={"status": "arrived"})
    assert skipped.status_code == 409
    assert skipped.json()["error"]["status"] == "assigned" and skipped.json()["error"]["allowed"]
    # The doctor drops the call: it goes back to searching and the backup gets it.
    dropped = await world.http("POST", f"/v1/calls/{call_id}/drop", doc, json={"reason": "car broke down"})
    assert dropped.json()["status"] == "searching"
    offer2 = await backup.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await backup.client.request("offer.accept", offer=offer2["offer"])
    back = Person(backup.id, Role.DOCTOR, backup.person.token, "")
    for status in ("en_route", "arrived", "in_progress"):
        response = await world.http("POST", f"/v1/calls/{call_id}/status", back, json={"status": status})
        assert response.json()["status"] == status, response.text
    late_cancel = await world.http("POST", f"/v1/calls/{call_id}/cancel", who, json={"reason": "no"})
    assert late_cancel.status_code == 409  # the doctor is in the door: only a dispatcher may cancel now
    done = await world.http(
        "POST", f"/v1/calls/{call_id}/status", back, json={"status": "completed", "price_final": "2500.00"}
    )
    assert (done.json()["status"], done.json()["price_final"]) == ("completed", "2500.00")
    others = await world.http("GET", f"/v1/calls/{call_id}", patient(world, 3))
    assert others.status_code == 404  # another patient does not even learn it exists
    mine = await world.http("GET", "/v1/calls?status=completed", who)
    assert call_id in {c["id"] for c in mine.json()["items"]}


async def test_planned_calls_wait_for_their_lead_time(area: Area) -> None:
    import datetime as dt

    doctor = await area.doctor(300)
    await area.settle()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat()
    call_id = await new_call(area, urgency="planned", scheduled_at=later)
    await asyncio.sleep(1.5)
    assert (await area.world.call(call_id))["status"] == "created"
    assert doctor.of_type("offer.created") == []
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=20)).isoformat()  # within the 1 h lead time
    soon_id = await new_call(area, urgency="planned", scheduled_at=soon)
    assert (await doctor.wait_for("offer.created"))["call"]["id"] == soon_id
    bad = await area.world.create_call(patient(area.world), area.lat, area.lon, "planned")
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "scheduled_at")
