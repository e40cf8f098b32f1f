"""People stepping in: a dispatcher assigns or reassigns by hand, a doctor drops a call, a dispatcher
re-launches an escalated search, a patient or dispatcher cancels."""

from __future__ import annotations

import pytest

from dispatch.errors import DispatchError
from dispatch.settings import DispatchSettings
from models.enums import CallStatus, DoctorStatus, OfferOutcome
from tests.dispatch.world import World

S = CallStatus
OFFER_TIMEOUT_S = DispatchSettings().offer_timeout_s


async def test_assigning_by_hand_withdraws_the_open_offer(world: World) -> None:
    """A dispatcher assigns an offered call to another doctor: the open offer is withdrawn (its
    doctor freed and told ``offer.withdrawn``), the chosen doctor is busy with the call and hears
    ``call.assigned`` marked by hand; the withdrawn offer's deadline no longer fires."""
    offered = await world.doctor(north_m=100)
    chosen = await world.doctor(north_m=5_000, available=False)  # off the app: phoned by the dispatcher
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, offered)

    moved = await world.loop.assign(world.dispatcher, call_id, chosen.user_id, reason="regular patient")
    await world.settle()

    assert moved.previous is S.OFFERED and moved.call.doctor_id == chosen.user_id
    assert await world.call_status(call_id) is S.ASSIGNED
    assert await world.status(offered) is DoctorStatus.AVAILABLE
    assert (await world.state(chosen)).ref == str(call_id)
    assert await world.status(chosen) is DoctorStatus.BUSY
    assert await world.outcomes(call_id) == [OfferOutcome.WITHDRAWN]
    [withdrawn] = world.events(f"doctor:{offered.user_id}", "offer.withdrawn")
    assert withdrawn["offer"] == str(offer.id)
    assert world.events(f"doctor:{chosen.user_id}", "call.assigned")[0]["by_hand"] is True
    assert await world.advance_s(OFFER_TIMEOUT_S * 2) == 0
    assert world.events(f"doctor:{offered.user_id}", "offer.expired") == []


