"""SOS end to end: every dispatcher and only the doctors in range get it, it repeats until
acknowledged, it survives a server restart, and every step is in the audit."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from models.enums import Role
from realtime.client import ClientError, Event, TotClient
from tests.e2e.dispatch_world import CENTRE, City, Person, city, offset
from tests.e2e.process import run_server

SETTINGS = {"TOT_SOS_RADIUS_KM": "3", "TOT_SOS_REPEAT": "1"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("sos"), doctors=4, patients=2, settings=SETTINGS) as c:
        yield c


class Listener:
    """A dispatcher's console: every event on ``sos``."""

    def __init__(self, world: City, person: Person) -> None:
        self.client = TotClient(world.url, person.token)
        self.events: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.client.connect()
        await self.client.subscribe("sos")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Event):
                self.events.append(event)

    def of(self, sos_id: str, event_type: str = "sos.raised") -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type == event_type and e.data["id"] == sos_id]

    async def wait(
        self, sos_id: str, event_type: str = "sos.raised", count: int = 1, timeout: float = 15
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of(sos_id, event_type)) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{event_type} x{count} for {sos_id}: got {len(self.of(sos_id, event_type))}"
                )
            await asyncio.sleep(0.05)
        return self.of(sos_id, event_type)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.close()


async def test_sos_reaches_every_dispatcher_and_only_doctors_in_range(world: City) -> None:
    raiser_person, near_person, far_person, _ = world.of_role(Role.DOCTOR)
    admin = world.of_role(Role.ADMIN)[0]
    raiser = world.doctor(raiser_person, *CENTRE)
    near = world.doctor(near_person, *offset(*CENTRE, 2_000))
    far = world.doctor(far_person, *offset(*CENTRE, 10_000))
    consoles = [Listener(world, world.dispatcher), Listener(world, admin)]
    for app in (raiser, near, far):
        await app.start(available=False)
    for console in consoles:
        await console.start()
    await asyncio.sleep(0.3)
    try:
        ack = await raiser.client.request(
            "sos", kind="danger", lat=CENTRE[0], lon=CENTRE[1], message="aggressive relative"
        )
        sos_id = ack["sos"]["id"]
        assert ack["sos"]["delivered"]["doctors"] == [near.id]
        for console in consoles:
            first = (await console.wait(sos_id))[0]
            assert (first["kind"], first["message"], first["repeat"]) == ("danger", "aggressive relative", 0)
        nearby = await near.wait_for("sos.nearby")
        assert nearby["id"] == sos_id and 1_900 < nearby["distance_m"] < 2_100
        # It keeps coming back until someone acknowledges it ...
        repeats = await consoles[0].wait(sos_id, count=3)
        assert [r["repeat"] for r in repeats] == [0, 1, 2]
        await consoles[1].client.request("sos.ack", sos=sos_id)
        assert (await raiser.wait_for("sos.acknowledged"))["id"] == sos_id
        count = len(consoles[0].of(sos_id))
        await asyncio.sleep(2.5)  # ... and not after
        assert len(consoles[0].of(sos_id)) == count
        assert far.of_type("sos.nearby") == [] and raiser.of_type("sos.nearby") == []
        resolved = await world.http(
            "POST", f"/v1/sos/{sos_id}/resolve", world.dispatcher, json={"note": "police came"}
        )
        assert resolved.json()["status"] == "resolved"
        audit = (await world.http("GET", f"/v1/sos/{sos_id}", world.dispatcher)).json()["audit"]
        actions = [a["action"] for a in audit]
        assert actions[:2] == ["raised", "delivered"] and actions[-2:] == ["acknowledged", "resolved"]
        assert actions.count("repeated") >= 2
        assert audit[-2]["actor_id"] == admin.id and audit[-1]["data"] == {"note": "police came"}
    finally:
        for app in (raiser, near, far):
            await app.stop()
        for console in consoles:
            await console.stop()


