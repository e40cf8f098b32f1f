"""A city under load for the dispatch and SOS benchmarks: each target's database and server, ten
thousand doctors online (subscribed to their channel, available, streaming positions), and readings of
who used how much CPU over a window.

Targets: ``memory`` is the memory engine over a scratch SQLite file (a single-process deployment);
``redis`` is the Redis engine over a scratch PostgreSQL/PostGIS database (the scale-out deployment:
``TOT_DATABASE_URL`` on a database this module creates, migrates and drops, ``TOT_ENGINE_URL`` on
``--redis-url`` with a random key prefix deleted at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from loadtests.accounts import Accounts, ServiceArea, create_pg_database, drop_pg_database, prepare_database
from loadtests.fleet import (
    BUSY_RETRIES,
    CONNECT_CONCURRENCY,
    MOSCOW_BOX,
    EventHandler,
    Fleet,
    Peer,
    RequestFailed,
    gather_limited,
    open_connections,
    quiet_gc,
)
from loadtests.servers import (
    Server,
    cpu_seconds,
    delete_prefix,
    own_cpu,
    own_wait_s,
    redis_cpu,
    runqueue_wait_s,
    start_server,
    stop_server,
)

TARGETS = ("memory", "redis")


@dataclass(frozen=True)
class Target:
    """One engine/database pair to measure."""

    name: str
    engine_url: str
    database_url: str

    @property
    def database(self) -> str:
        return "PostgreSQL" if self.database_url.startswith("postgresql") else "SQLite"


@contextlib.contextmanager
def prepared_target(
    name: str,
    workdir: Path,
    accounts: Accounts,
    districts: Path | None,
    redis_url: str,
    pg_server_url: str,
) -> Iterator[Target]:
    """The target ``name`` with its database migrated and filled (accounts, zones); a PostgreSQL
    database is dropped on exit."""
    if name == "memory":
        target = Target(name, "memory://", f"sqlite+aiosqlite:///{workdir / 'memory.db'}")
        prepare_database(target.database_url, accounts, districts)
        yield target
        return
    database_url = asyncio.run(create_pg_database(pg_server_url))
    try:
        target = Target(name, redis_url, database_url)
        prepare_database(database_url, accounts, districts)
        yield target
    finally:
        asyncio.run(drop_pg_database(database_url))


@contextlib.contextmanager
def running_server(
    target: Target, secret: str, prefix: str, workdir: Path, cpu: int | None, settings: dict[str, str]
) -> Iterator[Server]:
    """``python -m server serve`` for ``target`` pinned to ``cpu``; stopped (and its Redis keys
    deleted) on exit. ``settings``: more ``TOT_*`` variables."""
    env = {
        "TOT_SECRET_KEY": secret,
        "TOT_DATABASE_URL": target.database_url,
        "TOT_ENGINE_URL": target.engine_url,
        "TOT_ENGINE_PREFIX": prefix,
        "TOT_LOG_LEVEL": "warning",
        **settings,
    }
    server = start_server(target.name, env, workdir, cpu)
    try:
        yield server
    finally:
        stop_server(server)
        if target.engine_url.startswith("redis"):
            asyncio.run(delete_prefix(target.engine_url, prefix))


@dataclass
class Doctors:
    """The connected doctors: peers and their streaming positions, index for index with the accounts."""

    peers: list[Peer]
    fleet: Fleet


async def connect_doctors(
    server: Server,
    accounts: Accounts,
    count: int,
    on_event: EventHandler,
    area: ServiceArea,
    seed: int,
) -> Doctors:
    """Connect the first ``count`` doctors, each as a doctor's app does at the start of a shift:
    ``subscribe doctor:<id>``, a first fix (acknowledged: it is in the server's pipeline), then
    ``doctor.status available``, :data:`CONNECT_CONCURRENCY` doctors at a time (each starts its shift
    right after connecting: a connection left silent for 60 s is closed by the server). Positions
    start inside both the service area and the Moscow box."""
    rnd = random.Random(seed)
    draw = area.sampler(MOSCOW_BOX, rnd)
    starts = [draw() for _ in range(count)]
    ids, tokens = accounts.doctors.ids, accounts.doctors.tokens

    async def start_shift(i: int) -> Peer:
        (ws,) = await open_connections(server.ws, tokens, i, 1)
        peer = Peer(ws, i, on_event)
        await peer.request("subscribe", ch=f"doctor:{ids[i]}")
        lat, lon = starts[i]
        await peer.request("location", lat=lat, lon=lon, acc=10.0, ts=int(time.time() * 1000))
        for attempt in range(BUSY_RETRIES):
            try:
                await peer.request("doctor.status", status="available")
                break
            except RequestFailed as exc:
                # A shift start is a database write since issue 16 (the chosen availability and its
                # outbox row): in the connect burst the server may shed it with `busy` ("retry
                # shortly"), and an app retries, as this one does.
                if exc.code != "busy" or attempt == BUSY_RETRIES - 1:
                    raise
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
        return peer

    peers = await gather_limited([start_shift(i) for i in range(count)], CONNECT_CONCURRENCY)
    fleet = Fleet([p.ws for p in peers], rnd, draw=iter(starts).__next__)
    quiet_gc()
    return Doctors(peers, fleet)


async def connect_peers(
    server: Server, tokens: Sequence[str], on_event: EventHandler, channels: Sequence[str]
) -> list[Peer]:
    """Connect one peer per token and subscribe each to ``channels`` (a console: ``sos``)."""
    connections = await open_connections(server.ws, tokens, 0, len(tokens))
    peers = [Peer(ws, i, on_event) for i, ws in enumerate(connections)]
    for channel in channels:
        await gather_limited([p.request("subscribe", ch=channel) for p in peers])
    quiet_gc()
    return peers


@dataclass(frozen=True)
class Usage:
    """Cumulative readings at one moment (seconds of CPU, frames sent)."""

    wall: float
    server_cpu: float
    server_wait: float
    client_cpu: float
    client_wait: float
    redis_cpu: float | None
    sent: int
    dropped: int


async def usage(server: Server, fleet: Fleet, redis: aioredis.Redis | None) -> Usage:
    """Read the server's CPU and run-queue wait (/proc), ours, Redis's (``INFO cpu``) and the fleet's
    counters."""
    return Usage(
        wall=time.monotonic(),
        server_cpu=cpu_seconds(server.pid),
        server_wait=runqueue_wait_s(server.pid),
        client_cpu=own_cpu(),
        client_wait=own_wait_s(),
        redis_cpu=await redis_cpu(redis),
        sent=fleet.sent,
        dropped=fleet.dropped + fleet.failed,
    )


@dataclass(frozen=True)
class Window:
    """Shares of a core over a window (CPU 1.0 = one core busy), and the fleet's send rate."""

    seconds: float
    server_cpu: float
    server_wait: float
    client_cpu: float
    client_wait: float
    redis_cpu: float | None
    sent_per_s: float
    dropped: int

    @classmethod
    def between(cls, a: Usage, b: Usage) -> Window:
        s = b.wall - a.wall
        return cls(
            seconds=s,
            server_cpu=(b.server_cpu - a.server_cpu) / s,
            server_wait=(b.server_wait - a.server_wait) / s,
            client_cpu=(b.client_cpu - a.client_cpu) / s,
            client_wait=(b.client_wait - a.client_wait) / s,
            redis_cpu=None if a.redis_cpu is None or b.redis_cpu is None else (b.redis_cpu - a.redis_cpu) / s,
            sent_per_s=(b.sent - a.sent) / s,
            dropped=b.dropped - a.dropped,
        )

    def kept_up(self, offered_per_s: float) -> bool:
        """Whether the generator sent (nearly) every frame it offered, with CPU to spare."""
        return self.sent_per_s >= 0.97 * offered_per_s and self.dropped == 0 and self.client_cpu < 0.9
