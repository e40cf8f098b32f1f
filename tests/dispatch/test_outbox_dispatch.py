"""The outbox under the dispatch core: a committed change answers success whatever the broker or the
live engine does after the commit, and its events reach the channel through the relay."""

from __future__ import annotations

from typing import Any
from unittest import mock

from dispatch.outbox_relay import OutboxRelay
from models.enums import CallStatus, DoctorStatus
from tests.dispatch.world import World


async def test_an_accept_while_the_broker_is_down_succeeds_and_the_relay_publishes_it(world: World) -> None:
    await world.doctor(100)
    patient = await world.patient()
    call_id = await world.new_call(patient)
    who, offer = await world.the_pending_offer(call_id)
    publisher = world.calls.publisher

    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("broker unreachable")

    with mock.patch.object(world.broker, "publish_many", down):
        moved = await world.loop.accept(who, offer.id)
    await world.settle()
    assert moved.call.status == CallStatus.ASSIGNED.value
    assert await world.call_status(call_id) is CallStatus.ASSIGNED
    assert publisher.stats.publish_failures == 1
    assert "assigned" not in [e["status"] for e in world.events(f"call:{call_id}", "call.status")]
    await publisher.flush_marks()  # the rows published before the outage are marked (the batch marker)
    relay = OutboxRelay(publisher)
    world.clock.advance_s(5)  # the committer's lease on its rows runs out
    result = await relay.run_once()
    await world.settle()
    assert result.relayed == 3  # call.assigned to the doctor, call.status on the call and on dispatch
    statuses = [e["status"] for e in world.events(f"call:{call_id}", "call.status")]
    assert statuses[-1] == "assigned"
    assert world.events(f"doctor:{who.user_id}", "call.assigned")
    await relay.stop()


async def test_completing_a_visit_succeeds_when_the_engine_fails_to_free_the_doctor(world: World) -> None:
    doctor = await world.doctor(100)
    patient = await world.patient()
    call_id = await world.new_call(patient)
    who, offer = await world.the_pending_offer(call_id)
    await world.loop.accept(who, offer.id)
    for step in (CallStatus.EN_ROUTE, CallStatus.ARRIVED, CallStatus.IN_PROGRESS):
        await world.loop.visit(doctor, call_id, step)

    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        raise ConnectionError("redis down")

    with mock.patch.object(world.engine.states, "compare_and_set", unreachable):
        moved = await world.loop.visit(doctor, call_id, CallStatus.COMPLETED)
    await world.settle()
    assert moved.call.status == CallStatus.COMPLETED.value
    assert world.calls.publisher.stats.followup_failures == 1
    assert await world.status(doctor) is DoctorStatus.BUSY  # left to the repair sweep
    assert world.events(f"call:{call_id}", "call.status")[-1]["status"] == "completed"
