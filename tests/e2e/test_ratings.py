"""Rating rules end to end: once, by the call's patient, after completion; the doctor's average."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from models.enums import Role
from tests.e2e.dispatch_world import CENTRE, City, Person, city, offset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("ratings"), doctors=1, patients=2) as c:
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
