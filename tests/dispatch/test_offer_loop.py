"""The offer loop in-process: reserve, offer, accept, decline, expire to the next candidate, escalate,
and the repairs after a lost step or lost deadline entries."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
import sqlalchemy as sa

from dispatch.errors import DispatchError
from dispatch.settings import DispatchSettings
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Role, Urgency
from models.users import User
from tests.dispatch.conftest import WorldFactory
from tests.dispatch.world import World, lose_deadline_entries, lose_spawned_steps

S = CallStatus
OFFER_TIMEOUT_S = DispatchSettings().offer_timeout_s
STEP_RETRY_S = DispatchSettings().step_retry_s


async def test_a_new_call_reserves_the_nearest_doctor_and_offers_it_with_a_deadline(world: World) -> None:
    """The nearest available doctor is reserved (``offered``, ref = the offer) and gets
    ``offer.created`` with the deadline ``offer_timeout_s`` ahead; the farther one stays available;
    the call went created -> searching -> offered in one go."""
    near = await world.doctor(north_m=200)
    far = await world.doctor(north_m=900)
    call_id = await world.new_call(await world.patient())

    assert await world.call_status(call_id) is S.OFFERED
    offer = await world.pending_offer(call_id, near)
    state = await world.state(near)
    assert state.status is DoctorStatus.OFFERED and state.ref == str(offer.id)
    assert await world.status(far) is DoctorStatus.AVAILABLE
    [created] = world.events(f"doctor:{near.user_id}", "offer.created")
    assert created["offer"] == str(offer.id) and created["call"]["id"] == str(call_id)
    assert created["deadline"] == world.clock() + int(OFFER_TIMEOUT_S * 1000)
    assert world.events(f"doctor:{far.user_id}") == []
    assert await world.transitions(call_id) == {
        (None, S.CREATED),
        (S.CREATED, S.SEARCHING),
        (S.SEARCHING, S.OFFERED),
    }
    statuses = [(e["from"], e["status"]) for e in world.events(f"call:{call_id}", "call.status")]
    assert statuses == [("created", "searching"), ("searching", "offered")]


async def test_a_first_offer_writes_the_call_once_and_still_counts_both_versions(world: World) -> None:
    """created -> searching -> offered in one transaction: one UPDATE of the call (not one per change:
    a round trip each on PostgreSQL) and one INSERT of both history rows, yet each ``call.status``
    carries its own version and the row ends two versions up."""
    await world.doctor(north_m=200)
    patient = await world.patient()
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(" ".join(statement.split()[:3]).upper())

    sa.event.listen(world.db.sync_engine, "before_cursor_execute", record)
    try:
        call_id = await world.new_call(patient)
        await world.settle()
    finally:
        sa.event.remove(world.db.sync_engine, "before_cursor_execute", record)
    # The creation (call, history, outbox), the candidates' profiles and bookings in one read, then the
    # offer's transaction (the call for update, one UPDATE, the history, the offers, the outbox).
    assert len(seen) == 9, seen
    assert seen.count("UPDATE CALLS SET") == 1, seen
    assert seen.count("INSERT INTO CALL_EVENTS") == 2, seen  # the creation's, then both changes' rows
    versions = [(e["status"], e["version"]) for e in world.events(f"call:{call_id}", "call.status")]
    assert versions == [("searching", 2), ("offered", 3)]
    assert (await world.call(call_id)).version == 3
    assert await world.transitions(call_id) == {
        (None, S.CREATED),
        (S.CREATED, S.SEARCHING),
        (S.SEARCHING, S.OFFERED),
    }


async def test_accept_assigns_the_call_and_books_the_doctor(world: World) -> None:
    """Accepting: the call is assigned to the doctor, who becomes ``busy`` with the call; the
    doctor hears ``call.assigned`` and the call's channel ``call.status`` by the doctor, with the ETA;
    the offer's deadline no longer fires."""
    doctor = await world.doctor(north_m=300)
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, doctor)

    moved = await world.loop.accept(doctor, offer.id)
    await world.settle()

    call = await world.call(call_id)
    assert moved.previous is S.OFFERED and call.status == S.ASSIGNED and call.doctor_id == doctor.user_id
    state = await world.state(doctor)
    assert state.status is DoctorStatus.BUSY and state.ref == str(call_id)
    assert await world.outcomes(call_id) == [OfferOutcome.ACCEPTED]
    assert world.events(f"doctor:{doctor.user_id}", "call.assigned")[0]["offer"] == str(offer.id)
    last = world.events(f"call:{call_id}", "call.status")[-1]
    assert (last["status"], last["actor"], last["eta_s"]) == ("assigned", "doctor", round(offer.eta_s or 0))
    assert await world.advance_s(OFFER_TIMEOUT_S * 4) == 0
    assert await world.call_status(call_id) is S.ASSIGNED


