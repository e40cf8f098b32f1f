"""Chat on a call, end to end: a real server, the patient and the doctor as WebSocket clients, a
dispatcher and strangers over REST."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from models.enums import Role
from realtime.client import ClientError, Event, TotClient
from tests.e2e.dispatch_world import CENTRE, City, Person, city, offset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("chat"), doctors=3, patients=3) as c:
        yield c


_doctors = itertools.count()


async def assigned_call(world: City) -> tuple[str, Person, Person]:
    """A call of patient 0 assigned to a doctor of its own (each test's doctor stays busy with its
    call); returns (call id, patient, doctor). Each test works 0.5 degree away from the others."""
    n = next(_doctors)
    patient, doctor = world.of_role(Role.PATIENT)[0], world.of_role(Role.DOCTOR)[n]
    place = (CENTRE[0] + 0.5 * n, CENTRE[1])
    app = world.doctor(doctor, *offset(*place, 300))
    await app.start()
    try:
        await asyncio.sleep(0.3)
        created = await world.create_call(patient, *place)
        call_id: str = created.json()["id"]
        offer = await app.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
        await app.client.request("offer.accept", offer=offer["offer"])
    finally:
        await app.stop()
    return call_id, patient, doctor


async def test_chat_between_patient_doctor_and_dispatcher(world: City) -> None:
    call_id, patient, doctor = await assigned_call(world)
    patient_app = TotClient(world.url, patient.token)
    doctor_app = TotClient(world.url, doctor.token)
    await patient_app.connect()
    await doctor_app.connect()
    try:
        await patient_app.subscribe(f"call:{call_id}")
        sent = await patient_app.request(
            "chat.send", call=call_id, client_msg_id="p-1", text="  The door code is 42  "
        )
        assert sent["duplicate"] is False and sent["message"]["text"] == "The door code is 42"
        again = await patient_app.request(
            "chat.send", call=call_id, client_msg_id="p-1", text="The door code is 42"
        )
        assert again["duplicate"] is True and again["message"]["id"] == sent["message"]["id"]
        reply = await doctor_app.request("chat.send", call=call_id, client_msg_id="d-1", text="On my way")
        over_rest = await world.http(
            "POST",
            f"/v1/calls/{call_id}/messages",
            world.dispatcher,
            json={"client_msg_id": "x-1", "text": "Dispatcher here"},
        )
        assert over_rest.status_code == 201
        resent = await world.http(
            "POST",
            f"/v1/calls/{call_id}/messages",
            world.dispatcher,
            json={"client_msg_id": "x-1", "text": "Dispatcher here"},
        )
        assert (resent.status_code, resent.json()["id"]) == (200, over_rest.json()["id"])

        # Live on the call channel, once each, in order.
        seen: list[str] = []
        async with asyncio.timeout(10):
            async for event in patient_app.events():
                if isinstance(event, Event) and event.type == "chat.message":
                    seen.append(event.data["text"])
                    if len(seen) == 3:
                        break
        assert seen == ["The door code is 42", "On my way", "Dispatcher here"]

        # Read receipts: the patient has read up to the doctor's reply.
        read = await patient_app.request("chat.read", call=call_id, up_to=reply["message"]["id"])
        assert read["read"] == 1  # only the doctor's message; one's own messages are never "read"
        history = (await world.http("GET", f"/v1/calls/{call_id}/messages", doctor)).json()["items"]
        assert [m["text"] for m in history] == seen
        assert history[1]["read_at"] is not None and history[0]["read_at"] is None
    finally:
        await patient_app.close()
        await doctor_app.close()


async def test_history_pages_oldest_first_without_gaps(world: City) -> None:
    call_id, patient, _ = await assigned_call(world)
    for i in range(23):
        response = await world.http(
            "POST",
            f"/v1/calls/{call_id}/messages",
            patient,
            json={"client_msg_id": f"m{i}", "text": f"line {i}"},
        )
        assert response.status_code == 201
    texts: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 10, **({"after": cursor} if cursor else {})}
        page = (await world.http("GET", f"/v1/calls/{call_id}/messages", patient, params=params)).json()
        texts += [m["text"] for m in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert texts == [f"line {i}" for i in range(23)]
    assert pages == 3


async def test_only_the_calls_parties_may_read_or_write(world: City) -> None:
    call_id, patient, _ = await assigned_call(world)
    stranger = world.of_role(Role.PATIENT)[1]
    other_doctor = world.of_role(Role.DOCTOR)[1]
    for who in (stranger, other_doctor):
        read = await world.http("GET", f"/v1/calls/{call_id}/messages", who)
        write = await world.http(
            "POST", f"/v1/calls/{call_id}/messages", who, json={"client_msg_id": "s", "text": "hi"}
        )
        assert (read.status_code, write.status_code) == (404, 404)
    app = TotClient(world.url, stranger.token)
    await app.connect()
    try:
        with pytest.raises(ClientError) as raised:
            await app.request("chat.send", call=call_id, client_msg_id="s1", text="let me in")
        assert raised.value.code == "not_found"
        with pytest.raises(ClientError) as raised:
            await app.subscribe(f"call:{call_id}")
        assert raised.value.code == "forbidden"
    finally:
        await app.close()
    too_long = await world.http(
        "POST", f"/v1/calls/{call_id}/messages", patient, json={"client_msg_id": "l", "text": "x" * 2001}
    )
    assert (too_long.status_code, too_long.json()["error"]["field"]) == (422, "text")
    blank = await world.http(
        "POST", f"/v1/calls/{call_id}/messages", patient, json={"client_msg_id": "b", "text": "   "}
    )
    assert blank.status_code == 422
    await world.http("POST", f"/v1/calls/{call_id}/cancel", world.dispatcher, json={"reason": "test over"})
    closed = await world.http(
        "POST", f"/v1/calls/{call_id}/messages", patient, json={"client_msg_id": "late", "text": "hello?"}
    )
    assert (closed.status_code, closed.json()["error"]["status"]) == (409, "cancelled")
    assert (
        await world.http("GET", f"/v1/calls/{call_id}/messages", patient)
    ).status_code == 200  # still readable