async def test_patient_emergency_over_rest_makes_the_call_an_emergency(world: City) -> None:
    patient = world.of_role(Role.PATIENT)[0]
    place = (CENTRE[0] + 2.0, CENTRE[1])  # far from every doctor: the call stays unassigned
    call_id = (await world.create_call(patient, *place)).json()["id"]
    console = Listener(world, world.dispatcher)
    await console.start()
    try:
        raised = await world.http("POST", "/v1/sos", patient, json={"kind": "emergency", "call": call_id})
        assert raised.status_code == 201, raised.text
        sos_id = raised.json()["id"]
        alert = (await console.wait(sos_id))[0]
        assert (alert["kind"], alert["call"], alert["lat"]) == ("emergency", call_id, place[0])
        call = await world.call(call_id)
        assert call["urgency"] == "emergency"
        history = (await world.http("GET", f"/v1/calls/{call_id}/events", world.dispatcher)).json()["items"]
        assert any(e["reason"] == "patient raised an emergency" for e in history)
        acked = await world.http("POST", f"/v1/sos/{sos_id}/acknowledge", world.dispatcher)
        assert acked.json()["status"] == "acknowledged"
        # Resolving over the socket, with a note; a note is required.
        with pytest.raises(ClientError) as no_note:
            await console.client.request("sos.resolve", sos=sos_id)
        assert (no_note.value.code, no_note.value.field) == ("invalid_field", "note")
        done = await console.client.request("sos.resolve", sos=sos_id, note="ambulance sent")
        assert done["sos"]["status"] == "resolved"
        audit = (await world.http("GET", f"/v1/sos/{sos_id}", world.dispatcher)).json()["audit"]
        assert [a["action"] for a in audit][-2:] == ["acknowledged", "resolved"]
        assert audit[-1]["actor_id"] == world.dispatcher.id and audit[-1]["data"] == {
            "note": "ambulance sent"
        }
        again = await world.http("POST", f"/v1/sos/{sos_id}/resolve", world.dispatcher, json={"note": "x"})
        assert again.status_code == 409  # resolved once
    finally:
        await console.stop()


async def test_who_may_raise_and_handle_an_sos(world: City) -> None:
    patient = world.of_role(Role.PATIENT)[1]
    doctor = world.of_role(Role.DOCTOR)[3]
    wrong_kind = await world.http(
        "POST", "/v1/sos", patient, json={"kind": "danger", "lat": 55.7, "lon": 37.6}
    )
    assert wrong_kind.status_code == 403
    staff_raise = await world.http(
        "POST", "/v1/sos", world.dispatcher, json={"kind": "danger", "lat": 55.7, "lon": 37.6}
    )
    assert staff_raise.status_code == 403
    no_position = await world.http("POST", "/v1/sos", doctor, json={"kind": "complex_call"})
    assert (no_position.status_code, no_position.json()["error"]["field"]) == (422, "lat")  # never sent a fix
    raised = await world.http(
        "POST", "/v1/sos", doctor, json={"kind": "complex_call", "lat": 55.7, "lon": 37.6}
    )
    sos_id = raised.json()["id"]
    app = TotClient(world.url, doctor.token)
    await app.connect()
    try:
        with pytest.raises(ClientError) as refused:
            await app.request("sos.ack", sos=sos_id)
        assert refused.value.code == "forbidden"
    finally:
        await app.close()
    assert (await world.http("GET", f"/v1/sos/{sos_id}", doctor)).status_code == 200  # the raiser sees it
    assert (await world.http("GET", f"/v1/sos/{sos_id}", patient)).status_code == 404
    await world.http("POST", f"/v1/sos/{sos_id}/resolve", world.dispatcher, json={"note": "handled"})


def test_an_unacknowledged_sos_repeats_again_after_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cwd = tmp_path_factory.mktemp("sos-restart")
    with city(cwd, doctors=1, patients=0, settings=SETTINGS) as c:
        doctor = c.of_role(Role.DOCTOR)[0]
        raised = asyncio.run(
            c.http("POST", "/v1/sos", doctor, json={"kind": "danger", "lat": 55.75, "lon": 37.61})
        )
        sos_id = raised.json()["id"]
        server = c.servers[0]
        server.process.send_signal(signal.SIGINT)  # the memory engine's deadlines go with the process
        server.process.wait(timeout=15)

        async def after_restart() -> list[dict[str, Any]]:
            with run_server(["serve"], c.env, c.cwd) as again:
                c.servers[0] = again
                console = Listener(c, c.dispatcher)
                await console.start()
                try:
                    return await console.wait(sos_id, count=2, timeout=20)
                finally:
                    await console.stop()

        repeats = asyncio.run(after_restart())
        assert all(r["id"] == sos_id and r["status"] == "open" for r in repeats)
        assert repeats[-1]["repeat"] > repeats[0]["repeat"] >= 1
