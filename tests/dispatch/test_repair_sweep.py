"""The repair sweep brings the engine back in line with the database where a crash left them apart:
a doctor held for a call or an offer that is over is freed, a doctor on a call is held again, lost
deadlines are re-armed; each repair is counted by kind. Memory and Redis (tests/dispatch/live_engines.py)."""

from __future__ import annotations

import uuid

from dispatch.calls import Who
from dispatch.repair_sweep import GRACE_S, SWEEP_KEY
from models.enums import CallStatus, DoctorStatus, OfferOutcome
from models.repositories import offers as offer_repo
from tests.dispatch.live_engines import (  # noqa: F401 - fixtures register by import
    REPAIR_INTERVAL_S,
    Engines,
    Process,
    choose,
    engines_fixture,
)
from tests.dispatch.world import World, lose_deadline_entries

S = CallStatus
D = DoctorStatus


async def _on_call(world: World, doctor: Who, north_m: float = 0.0) -> uuid.UUID:
    """A new call near ``north_m``, accepted by ``doctor`` (who must be the one offered)."""
    call_id = await world.new_call(await world.patient(), north_m=north_m)
    await world.loop.accept(doctor, (await world.pending_offer(call_id, doctor)).id)
    return call_id


async def _started(proc: Process) -> World:
    assert (await proc.watch.check()).value == "rebuilt"  # the sweep's entry armed by the local step
    return proc.world


async def test_a_doctor_busy_for_a_completed_call_is_freed_within_one_sweep(engines: Engines) -> None:
    """The process committed ``completed`` and died before freeing the doctor: within one sweep
    interval the doctor is back to their chosen availability, told so, and offered the next call."""
    async with engines.process() as proc:
        world = await _started(proc)
        doctor = await world.doctor(north_m=100)
        await choose(world, doctor, D.AVAILABLE)
        call_id = await _on_call(world, doctor)
        for status in (S.EN_ROUTE, S.ARRIVED, S.IN_PROGRESS, S.COMPLETED):
            await world.calls.move(doctor, call_id, status)  # the commit, without the engine's part
        assert await world.status(doctor) is D.BUSY

        assert await world.advance_s(REPAIR_INTERVAL_S) >= 1
        assert await world.status(doctor) is D.AVAILABLE
        assert proc.sweep.totals["busy_over"] == 1
        assert world.events(f"doctor:{doctor.user_id}", "doctor.status")[-1]["status"] == "available"
        next_call = await world.new_call(await world.patient(), north_m=300)
        await world.pending_offer(next_call, doctor)
        # The sweep goes on, one interval at a time, repairing nothing more.
        assert (await world.engine.deadlines.get(SWEEP_KEY)) is not None
        await world.advance_s(REPAIR_INTERVAL_S)
        assert proc.sweep.totals["sweeps"] == 2 and proc.sweep.totals["busy_over"] == 1


async def test_a_sweep_of_a_consistent_engine_repairs_nothing(engines: Engines) -> None:
    """Offers pending, doctors on calls, a doctor offered a moment ago: nothing is touched."""
    async with engines.process() as proc:
        world = await _started(proc)
        busy = await world.doctor(north_m=100)
        offered = await world.doctor(north_m=5_000)
        await _on_call(world, busy)
        waiting = await world.new_call(await world.patient(), north_m=5_000)
        await world.pending_offer(waiting, offered)
        before = await world.engine.states.get_many([str(busy.user_id), str(offered.user_id)])
        assert await proc.sweep.sweep() == {}
        assert await world.engine.states.get_many([str(busy.user_id), str(offered.user_id)]) == before