async def test_reassigning_frees_the_first_doctor(world: World) -> None:
    """``assigned -> assigned`` by a dispatcher: the first doctor is freed and told
    ``call.unassigned``; the second holds the call."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=800, available=False)
    call_id = await world.new_call(await world.patient())
    await world.loop.accept(first, (await world.pending_offer(call_id, first)).id)

    await world.loop.assign(world.dispatcher, call_id, second.user_id)
    await world.settle()

    assert (await world.call(call_id)).doctor_id == second.user_id
    assert await world.status(first) is DoctorStatus.AVAILABLE
    assert await world.status(second) is DoctorStatus.BUSY
    assert world.events(f"doctor:{first.user_id}", "call.unassigned")[0]["call"] == str(call_id)


async def test_assigning_is_refused_for_a_doctor_who_is_not_free_or_not_verified(world: World) -> None:
    """A doctor holding an offer is ``doctor_unavailable``; an unverified one ``invalid_input``; the
    doctor already holding this very call is busy, so ``doctor_unavailable`` too; a patient may not
    assign (``forbidden``). The call and the doctors stay as they were."""
    holder = await world.doctor(north_m=100)
    unverified = await world.doctor(north_m=200, available=False, verified=False)
    call_id = await world.new_call(await world.patient())
    other_call = await world.new_call(await world.patient(), north_m=50)
    assert await world.call_status(other_call) is S.ESCALATED  # its only candidate is taken

    attempts = [
        (world.dispatcher, other_call, holder, "doctor_unavailable"),
        (world.dispatcher, other_call, unverified, "invalid_input"),
        (await world.patient(), other_call, unverified, "forbidden"),
    ]
    for who, target, doctor, code in attempts:
        with pytest.raises(DispatchError) as refused:
            await world.loop.assign(who, target, doctor.user_id)
        assert refused.value.code == code
    await world.loop.accept(holder, (await world.pending_offer(call_id, holder)).id)
    with pytest.raises(DispatchError) as again:
        await world.loop.assign(world.dispatcher, call_id, holder.user_id)
    assert again.value.code == "doctor_unavailable"
    assert await world.call_status(other_call) is S.ESCALATED
    assert (await world.state(holder)).ref == str(call_id)


async def test_a_dropped_call_goes_back_to_searching_and_to_the_next_doctor(world: World) -> None:
    """The assigned doctor drops the call: it goes back to searching, the doctor is freed and told
    ``call.unassigned``, and the search offers it again."""
    dropper = await world.doctor(north_m=900)
    call_id = await world.new_call(await world.patient())
    await world.loop.accept(dropper, (await world.pending_offer(call_id, dropper)).id)
    nearer = await world.doctor(north_m=100)

    moved = await world.loop.drop(dropper, call_id, reason="car broke down")
    await world.settle()

    assert moved.previous is S.ASSIGNED and moved.call.doctor_id is None
    assert await world.status(dropper) is DoctorStatus.AVAILABLE
    assert world.events(f"doctor:{dropper.user_id}", "call.unassigned")[0]["reason"] == "car broke down"
    await world.pending_offer(call_id, nearer)
    assert (S.ASSIGNED, S.SEARCHING) in await world.transitions(call_id)


async def test_relaunch_searches_an_escalated_call_again(world: World) -> None:
    """``escalated -> searching`` by a dispatcher starts a new search round that finds a doctor who
    came online since; re-launching a call that is not escalated is ``invalid_transition``."""
    call_id = await world.new_call(await world.patient())
    assert await world.call_status(call_id) is S.ESCALATED
    doctor = await world.doctor(north_m=100)

    moved = await world.loop.relaunch(world.dispatcher, call_id)
    await world.settle()

    assert moved.previous is S.ESCALATED
    await world.pending_offer(call_id, doctor)
    with pytest.raises(DispatchError) as refused:
        await world.loop.relaunch(world.dispatcher, call_id)
    assert refused.value.code == "invalid_transition"


async def test_cancelling_an_offered_call_withdraws_its_offer(world: World) -> None:
    """The patient cancels while the call is on offer: the offer is withdrawn, the doctor freed and
    told, and the deadline fires nothing afterwards."""
    patient = await world.patient()
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(patient)
    offer = await world.pending_offer(call_id, doctor)

    moved = await world.loop.cancel(patient, call_id, "feeling better")
    await world.settle()

    assert moved.previous is S.OFFERED and moved.call.cancel_reason == "feeling better"
    assert await world.status(doctor) is DoctorStatus.AVAILABLE
    assert world.events(f"doctor:{doctor.user_id}", "offer.withdrawn")[0]["offer"] == str(offer.id)
    assert await world.advance_s(OFFER_TIMEOUT_S * 2) == 0
    assert await world.call_status(call_id) is S.CANCELLED
    with pytest.raises(DispatchError) as refused:
        await world.loop.accept(doctor, offer.id)
    assert refused.value.code == "offer_withdrawn"


async def test_cancelling_an_assigned_call_frees_the_doctor(world: World) -> None:
    """A cancelled assigned call frees its doctor, who hears ``call.cancelled`` with the reason."""
    patient = await world.patient()
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(patient)
    await world.loop.accept(doctor, (await world.pending_offer(call_id, doctor)).id)
    await world.loop.cancel(world.dispatcher, call_id, "duplicate")
    await world.settle()
    assert await world.status(doctor) is DoctorStatus.AVAILABLE
    assert world.events(f"doctor:{doctor.user_id}", "call.cancelled") == [
        {"call": str(call_id), "reason": "duplicate"}
    ]


async def test_a_patient_cannot_cancel_once_the_doctor_arrived(world: World) -> None:
    """At the door, only a dispatcher cancels: the patient gets ``invalid_transition`` and the call
    stays ``arrived``; a dispatcher then can."""
    patient = await world.patient()
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(patient)
    await world.loop.accept(doctor, (await world.pending_offer(call_id, doctor)).id)
    await world.loop.visit(doctor, call_id, S.EN_ROUTE)
    await world.loop.visit(doctor, call_id, S.ARRIVED)
    with pytest.raises(DispatchError) as refused:
        await world.loop.cancel(patient, call_id, "changed my mind")
    assert refused.value.code == "invalid_transition"
    assert await world.call_status(call_id) is S.ARRIVED
    await world.loop.cancel(world.dispatcher, call_id, "dispute")
    assert await world.call_status(call_id) is S.CANCELLED


async def test_completing_a_visit_frees_the_doctor(world: World) -> None:
    """en route, arrived, in progress, completed: the doctor stays busy until completed, then is
    available again; the final price is stored."""
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(await world.patient())
    await world.loop.accept(doctor, (await world.pending_offer(call_id, doctor)).id)
    for step in (S.EN_ROUTE, S.ARRIVED, S.IN_PROGRESS):
        await world.loop.visit(doctor, call_id, step)
        assert await world.status(doctor) is DoctorStatus.BUSY
    await world.loop.visit(doctor, call_id, S.COMPLETED, price_final=2500)
    call = await world.call(call_id)
    assert call.status == S.COMPLETED and call.price_final == 2500
    assert call.completed_at == world.clock.utcnow()
    assert await world.status(doctor) is DoctorStatus.AVAILABLE
