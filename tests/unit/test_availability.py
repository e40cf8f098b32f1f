"""The doctor-availability rules (``dispatch/availability.py``) and the call feed as a plain hub
subscriber (``dispatch/call_feed.py``), on the memory engine."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch.availability import Availability
from dispatch.call_feed import CallStatusFollower
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.errors import DispatchError
from geo.location_index_memory import MemoryLocationIndex
from models.enums import DoctorStatus
from realtime.broker import Publication
from realtime.broker_memory import MemoryBroker
from realtime.errors import ErrorCode
from realtime.hub import Hub

DOCTOR = "00000000-0000-0000-0000-000000000001"


def availability(changed: list[str]) -> tuple[Availability, MemoryDoctorStates, MemoryBroker]:
    states, broker = MemoryDoctorStates(), MemoryBroker()
    rules = Availability(None, states, MemoryLocationIndex(), broker, changed.append)  # type: ignore[arg-type]
    return rules, states, broker


async def test_a_verified_doctor_becomes_available_and_every_device_hears_of_it() -> None:
    changed: list[str] = []
    rules, states, broker = availability(changed)
    await broker.subscribe(f"doctor:{DOCTOR}")
    state = await rules.set_status(DOCTOR, "available", verified=True)
    assert state.status is DoctorStatus.AVAILABLE
    assert (await states.get(DOCTOR)).status is DoctorStatus.AVAILABLE
    assert changed == [DOCTOR]
    delivery = await broker.receive()
    assert isinstance(delivery, Publication)
    assert (delivery.channel, delivery.type) == (f"doctor:{DOCTOR}", "doctor.status")
    assert delivery.decode()["data"]["status"] == "available"


@pytest.mark.parametrize(
    ("wanted", "verified", "code", "field"),
    [
        ("available", False, ErrorCode.FORBIDDEN, None),
        ("busy", True, ErrorCode.INVALID_INPUT, "status"),
        (None, True, ErrorCode.INVALID_INPUT, "status"),
    ],
)
async def test_refused_moves_change_nothing(
    wanted: Any, verified: bool, code: ErrorCode, field: str | None
) -> None:
    changed: list[str] = []
    rules, states, _ = availability(changed)
    with pytest.raises(DispatchError) as refused:
        await rules.set_status(DOCTOR, wanted, verified=verified)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert (await states.get(DOCTOR)).status is DoctorStatus.OFFLINE
    assert changed == []


async def test_the_call_feed_follows_call_status_through_the_hub() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    seen: list[tuple[str, str, str | None]] = []
    follower = CallStatusFollower(lambda *event: seen.append(event))
    await hub.add(CallStatusFollower.CHANNEL, follower)
    await broker.publish(CallStatusFollower.CHANNEL, "call.created", {"call": "c1"})
    ended = {"call": "c1", "status": "completed", "doctor": {"id": "d1"}}
    await broker.publish(CallStatusFollower.CHANNEL, "call.status", ended)
    for _ in range(2):
        hub.dispatch(await broker.receive())
    assert seen == [("c1", "completed", "d1")]
    assert follower.seen == 1
    await follower.recover(CallStatusFollower.CHANNEL)  # live only: nothing to recover
