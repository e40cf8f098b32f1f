"""SOS in-process: delivered at once to dispatchers and nearby doctors, repeated every ``repeat_s``
until a dispatcher acknowledges it; a patient's emergency turns the call into a broadcast."""

from __future__ import annotations

import uuid
from unittest import mock

from dispatch.sos import SosSettings
from models.enums import CallStatus, DoctorStatus, SosKind, Urgency
from tests.dispatch.world import World, lose_deadline_entries, lose_spawned_steps

REPEAT_S = SosSettings().repeat_s
RADIUS_M = SosSettings().radius_m


async def test_an_alert_reaches_dispatchers_and_the_doctors_nearby(world: World) -> None:
    """``sos.raised`` (repeat 0) on ``sos``; ``sos.nearby`` with the distance to doctors within the
    radius, not to the raiser nor to a doctor beyond it."""
    raiser = await world.doctor(north_m=0)
    near = await world.doctor(north_m=1_000)
    far = await world.doctor(north_m=RADIUS_M + 500)
    alert = await world.sos.raise_alert(raiser, SosKind.DANGER, message="aggressive visitor")
    await world.settle()

    [raised] = world.events("sos", "sos.raised")
    assert raised["id"] == alert["id"] and raised["repeat"] == 0
    [nearby] = world.events(f"doctor:{near.user_id}", "sos.nearby")
    assert nearby["distance_m"] == 1_000
    assert world.events(f"doctor:{far.user_id}", "sos.nearby") == []
    assert world.events(f"doctor:{raiser.user_id}", "sos.nearby") == []
    assert alert["delivered"]["doctors"] == [str(near.user_id)]


async def test_an_alert_repeats_until_acknowledged(world: World) -> None:
    """No repeat before ``repeat_s``; then one every ``repeat_s``, counted; after a dispatcher's
    acknowledgement (``sos.acknowledged`` to dispatchers and the raiser) no more, however long."""
    raiser = await world.doctor(north_m=0)
    alert = await world.sos.raise_alert(raiser, SosKind.COMPLEX_CALL)
    sos_id = alert["id"]
    raised_at = world.clock()

    await world.advance_s(REPEAT_S - 0.001)
    assert [e["repeat"] for e in world.events("sos", "sos.raised")] == [0]
    await world.advance_s(0.001)
    await world.advance_s(REPEAT_S)
    await world.advance_s(REPEAT_S)
    assert world.clock() == raised_at + 3 * int(REPEAT_S * 1000)
    assert [e["repeat"] for e in world.events("sos", "sos.raised")] == [0, 1, 2, 3]

    acked = await world.sos.acknowledge(world.dispatcher, uuid.UUID(sos_id))
    await world.settle()
    assert acked["status"] == "acknowledged"
    assert world.events("sos", "sos.acknowledged")[0]["id"] == sos_id
    assert world.events(f"doctor:{raiser.user_id}", "sos.acknowledged")[0]["id"] == sos_id
    assert await world.advance_s(REPEAT_S * 10) == 0
    assert len(world.events("sos", "sos.raised")) == 4
    audit = (await world.sos.get(world.dispatcher, uuid.UUID(sos_id)))["audit"]
    assert [a["action"] for a in audit].count("repeated") == 3


async def test_resume_rearms_the_repeat_of_an_open_alert(world: World) -> None:
    """A memory engine that lost its entries repeats nothing; ``resume`` re-arms open alerts at once."""
    raiser = await world.doctor(north_m=0)
    await world.sos.raise_alert(raiser, SosKind.DANGER)
    await lose_deadline_entries(world)
    await world.advance_s(REPEAT_S * 2)
    assert len(world.events("sos", "sos.raised")) == 1
    await world.sos.resume()
    await world.run_due()
    assert [e["repeat"] for e in world.events("sos", "sos.raised")] == [0, 1]


async def test_a_patients_emergency_makes_a_searching_call_a_broadcast(world: World) -> None:
    """A patient raises ``emergency`` on a call still being searched: the call's urgency becomes
    emergency and it is offered to several doctors at once."""
    patient = await world.patient()
    first = await world.doctor(north_m=100)
    others = [await world.doctor(north_m=1_000 + 100 * i) for i in range(2)]  # not in the first ETA bucket
    call_id = await world.new_call(patient)
    with lose_spawned_steps(world.loop):  # the call stays searching until someone moves it
        await world.loop.decline(first, (await world.pending_offer(call_id, first)).id)
    assert await world.call_status(call_id) is CallStatus.SEARCHING

    await world.sos.raise_alert(patient, SosKind.EMERGENCY, call_id=call_id)
    await world.settle()

    call = await world.call(call_id)
    assert call.urgency == Urgency.EMERGENCY and call.status == CallStatus.OFFERED
    for doctor in others:
        await world.pending_offer(call_id, doctor)
        assert await world.status(doctor) is DoctorStatus.OFFERED
    assert world.events(f"call:{call_id}", "sos.raised") == []  # dispatchers' channel only
    assert world.events("sos", "sos.raised")[0]["call"] == str(call_id)


async def test_resume_leaves_alone_an_alert_acknowledged_while_it_looked(world: World) -> None:
    """``resume`` read the alert open; a dispatcher acknowledged it (its repeat entry removed) before
    ``resume`` read the entry: not a lost repeat, nothing is armed and nothing repeats."""
    raiser = await world.doctor(north_m=0)
    sos_id = uuid.UUID((await world.sos.raise_alert(raiser, SosKind.DANGER))["id"])
    deadlines = world.sos.deadlines
    real_get = deadlines.get
    raced: list[str] = []

    async def get_after_an_acknowledgement(key: str) -> object:
        if not raced:
            raced.append(key)
            await world.sos.acknowledge(world.dispatcher, sos_id)
        return await real_get(key)

    with mock.patch.object(deadlines, "get", get_after_an_acknowledgement):
        assert await world.sos.resume() == 0
    assert raced
    assert await world.advance_s(REPEAT_S * 3) == 0
    assert len(world.events("sos", "sos.raised")) == 1