async def test_accepting_twice_is_answered_with_the_same_call(world: World) -> None:
    """A retried accept (the app did not get the answer) is not an error and changes nothing."""
    doctor = await world.doctor(north_m=300)
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, doctor)
    await world.loop.accept(doctor, offer.id)
    again = await world.loop.accept(doctor, offer.id)
    assert again.call.id == call_id and again.previous is S.ASSIGNED
    assert len(await world.history(call_id)) == 4  # created, searching, offered, assigned


async def test_decline_goes_to_the_next_candidate_and_frees_the_doctor(world: World) -> None:
    """A decline frees the doctor at once and the call is offered to the next nearest, in the same
    search round (the decliner is not asked again)."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=600)
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, first)

    await world.loop.decline(first, offer.id, reason="too far")
    await world.settle()

    assert await world.status(first) is DoctorStatus.AVAILABLE
    await world.pending_offer(call_id, second)
    assert await world.outcomes(call_id) == sorted([OfferOutcome.DECLINED, OfferOutcome.PENDING])
    assert (S.OFFERED, S.SEARCHING) in await world.transitions(call_id)
    with pytest.raises(DispatchError) as refused:
        await world.loop.accept(first, offer.id)
    assert refused.value.code == "offer_declined"


async def test_an_unanswered_offer_expires_at_its_deadline_and_goes_to_the_next(world: World) -> None:
    """Nothing happens a millisecond before the deadline; at the deadline the offer expires, the
    doctor is freed and told ``offer.expired``, and the next candidate gets the call."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=600)
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, first)

    await world.advance_s(OFFER_TIMEOUT_S - 0.001)
    assert await world.status(first) is DoctorStatus.OFFERED
    assert world.events(f"doctor:{first.user_id}", "offer.expired") == []

    await world.advance_s(0.001)
    assert world.events(f"doctor:{first.user_id}", "offer.expired") == [
        {"offer": str(offer.id), "call": str(call_id)}
    ]
    assert await world.status(first) is DoctorStatus.AVAILABLE
    await world.pending_offer(call_id, second)
    assert await world.outcomes(call_id) == sorted([OfferOutcome.EXPIRED, OfferOutcome.PENDING])


async def test_an_accept_after_the_deadline_is_refused_even_before_the_expiry_ran(world: World) -> None:
    """The deadline is the offer's time, not the worker's: at the deadline an accept is
    ``offer_expired`` although the expiry has not run yet."""
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, doctor)
    world.clock.advance_s(OFFER_TIMEOUT_S)
    with pytest.raises(DispatchError) as refused:
        await world.loop.accept(doctor, offer.id)
    assert refused.value.code == "offer_expired"
    assert await world.call_status(call_id) is S.OFFERED


async def test_a_call_nobody_can_take_is_escalated_to_the_dispatchers(world: World) -> None:
    """No available doctor within the last ring: the call is escalated and ``call.escalated`` goes to
    the dispatchers. Doctors who are paused, too far, of another specialty or unverified do not count."""
    await world.doctor(north_m=100, available=False)
    await world.doctor(north_m=30_000)
    await world.doctor(north_m=100, specialties=("surgeon",))
    await world.doctor(north_m=100, verified=False)
    call_id = await world.new_call(await world.patient())

    assert await world.call_status(call_id) is S.ESCALATED
    assert await world.offers(call_id) == []
    [escalated] = world.events("dispatch", "call.escalated")
    assert escalated["call"]["id"] == str(call_id) and "20 km" in escalated["reason"]


async def test_disabled_doctors_and_former_doctors_get_no_offer(world: World) -> None:
    """An account disabled, or given another role, while its doctor is still available in the engine
    (its app has not gone silent yet) is no candidate: the call escalates."""
    disabled = await world.doctor(north_m=100)
    demoted = await world.doctor(north_m=150)
    async with world.sessions.begin() as session:
        await session.execute(sa.update(User).where(User.id == disabled.user_id).values(is_active=False))
        await session.execute(
            sa.update(User).where(User.id == demoted.user_id).values(role=Role.PATIENT.value)
        )
    call_id = await world.new_call(await world.patient())

    assert await world.call_status(call_id) is S.ESCALATED
    assert await world.offers(call_id) == []


async def test_a_call_everyone_declined_escalates(world: World) -> None:
    """When the last candidate in reach declines, the next search finds nobody new and escalates."""
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(await world.patient())
    await world.loop.decline(doctor, (await world.pending_offer(call_id, doctor)).id)
    await world.settle()
    assert await world.call_status(call_id) is S.ESCALATED
    assert await world.status(doctor) is DoctorStatus.AVAILABLE


async def test_a_call_escalates_after_max_offers(make_world: WorldFactory) -> None:
    """``max_offers`` bounds the offers of one search round: with more candidates than that, the call
    escalates once they are used up."""
    async with make_world(settings=DispatchSettings(max_offers=2)) as world:
        for i in range(3):
            await world.doctor(north_m=100 * (i + 1))
        call_id = await world.new_call(await world.patient())
        for _ in range(2):
            doctor, offer = await world.the_pending_offer(call_id)
            await world.loop.decline(doctor, offer.id)
            await world.settle()
        assert await world.call_status(call_id) is S.ESCALATED
        assert len(await world.offers(call_id)) == 2
        assert "2 offers" in world.events("dispatch", "call.escalated")[0]["reason"]


