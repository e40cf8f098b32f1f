"""The live engine is a cache: lost whole (the memory engine's process restarted on its SQLite file, a
Redis flushed), it is noticed by the epoch watcher and rebuilt from the database.

The memory runs restart the "process": a second world opens the same database file with a fresh
memory engine. The Redis runs keep the process and flush the engine (tests/dispatch/live_engines.py).
Time is the world's manual clock throughout.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from dispatch.engine_watch import SETTLE_S, Outcome
from dispatch.settings import DispatchSettings
from models.enums import CallStatus, DoctorStatus, OfferOutcome, SosKind
from tests.dispatch.live_engines import (  # noqa: F401 - fixtures register by import
    Engines,
    Process,
    choose,
    engines_fixture,
)

S = CallStatus
D = DoctorStatus
OFFER_TIMEOUT_S = DispatchSettings().offer_timeout_s


RestartFn = Callable[[], contextlib.AbstractAsyncContextManager[Process]]


async def test_lost_engine_is_rebuilt_from_the_database(engines: Engines) -> None:
    """Busy, offered and chosen states and the open deadlines come back; a second check changes
    nothing; the offer restored expires at its own deadline and the call goes to the next doctor,
    who re-announced."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(engines.process())
        world = first.world
        assert await first.watch.check() is Outcome.REBUILT  # a new engine has no epoch
        epoch_before = first.watch.known
        busy = await world.doctor(north_m=100)
        offered = await world.doctor(north_m=5_000)
        idle = await world.doctor(north_m=8_000)
        paused = await world.doctor(north_m=9_000)
        for doctor in (busy, offered, idle):
            await choose(world, doctor, D.AVAILABLE)
        await choose(world, paused, D.PAUSED)
        assigned = await world.new_call(await world.patient())
        await world.loop.accept(busy, (await world.pending_offer(assigned, busy)).id)
        waiting = await world.new_call(await world.patient(), north_m=5_000)
        offer = await world.pending_offer(waiting, offered)
        alert = await world.sos.raise_alert(busy, SosKind.DANGER, lat=55.75, lon=37.61)

        if engines.backend == "memory":
            await stack.aclose()  # the process dies; a new one opens the same file
            stack = contextlib.AsyncExitStack()
            second = await stack.enter_async_context(engines.process())
        else:
            await engines.flush()
            second = first
        world = second.world
        assert await world.status(busy) is D.OFFLINE  # the engine knows nothing

        assert await second.watch.check() is Outcome.REBUILT
        assert second.watch.known not in (None, epoch_before)
        assert second.changes[-1] == second.watch.known  # the local steps ran for the new epoch
        states = await world.engine.states.get_many([str(d.user_id) for d in (busy, offered, idle, paused)])
        assert [(s.status, s.ref) for s in states.values()] == [
            (D.BUSY, str(assigned)),
            (D.OFFERED, str(offer.id)),
            (D.AVAILABLE, None),
            (D.PAUSED, None),
        ]
        assert await world.engine.locations.get_specialties(str(idle.user_id)) == {"therapist"}
        assert (await world.engine.deadlines.get(f"offer:{offer.id}")) is not None
        assert (await world.engine.sos_deadlines.get(f"sos:{alert['id']}")) is not None
        assert second.rebuild.totals["doctors:busy"] == 1 and second.rebuild.totals["deadlines:offer"] == 1

        assert await second.watch.check() is Outcome.SAME
        report = await second.rebuild.run()  # idempotent: nothing left to write
        assert report.doctors == {} and report.deadlines == {}

        # Positions are not in the database: the doctors' apps re-announce them.
        await world.place(idle, 8_000)
        await world.advance_s(OFFER_TIMEOUT_S)
        assert (await world.offers(waiting))[0].outcome == OfferOutcome.EXPIRED.value
        assert await world.status(offered) is D.AVAILABLE
        await world.pending_offer(waiting, idle)
        assert await world.call_status(assigned) is S.ASSIGNED
        await stack.aclose()


