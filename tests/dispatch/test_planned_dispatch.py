"""Dispatch around visit bookings (issue 20), in process with a manual clock, on SQLite and PostgreSQL:
the booked doctor alone at the lead time, the booking released when they are offline, decline or let
the offer expire; urgent calls kept from doctors who could not be back for a booked visit (the
14:00 / 13:30 / 11:00 case, with the candidates view's reason); an emergency displacing a booking."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from dispatch.candidates import nearest_for_call
from models.enums import CallStatus as S
from models.enums import DoctorStatus, Urgency
from tests.dispatch.booked import SETTINGS, book, booking_row, to_lead_time
from tests.dispatch.live_engines import (  # noqa: F401 - fixtures register by import
    Engines,
    choose,
    engines_fixture,
)
from tests.dispatch.world import World

LEAD_S = SETTINGS.planned_lead_s


async def test_no_offer_before_lead_then_the_booked_doctor_alone(pworld: World) -> None:
    """Nothing before ``start - lead``; at it the booked doctor alone is offered, though another
    doctor is nearer, and the offer is marked planned with its booking and time."""
    world = pworld
    booked = await world.doctor(north_m=1500)
    nearer = await world.doctor(north_m=100)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    call_id = await book(world, booked, at)
    assert await world.call_status(call_id) is S.CREATED

    lead = at - dt.timedelta(seconds=LEAD_S)
    world.clock.set(int(lead.timestamp() * 1000) - 1000)
    await world.run_due()
    assert await world.call_status(call_id) is S.CREATED
    assert await world.offers(call_id) == []

    await world.place(booked, 1500)
    await world.place(nearer, 100)
    await world.advance_s(1)
    assert await world.call_status(call_id) is S.OFFERED
    doctor, _offer = await world.the_pending_offer(call_id)
    assert doctor.user_id == booked.user_id
    created = world.events(f"doctor:{booked.user_id}", "offer.created")
    assert created[-1]["planned"] is True
    assert created[-1]["booking"] == str((await booking_row(world, call_id)).id)
    assert created[-1]["scheduled_at"] == int(at.timestamp() * 1000)
    assert world.events(f"doctor:{nearer.user_id}", "offer.created") == []
    assert (await booking_row(world, call_id)).active


async def test_booked_doctor_offline_releases_and_offers_another(pworld: World) -> None:
    """The booked doctor is offline at the lead time: the booking is released (``booking.released``
    on the call and dispatch) and another free doctor is offered in the same step."""
    world = pworld
    booked = await world.doctor(north_m=1500)
    other = await world.doctor(north_m=300)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    call_id = await book(world, booked, at)
    await world.set_status(booked, DoctorStatus.OFFLINE)

    await to_lead_time(world, at, (other, 300))
    assert await world.call_status(call_id) is S.OFFERED
    doctor, _offer = await world.the_pending_offer(call_id)
    assert doctor.user_id == other.user_id
    released = world.events(f"call:{call_id}", "booking.released")
    assert [e["reason"] for e in released] == ["doctor_unavailable"]
    assert released[0]["doctor"] == str(booked.user_id)
    assert world.events("dispatch", "booking.released") == released
    row = await booking_row(world, call_id)
    assert not row.active and row.release_reason == "doctor_unavailable"
    assert "planned" not in world.events(f"doctor:{other.user_id}", "offer.created")[-1]


@pytest.mark.parametrize("answer", ["declined", "expired"])
async def test_booked_doctor_declines_or_lets_expire(pworld: World, answer: str) -> None:
    """The booked doctor declines, or lets the offer expire: the booking is released with that reason
    and the ordinary search offers the call to another doctor."""
    world = pworld
    booked = await world.doctor(north_m=1500)
    other = await world.doctor(north_m=300)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    call_id = await book(world, booked, at)
    await to_lead_time(world, at, (booked, 1500), (other, 300))
    offer = await world.pending_offer(call_id, booked)

    if answer == "declined":
        await world.loop.decline(booked, offer.id)
        await world.settle()
    else:
        await world.place(other, 300)
        await world.advance_s(SETTINGS.offer_timeout_s)
    assert await world.call_status(call_id) is S.OFFERED
    await world.pending_offer(call_id, other)
    assert [e["reason"] for e in world.events(f"call:{call_id}", "booking.released")] == [answer]
    assert not (await booking_row(world, call_id)).active


async def test_urgent_call_avoids_a_doctor_booked_soon(pworld: World) -> None:
    """A doctor booked at 14:00 is not offered an urgent call at 13:30 two kilometres away (the
    candidates view says ``booked``), and is offered one at 11:00."""
    world = pworld
    doctor = await world.doctor(north_m=0)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    await book(world, doctor, at, north_m=5000)
    patient = await world.patient()

    world.clock.set(int(dt.datetime(2027, 3, 1, 11, 0, tzinfo=dt.UTC).timestamp() * 1000))
    await world.run_due()
    await world.place(doctor, 0)
    early = await world.new_call(patient, north_m=2000)
    assert await world.call_status(early) is S.OFFERED
    await world.pending_offer(early, doctor)
    await world.loop.decline(doctor, (await world.pending_offer(early, doctor)).id)
    await world.settle()

    world.clock.set(int(dt.datetime(2027, 3, 1, 13, 30, tzinfo=dt.UTC).timestamp() * 1000))
    await world.place(doctor, 0)
    late = await world.new_call(patient, north_m=2000)
    assert await world.call_status(late) is S.ESCALATED
    assert [o for o in await world.offers(late) if o.doctor_id == doctor.user_id] == []

    call = await world.call(late)
    view = await nearest_for_call(
        call,
        world.engine.locations,
        world.sessions,
        SETTINGS.ranking,
        now=world.clock.utcnow(),
        visit_estimate_s=SETTINGS.visit_estimate_s,
    )
    mine = [c for c in view if c.doctor_id == str(doctor.user_id)]
    assert len(mine) == 1 and mine[0].reason == "booked"
    assert mine[0].booked_at_ms == int(at.timestamp() * 1000)


async def test_an_emergency_displaces_a_booking(pworld: World) -> None:
    """An emergency is offered to a doctor booked soon; accepting it releases the booking
    (``displaced``, on the booked call's channel for its patient), and the booked call is then
    dispatched at its lead time to another doctor."""
    world = pworld
    doctor = await world.doctor(north_m=0)
    other = await world.doctor(north_m=800)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    planned = await book(world, doctor, at, north_m=1000)

    world.clock.set(int(dt.datetime(2027, 3, 1, 12, 59, tzinfo=dt.UTC).timestamp() * 1000))
    await world.run_due()
    await world.place(doctor, 0)
    await world.set_status(other, DoctorStatus.PAUSED)
    emergency = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY, north_m=200)
    offer = await world.pending_offer(emergency, doctor)
    await world.loop.accept(doctor, offer.id)
    await world.settle()

    released = world.events(f"call:{planned}", "booking.released")
    assert [e["reason"] for e in released] == ["displaced"]
    assert not (await booking_row(world, planned)).active
    assert await world.call_status(planned) is S.CREATED

    await world.set_status(other, DoctorStatus.AVAILABLE)
    await to_lead_time(world, at, (other, 800))
    assert await world.call_status(planned) is S.OFFERED
    await world.pending_offer(planned, other)


async def test_a_booked_call_keeps_its_lead_time_across_an_engine_loss(engines: Engines) -> None:
    """Memory (a new process) and Redis (flushed): the lost step of a booked call is re-armed from the
    database by the rebuild; at the lead time the booked doctor, who re-announced, alone gets the
    planned offer."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(engines.process())
        world = first.world
        await first.watch.check()
        booked = await world.doctor(north_m=1500)
        nearer = await world.doctor(north_m=100)
        for doctor in (booked, nearer):
            await choose(world, doctor, DoctorStatus.AVAILABLE)
        at = world.clock.utcnow().replace(microsecond=0) + dt.timedelta(seconds=LEAD_S + 3600)
        call_id = await book(world, booked, at)

        if engines.backend == "memory":
            await stack.aclose()
            stack = contextlib.AsyncExitStack()
            second = await stack.enter_async_context(engines.process())
        else:
            await engines.flush()
            second = first
        world = second.world
        await second.watch.check()
        await world.settle()
        await world.listen(f"doctor:{booked.user_id}")
        assert await world.engine.deadlines.get(f"step:{call_id}") is not None  # re-armed
        for doctor in (booked, nearer):
            await choose(world, doctor, DoctorStatus.AVAILABLE)  # their apps re-announce
        await to_lead_time(world, at, (booked, 1500), (nearer, 100))
        assert await world.call_status(call_id) is S.OFFERED
        doctor, _offer = await world.the_pending_offer(call_id)
        assert doctor.user_id == booked.user_id
        assert world.events(f"doctor:{booked.user_id}", "offer.created")[-1]["planned"] is True
        await stack.aclose()


async def test_an_emergency_assigned_by_hand_displaces_a_booking(pworld: World) -> None:
    """A dispatcher assigns an emergency to a doctor booked soon: the booking is released
    (``displaced``) in the assignment's transaction; an urgent call assigned by hand keeps it."""
    world = pworld
    doctor = await world.doctor(north_m=0)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    planned = await book(world, doctor, at, north_m=1000)
    world.clock.set(int(dt.datetime(2027, 3, 1, 12, 59, tzinfo=dt.UTC).timestamp() * 1000))
    await world.place(doctor, 0)
    await world.set_status(doctor, DoctorStatus.PAUSED)  # nobody takes the calls by themselves

    urgent = await world.new_call(await world.patient(), north_m=200)
    await world.loop.assign(world.dispatcher, urgent, doctor.user_id)
    await world.settle()
    assert (await booking_row(world, planned)).active  # an urgent call by hand: the dispatcher's choice
    await world.loop.cancel(world.dispatcher, urgent, "test")
    await world.settle()
    await world.set_status(doctor, DoctorStatus.PAUSED)

    emergency = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY, north_m=200)
    await world.loop.assign(world.dispatcher, emergency, doctor.user_id)
    await world.settle()
    assert [e["reason"] for e in world.events(f"call:{planned}", "booking.released")] == ["displaced"]
    assert not (await booking_row(world, planned)).active