async def test_a_planned_call_waits_until_its_lead_time(world: World) -> None:
    """A planned call stays ``created`` until ``planned_lead_s`` before its time, then is offered."""
    doctor = await world.doctor(north_m=100)
    lead_s = DispatchSettings().planned_lead_s
    at = world.clock.utcnow() + dt.timedelta(seconds=lead_s + 600)
    call_id = await world.new_call(await world.patient(), urgency=Urgency.PLANNED, scheduled_at=at)
    assert await world.call_status(call_id) is S.CREATED

    await world.advance_s(599)
    assert await world.call_status(call_id) is S.CREATED
    await world.place(doctor, 100)  # the app keeps sending fixes
    await world.advance_s(1)
    assert await world.call_status(call_id) is S.OFFERED
    await world.pending_offer(call_id, doctor)


async def test_a_lost_first_step_is_taken_over_by_its_safety_net(world: World) -> None:
    """The process that created the call dies before its step runs: the step's safety-net entry
    comes due ``step_retry_s`` later and offers the call."""
    doctor = await world.doctor(north_m=100)
    call_id = await world.new_call(await world.patient(), start=False)
    call = await world.call(call_id)
    with lose_spawned_steps(world.loop) as lost:
        await world.loop.start(call)
    assert lost and await world.call_status(call_id) is S.CREATED

    await world.advance_s(STEP_RETRY_S - 0.001)
    assert await world.call_status(call_id) is S.CREATED
    await world.advance_s(0.001)
    assert await world.call_status(call_id) is S.OFFERED
    await world.pending_offer(call_id, doctor)


async def test_a_lost_step_after_a_decline_is_taken_over(world: World) -> None:
    """A decline commits ``offered -> searching``; if the step after it is lost, the entry armed
    before the commit brings the call to the next candidate."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=600)
    call_id = await world.new_call(await world.patient())
    with lose_spawned_steps(world.loop) as lost:
        await world.loop.decline(first, (await world.pending_offer(call_id, first)).id)
    assert lost and await world.call_status(call_id) is S.SEARCHING

    await world.advance_s(STEP_RETRY_S)
    await world.pending_offer(call_id, second)


async def test_resume_rearms_an_open_offer_whose_entry_was_lost(world: World) -> None:
    """The memory engine lost its entries (a restart); without ``resume`` the offer would never
    expire; after it, the offer expires at its own deadline and the call moves on."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=600)
    call_id = await world.new_call(await world.patient())
    offer = await world.pending_offer(call_id, first)
    assert f"offer:{offer.id}" in await lose_deadline_entries(world)

    await world.advance_s(OFFER_TIMEOUT_S)
    assert await world.status(first) is DoctorStatus.OFFERED  # nothing expires it

    await world.loop.resume()
    await world.run_due()
    assert await world.status(first) is DoctorStatus.AVAILABLE
    await world.pending_offer(call_id, second)


async def test_resume_restarts_a_call_stuck_in_searching(world: World) -> None:
    """A searching call with neither a running step nor an entry (both lost) is started again by
    ``resume`` at once."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=600)
    call_id = await world.new_call(await world.patient())
    with lose_spawned_steps(world.loop):
        await world.loop.decline(first, (await world.pending_offer(call_id, first)).id)
    await lose_deadline_entries(world)
    await world.advance_s(STEP_RETRY_S * 3)
    assert await world.call_status(call_id) is S.SEARCHING

    await world.loop.resume()
    await world.run_due()
    await world.pending_offer(call_id, second)


async def test_resume_leaves_alone_an_entry_removed_by_a_step_that_finished_meanwhile(world: World) -> None:
    """The race behind issue 16's "deadlines re-armed kind=step" warnings under load: ``resume`` reads
    the database (the call still searching), a live step then makes its offer and removes its own
    entry, and only then does ``resume`` read the entry. The entry is not lost (the call now waits on
    its offer's entry): nothing is armed, and the doctor's offer stands."""
    first = await world.doctor(north_m=100)
    second = await world.doctor(north_m=600)
    call_id = await world.new_call(await world.patient())
    with lose_spawned_steps(world.loop):
        await world.loop.decline(first, (await world.pending_offer(call_id, first)).id)
    assert await world.call_status(call_id) is S.SEARCHING
    deadlines = world.loop.deadlines
    real_get = deadlines.get
    raced: list[str] = []

    async def get_after_a_step(key: str) -> object:
        if key == f"step:{call_id}" and not raced:
            raced.append(key)
            await world.loop.step(call_id)  # the live step: offers, then its entry goes
            await deadlines.cancel(key)
        return await real_get(key)

    with mock.patch.object(deadlines, "get", get_after_a_step):
        armed = await world.loop.resume()
    assert raced and armed == {"step": 0, "offer": 0}
    assert await deadlines.get(f"step:{call_id}") is None
    offer = await world.pending_offer(call_id, second)
    assert await deadlines.get(f"offer:{offer.id}") is not None
