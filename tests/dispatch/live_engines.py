"""Worlds on a live engine that can be lost: the memory engine (a process restarted on its SQLite file)
or Redis (flushed), each process with its epoch watcher, rebuild and repair sweep wired as the server
wires them (``server/engine_care.py``). Test modules import the ``engines`` fixture from here.

The Redis "flush" deletes every key of the test's prefix: what a Redis restarted without persistence
looks like to the server, without flushing the test database that other runs share.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from dispatch.calls import Who
from dispatch.deadlines_redis import RedisDeadlines
from dispatch.doctor_states_redis import RedisDoctorStates
from dispatch.engine_epoch import EngineEpoch, MemoryEngineEpoch, RedisEngineEpoch
from dispatch.engine_watch import EngineWatch
from dispatch.rebuild import Rebuild
from dispatch.repair_sweep import RepairSweep
from geo.location_index_redis import RedisLocationIndex
from models.enums import DoctorStatus
from models.repositories import doctors as doctor_repo
from realtime.broker_memory import MemoryBroker
from realtime.keys import Keys
from realtime.presence_memory import MemoryPresence
from server.engine import LiveEngine
from tests.clock import ManualClock
from tests.conftest import redis_test_url
from tests.dispatch.world import World, open_world

REPAIR_INTERVAL_S = 5.0


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
    sweep: RepairSweep
    changes: list[str]


def attach(world: World, epoch: EngineEpoch) -> Process:
    """The watcher and rebuild of ``world``, wired as the server wires them."""
    rebuild = Rebuild(
        world.sessions, world.engine.states, world.engine.locations, [world.loop.resume, world.sos.resume]
    )
    changes: list[str] = []

    async def local_step(new: str) -> None:
        changes.append(new)

    sweep = RepairSweep(
        world.sessions,
        world.engine.states,
        world.engine.deadlines,
        world.loop,
        world.sos,
        world.calls.publisher,
        interval_s=REPAIR_INTERVAL_S,
        now=world.clock.utcnow,
    )
    sweep.attach(world.loop.worker)
    watch = EngineWatch(epoch, rebuild.run, [local_step, sweep.ensure_armed], clock=world.clock)
    world.loop.settling = watch.settling
    world.loop.check_engine = watch.check
    return Process(world, epoch, rebuild, watch, sweep, changes)


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


@pytest.fixture(name="engines", params=["memory", "redis"])
async def engines_fixture(
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
