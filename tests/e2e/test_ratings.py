"""Rating rules end to end: once, by the call's patient, after completion; the doctor's average; and
the rating deciding which of two equally near doctors is offered the next call."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from models.enums import Role
from tests.e2e.dispatch_world import CENTRE, City, Doctor, Person, city, offset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("ratings"), doctors=3, patients=2) as c:
        yield c


async def visit(world: City, patient: Person, doctor: Person, complete: bool = True) -> str:
    app = world.doctor(doctor, *offset(*CENTRE, 300))
    await app.start()
    try:
        await asyncio.sleep(0.3)
        call_id: str = (await world.create_call(patient, *CENTRE)).json()["id"]
        offer = await app.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
        await app.client.request("offer.accept", offer=offer["offer"])
        if complete:
            for status in ("en_route", "arrived", "in_progress", "completed"):
                response = await world.http(
                    "POST", f"/v1/calls/{call_id}/status", doctor, json={"status": status}
                )
                assert response.status_code == 200, response.text
    finally:
        await app.stop()
    return call_id


async def test_rating_rules_and_the_doctors_average(world: City) -> None:
    patient, stranger = world.of_role(Role.PATIENT)
    doctor = world.of_role(Role.DOCTOR)[0]
    first = await visit(world, patient, doctor)
    second = await visit(world, patient, doctor)
    ongoing = await visit(world, patient, doctor, complete=False)

    async def rate(
        call_id: str, who: Person, score: object, comment: str | None = None
    ) -> tuple[int, dict[str, object]]:
        response = await world.http(
            "POST", f"/v1/calls/{call_id}/rating", who, json={"score": score, "comment": comment}
        )
        return response.status_code, response.json()

    assert (await rate(first, stranger, 5))[0] == 404  # another patient does not see the call at all
    assert (await rate(first, doctor, 5))[0] == 403  # doctors do not rate themselves
    for bad in (0, 6, 4.5, "5", True):
        status, body = await rate(first, patient, bad)
        assert status == 422, (bad, body)
    status, body = await rate(ongoing, patient, 5)
    assert (status, body["error"]["code"]) == (409, "not_completed")  # type: ignore[index]
    assert (await rate(first, patient, 5, "Very kind"))[0] == 201
    status, body = await rate(first, patient, 1)
    assert (status, body["error"]["code"]) == (409, "already_rated")  # type: ignore[index]
    assert (await rate(second, patient, 2))[0] == 201
    profile = (await world.http("GET", f"/v1/doctors/{doctor.id}", world.dispatcher)).json()["doctor"]
    assert (profile["rating_count"], profile["rating_avg"]) == (2, 3.5)


async def test_ratings_feed_the_candidate_ranking(world: City) -> None:
    """Two doctors in the same ETA bucket (~50 and ~59 s): the better rated gets the offer although
    the other is nearer and has waited longer (the ranking's later keys)."""
    patient = world.of_role(Role.PATIENT)[0]
    good_person, poor_person = world.of_role(Role.DOCTOR)[1:3]
    place = (CENTRE[0] + 0.5, CENTRE[1])  # away from the other test's doctor
    good = world.doctor(good_person, *offset(*place, 350))
    poor = world.doctor(poor_person, *offset(*place, -300))
    await good.start()
    await poor.start()

    async def visit_by(app: Doctor) -> str:
        call_id: str = (await world.create_call(patient, *place)).json()["id"]
        offer = await app.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
        await app.client.request("offer.accept", offer=offer["offer"])
        for status in ("en_route", "arrived", "in_progress", "completed"):
            response = await world.http(
                "POST", f"/v1/calls/{call_id}/status", app.person, json={"status": status}
            )
            assert response.status_code == 200, response.text
        return call_id

    try:
        await poor.client.request("doctor.status", status="paused")
        good_visit = await visit_by(good)
        await good.client.request("doctor.status", status="paused")
        await poor.client.request("doctor.status", status="available")
        poor_visit = await visit_by(poor)  # ends with the poor doctor available
        for call_id, score in ((good_visit, 5), (poor_visit, 1)):
            response = await world.http("POST", f"/v1/calls/{call_id}/rating", patient, json={"score": score})
            assert response.status_code == 201, response.text
        await asyncio.sleep(0.05)
        await good.client.request("doctor.status", status="available")  # idle for less time
        await asyncio.sleep(1.2)  # both positions fresh in the index
        call_id = (await world.create_call(patient, *place)).json()["id"]
        offer = await good.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
        assert offer["distance_m"] > 340  # farther than the other doctor, same ETA bucket
        assert [o["doctor_id"] for o in (await offers(world, call_id))] == [good.id]
        assert poor.of_type("offer.created")[-1]["call"]["id"] == poor_visit
        await world.http(
            "POST", f"/v1/calls/{call_id}/cancel", world.dispatcher, json={"reason": "test over"}
        )
    finally:
        await good.stop()
        await poor.stop()


async def offers(world: City, call_id: str) -> list[dict[str, object]]:
    response = await world.http("GET", f"/v1/calls/{call_id}/offers", world.dispatcher)
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items