@pytest.mark.parametrize("engines", ["redis"], indirect=True)
async def test_one_process_rebuilds_the_others_follow(engines: Engines) -> None:
    """Two processes on one Redis: after a flush, one rebuilds (the rebuild lock), the other waits
    while the lock is held, then sees the new epoch and runs its local steps."""
    async with engines.process() as one, engines.process() as two:
        assert await one.watch.check() is Outcome.REBUILT
        assert await two.watch.check() is Outcome.FIRST
        assert one.watch.known == two.watch.known
        await engines.flush()
        assert await one.epoch.lock("someone")  # a third process is rebuilding
        assert await two.watch.check() is Outcome.WAITING
        await one.epoch.unlock("someone")
        assert await two.watch.check() is Outcome.REBUILT
        assert await one.watch.check() is Outcome.CHANGED
        assert one.watch.known == two.watch.known and len(one.changes) == len(two.changes) == 2
        assert two.rebuild.totals["rebuilds"] == 1 and one.rebuild.totals["rebuilds"] == 1


async def test_a_failed_rebuild_is_retried_after_a_backoff(engines: Engines) -> None:
    async with engines.process() as proc:
        real = proc.watch.rebuild
        calls = 0

        async def failing() -> object:
            nonlocal calls
            calls += 1
            raise OSError("database down")

        proc.watch.rebuild = failing
        assert await proc.watch.check() is Outcome.FAILED
        assert await proc.watch.check() is Outcome.WAITING  # backoff: 1 s
        proc.world.clock.advance_s(1)
        assert await proc.watch.check() is Outcome.FAILED
        proc.world.clock.advance_s(1)
        assert await proc.watch.check() is Outcome.WAITING  # then 2 s
        assert calls == 2 and proc.watch.known is None and proc.changes == []
        proc.watch.rebuild = real
        proc.world.clock.advance_s(1)
        assert await proc.watch.check() is Outcome.REBUILT
        assert proc.changes == [proc.watch.known]


@pytest.mark.parametrize("engines", ["redis"], indirect=True)
async def test_a_call_while_doctors_re_announce_waits_for_them(engines: Engines) -> None:
    """Right after a rebuild no doctor has a position yet: a new call is not escalated for want of
    candidates but searched again until the doctor re-announces; once the settling window has passed,
    a call nobody can take escalates as before."""
    async with engines.process() as proc:
        world = proc.world
        assert await proc.watch.check() is Outcome.REBUILT  # a fresh engine: not a loss
        assert not proc.watch.settling()
        doctor = await world.doctor(north_m=100)
        await choose(world, doctor, D.AVAILABLE)
        await engines.flush()
        assert await proc.watch.check() is Outcome.REBUILT
        assert proc.watch.settling()

        call = await world.new_call(await world.patient())
        assert await world.call_status(call) is S.SEARCHING  # nobody has re-announced: not escalated
        await world.advance_s(1)
        assert await world.call_status(call) is S.SEARCHING
        await world.place(doctor, 100)  # the app answers the re-announce frame
        await world.advance_s(0.5)
        await world.pending_offer(call, doctor)

        await world.advance_s(SETTLE_S)
        assert not proc.watch.settling()
        far = await world.new_call(await world.patient(), north_m=-50_000)
        assert await world.call_status(far) is S.ESCALATED


@pytest.mark.parametrize("engines", ["redis"], indirect=True)
async def test_a_call_right_after_the_engine_was_lost_is_not_escalated_before_the_watch_looked(
    engines: Engines,
) -> None:
    """Redis came back empty and the periodic check has not run yet: a search that finds nobody asks
    the watcher before it escalates, which notices the loss, rebuilds and waits for the doctors."""
    async with engines.process() as proc:
        world = proc.world
        assert await proc.watch.check() is Outcome.REBUILT
        doctor = await world.doctor(north_m=100)
        await choose(world, doctor, D.AVAILABLE)
        await engines.flush()  # and no check: the next periodic one is up to a second away

        call = await world.new_call(await world.patient())
        assert await world.call_status(call) is S.SEARCHING  # asked first: not escalated
        assert proc.watch.settling() and proc.watch.totals["rebuilt"] == 2
        await world.place(doctor, 100)  # the app answers the re-announce frame
        await world.advance_s(0.5)
        await world.pending_offer(call, doctor)