async def test_doctors_held_for_decided_offers_are_settled(engines: Engines) -> None:
    """An offer declined in the database but the doctor never released goes back to their chosen
    availability; an offer accepted whose doctor was never booked becomes busy with the call."""
    async with engines.process() as proc:
        world = await _started(proc)
        declined = await world.doctor(north_m=100)
        await choose(world, declined, D.PAUSED)
        await world.set_status(declined, D.AVAILABLE)  # available now, paused is what they chose last
        first = await world.new_call(await world.patient())
        offer = await world.pending_offer(first, declined)
        async with world.sessions.begin() as session:
            await offer_repo.decide(session, offer.id, OfferOutcome.DECLINED, world.clock.utcnow())

        accepted = await world.doctor(north_m=-9_000)
        second = await world.new_call(await world.patient(), north_m=-9_000)
        taken = await world.pending_offer(second, accepted)
        await world.loop.accept(accepted, taken.id)
        states = world.engine.states  # the accept committed; the doctor's booking "was lost":
        await states.compare_and_set(str(accepted.user_id), expected=D.BUSY, new=D.AVAILABLE)
        await states.compare_and_set(
            str(accepted.user_id), expected=D.AVAILABLE, new=D.OFFERED, ref=str(taken.id)
        )

        # The first call is left offered with no open offer: its step is re-armed too.
        assert await proc.sweep.sweep() == {"offered_decided": 1, "offered_accepted": 1, "step": 1}
        assert await world.status(declined) is D.PAUSED
        state = await world.state(accepted)
        assert (state.status, state.ref) == (D.BUSY, str(second))


async def test_states_written_before_their_commit_get_a_grace(engines: Engines) -> None:
    """A reservation whose offer row does not exist yet, a dispatcher's assignment not committed yet:
    left alone for GRACE_S, then freed (the process died between the engine and the database)."""
    async with engines.process() as proc:
        world = await _started(proc)
        reserved = await world.doctor(north_m=100)
        assigned = await world.doctor(north_m=200)
        searching = await world.new_call(await world.patient(), north_m=-30_000)  # nobody in range
        states = world.engine.states
        await states.compare_and_set(
            str(reserved.user_id), expected=D.AVAILABLE, new=D.OFFERED, ref=str(uuid.uuid4())
        )
        await states.compare_and_set(
            str(assigned.user_id), expected=D.AVAILABLE, new=D.BUSY, ref=str(searching)
        )
        assert await proc.sweep.sweep() == {}
        world.clock.advance_s(GRACE_S)
        assert await proc.sweep.sweep() == {"offered_unmade": 1, "busy_stale": 1}
        assert await world.status(reserved) is D.OFFLINE  # never chose anything in the database
        assert await world.status(assigned) is D.OFFLINE


async def test_a_doctor_on_a_call_is_held_again(engines: Engines) -> None:
    """The doctor's app re-announced ``available`` while the database has them on a call."""
    async with engines.process() as proc:
        world = await _started(proc)
        doctor = await world.doctor(north_m=100)
        call_id = await _on_call(world, doctor)
        await world.engine.states.compare_and_set(str(doctor.user_id), expected=D.BUSY, new=D.AVAILABLE)
        proc.sweep.hold_on_call = False
        assert await proc.sweep.sweep() == {}  # the switch holds it back
        proc.sweep.hold_on_call = True
        assert await proc.sweep.sweep() == {"busy_restored": 1}
        state = await world.state(doctor)
        assert (state.status, state.ref) == (D.BUSY, str(call_id))
        assert proc.sweep.totals["busy_restored"] == 1


async def test_lost_deadlines_are_rearmed_and_counted(engines: Engines) -> None:
    async with engines.process() as proc:
        world = await _started(proc)
        offered = await world.doctor(north_m=100)
        waiting = await world.new_call(await world.patient())
        offer = await world.pending_offer(waiting, offered)
        searching = await world.new_call(await world.patient(), north_m=-30_000, start=False)
        lost = await lose_deadline_entries(world)
        assert f"offer:{offer.id}" in lost and SWEEP_KEY in lost
        assert await proc.sweep.sweep() == {"offer": 1, "step": 1}
        assert (await world.engine.deadlines.get(f"offer:{offer.id}")) is not None
        assert (await world.engine.deadlines.get(f"step:{searching}")) is not None
        assert await proc.sweep.sweep() == {}
        await proc.sweep.ensure_armed()  # what every process's watcher does at start and on a change
        assert (await world.engine.deadlines.get(SWEEP_KEY)) is not None
