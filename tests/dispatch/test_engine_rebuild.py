"""The live engine is a cache: lost whole (the memory engine's process restarted on its SQLite file, a
Redis flushed), it is noticed by the epoch watcher and rebuilt from the database.

The memory runs restart the "process": a second world opens the same database file with a fresh
memory engine. The Redis runs keep the process and flush the engine (every key of the test's prefix
deleted: what a Redis restarted without persistence looks like to the server, without flushing the
test database other runs share). Time is the world's manual clock throughout.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dispatch.calls import Who
from dispatch.deadlines_redis import RedisDeadlines
from dispatch.doctor_states_redis import RedisDoctorStates
from dispatch.engine_epoch import EngineEpoch, MemoryEngineEpoch, RedisEngineEpoch
from dispatch.engine_watch import EngineWatch, Outcome
from dispatch.rebuild import Rebuild
from dispatch.settings import DispatchSettings
from geo.location_index_redis import RedisLocationIndex
from models.enums import CallStatus, DoctorStatus, OfferOutcome, SosKind
from models.repositories import doctors as doctor_repo
from realtime.broker_memory import MemoryBroker
from realtime.keys import Keys
from realtime.presence_memory import MemoryPresence
from server.engine import LiveEngine
from tests.clock import ManualClock
from tests.conftest import redis_test_url
from tests.dispatch.world import World, open_world

S = CallStatus
D = DoctorStatus
OFFER_TIMEOUT_S = DispatchSettings().offer_timeout_s


async def choose(world: World, doctor: Who, status: DoctorStatus) -> None:
    """The doctor's own availability switch, as ``dispatch/availability.py`` records it: in the engine
    and as ``doctor_profiles.chosen_status`` (the rebuild's source)."""
    await world.set_status(doctor, status)
    async with world.sessions.begin() as session:
        profile = await doctor_repo.get_profile(session, doctor.user_id)
        assert profile is not None
        profile.chosen_status = status.value


@dataclass
class Process:
    """One server process's part in the rebuild: its world, the engine's epoch role, the rebuild and
    the watcher (with a record of the local steps it ran)."""

    world: World
    epoch: EngineEpoch
    rebuild: Rebuild
    watch: EngineWatch
    changes: list[str]


def attach(world: World, epoch: EngineEpoch) -> Process:
    """The watcher and rebuild of ``world``, wired as the server wires them."""
    rebuild = Rebuild(
        world.sessions, world.engine.states, world.engine.locations, [world.loop.resume, world.sos.resume]
    )
    changes: list[str] = []

    async def local_step(new: str) -> None:
        changes.append(new)

    watch = EngineWatch(epoch, rebuild.run, [local_step], clock=world.clock)
    return Process(world, epoch, rebuild, watch, changes)


class Engines:
    """Opens worlds on one database file and one engine backend; :meth:`lose` loses the engine."""

    def __init__(self, backend: str, db_path: Path, clock: ManualClock, redis: aioredis.Redis | None) -> None:
        self.backend = backend
        self.url = f"sqlite+aiosqlite:///{db_path}"
        self.clock = clock
        self.redis = redis
        self.keys = Keys(prefix=f"test:{uuid.uuid4().hex[:12]}:")
        self.opened = 0

    def _engine(self) -> LiveEngine | None:
        if self.redis is None:
            return None  # open_world's fresh memory engine
        clock = self.clock
        return LiveEngine(
            kind="redis",
            url="redis://test",
            locations=RedisLocationIndex(self.redis, self.keys, clock=clock),
            states=RedisDoctorStates(self.redis, self.keys, clock=clock),
            deadlines=RedisDeadlines(self.redis, self.keys),
            sos_deadlines=RedisDeadlines(self.redis, self.keys, queue="sos"),
            broker=MemoryBroker(clock=clock),  # the world records events from a memory broker
            presence=MemoryPresence(clock=clock),
        )

    @contextlib.asynccontextmanager
    async def process(self) -> AsyncIterator[Process]:
        """A process: a world on the database and the engine (memory: a fresh one), with its watcher."""
        self.opened += 1
        seq_start = 1000 * (self.opened - 1)
        async with open_world(
            self.url, clock=self.clock, engine=self._engine(), seq_start=seq_start
        ) as world:
            epoch: EngineEpoch = (
                MemoryEngineEpoch(clock=self.clock)
                if self.redis is None
                else RedisEngineEpoch(self.redis, self.keys)
            )
            yield attach(world, epoch)

    async def flush(self) -> None:
        """Redis: every key of the engine gone, as after a restart without persistence."""
        assert self.redis is not None
        stale = [key async for key in self.redis.scan_iter(match=f"{self.keys.prefix}*", count=1000)]
        if stale:
            await self.redis.delete(*stale)


@pytest.fixture(params=["memory", "redis"])
async def engines(
    request: pytest.FixtureRequest, template_db: Path, tmp_path: Path
) -> AsyncIterator[Engines]:
    path = tmp_path / "rebuild.db"
    shutil.copyfile(template_db, path)
    redis = None
    if request.param == "redis":
        redis = aioredis.Redis.from_url(redis_test_url())
    engines = Engines(request.param, path, ManualClock(), redis)
    try:
        yield engines
    finally:
        if redis is not None:
            await engines.flush()
            await redis.aclose()


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
