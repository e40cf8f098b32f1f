"""Benchmark of WebSocket position ingest: one server process, thousands of connected doctors.

Run ``python -m loadtests.bench_ingest`` (``--help`` for options; ``--quick`` for a run of under a
minute: 500 doctors, 5 s windows). In ONE run, with the same load generator, it measures each target:

- ``memory``: ``python -m server serve`` on the memory engine;
- ``redis``: the same on the Redis engine (``--redis-url``, db 9 by default, a random
  ``TOT_ENGINE_PREFIX`` whose keys are deleted at the end);
- ``bare``: ``loadtests/bare_endpoint.py``, a minimal ASGI app under the same uvicorn settings that
  accepts and only ``orjson.loads`` each text frame: the floor our gateway is compared with.

Each server is a real child process pinned to ``--server-cpu`` (CPU 0); this process, the load
generator, is pinned to ``--client-cpu`` (CPU 1); both raise RLIMIT_NOFILE to the hard limit. The
doctors are real accounts: a scratch SQLite file is migrated, ``--doctors`` verified doctors are
inserted in bulk (one argon2 hash shared by all) and their access tokens minted with the secret the
benchmark gives the servers.

Per target:

1. memory per idle connection: the server's RSS (``/proc/<pid>/status``) before and after opening
   ``--idle`` authenticated connections (each has received ``hello`` from our server), divided by
   their number;
2. ingest: every doctor sends ``{"op":"location","lat","lon","acc","ts"}`` frames, moving inside
   Moscow (55.55-55.92 N, 37.35-37.85 E), at ``--rate`` frames/s each, spread evenly over time (the
   generator walks the connections round-robin on a 5 ms tick, so each connection sends every
   1/rate s). After ``--warmup`` s it measures over ``--seconds`` s: frames the server actually
   ingested (delta of ``tot_location_fixes_total{outcome="accepted"}`` from ``GET /metrics``; the bare
   endpoint counts its parsed frames), the server's CPU (utime+stime from ``/proc/<pid>/stat``), and
   frames per CPU-second. Error frames the server sent (``tot_ws_errors_total``) are reported too: they
   must be 0 (the gateway allows 10 location frames/s per connection; the default rate is 4).

The generator is the ``websockets`` asyncio client used directly (``compression=None``, token in the
query, no client keepalive pings; the server's uvicorn still pings every 20 s and the client answers),
not the full ``TotClient``: the frames are the same, and the generator needs its CPU for 20,000
frames/s on one core. Its own CPU is reported; near 100% of its core it cannot keep up, and the
``sent/s`` column then falls below ``offered/s``.

Numbers vary with the machine's other load (2 shared cores; Redis itself is not pinned and its CPU is
reported separately): compare the ratios measured in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis.asyncio as aioredis
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from models import migrate
from models.doctors import DoctorProfile
from models.enums import Role
from models.types import utcnow
from models.users import User
from realtime.keys import Keys
from server.auth.passwords import hash_password
from server.auth.tokens import TokenService

MOSCOW_BOX = (55.55, 37.35, 55.92, 37.85)  # south, west, north, east
TARGETS = ("memory", "redis", "bare")
TICK_S = 0.005
MAX_BACKLOG_S = 0.1
"""A generator that falls further behind than this drops the excess (counted) instead of bursting."""
CONNECT_CONCURRENCY = 100
STARTUP_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_FRAMES_PER_CPU_S = 15_000
GOAL_BARE_RATIO = 0.6
GOAL_KB_PER_IDLE = 25.0


# --- processes ----------------------------------------------------------------------------------------


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin(cpu: int | None) -> None:
    """Pin this process to ``cpu`` (no-op for ``None``)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU (another process
    had it): ``/proc/<pid>/schedstat``."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A target server child process."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def bare(self) -> bool:
        return self.name == "bare"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def start_server(name: str, env: dict[str, str], workdir: Path, cpu: int | None) -> Server:
    """Start the target ``name`` on a free port, pinned to ``cpu``, and wait until it answers."""
    port = free_port()
    if name == "bare":
        command = [sys.executable, "-m", "loadtests.bare_endpoint", "--port", str(port)]
        probe = "/count"
    else:
        command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
        probe = "/v1/health"
    log = workdir / f"{name}-{port}.log"

    def prepare_child() -> None:
        pin(cpu)
        raise_nofile()

    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=prepare_child,
        )
    server = Server(name, process, port, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} server exited with {process.returncode}:\n{server.output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.http + probe, timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"{name} server did not answer in {STARTUP_TIMEOUT_S:.0f} s:\n{server.output()}"
            )
        time.sleep(0.1)


def stop_server(server: Server) -> None:
    """Stop the server (SIGINT, then SIGKILL after 20 s); print what it logged at warning or above."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    lines = [line for line in server.log.read_text(errors="replace").splitlines() if line.strip()]
    if lines:
        print(
            f"  {server.name}: the server logged {len(lines)} lines at warning or above; the first:",
            flush=True,
        )
        for line in lines[-40:] if os.environ.get("BENCH_DEBUG") else lines[:8]:
            print(f"    {line[:200]}", flush=True)


# --- accounts -----------------------------------------------------------------------------------------


def make_doctors(
    database_url: str, sync_url: str, n: int, tokens: TokenService
) -> tuple[list[str], list[str]]:
    """Migrate the database, insert ``n`` verified doctors in bulk; returns their ids and access tokens."""
    migrate.upgrade(database_url)
    password_hash = hash_password("bench-doctor-password")  # one hash for all: argon2 is slow on purpose
    now = utcnow()
    ids = [uuid.uuid4() for _ in range(n)]
    specialties = ("therapist", "pediatrician", "neurologist")
    users = [
        {
            "id": user_id,
            "email": f"doctor{i}@bench.tot",
            "phone": None,
            "password_hash": password_hash,
            "full_name": f"Bench Doctor {i}",
            "role": Role.DOCTOR.value,
            "is_active": True,
            "created_at": now,
        }
        for i, user_id in enumerate(ids)
    ]
    profiles = [
        {
            "user_id": user_id,
            "clinic_id": None,
            "licence_number": f"BENCH-{i:06d}",
            "specialties": [specialties[i % len(specialties)]],
            "verified": True,
            "verified_at": now,
            "verified_by": None,
            "rating_avg": None,
            "rating_count": 0,
        }
        for i, user_id in enumerate(ids)
    ]
    engine = sa.create_engine(sync_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(User), users)
            conn.execute(sa.insert(DoctorProfile), profiles)
    finally:
        engine.dispose()
    return [str(i) for i in ids], [tokens.issue(user_id, Role.DOCTOR).access_token for user_id in ids]


# --- load generator -----------------------------------------------------------------------------------


async def open_connections(
    server: Server, tokens: Sequence[str], first: int, count: int
) -> list[ClientConnection]:
    """Open ``count`` connections with tokens ``first``, ``first+1``... (cycling); for our server, each
    is returned once ``hello`` arrived (authenticated, on-connect work done)."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> ClientConnection:
        async with gate:
            ws = await connect(
                f"{server.ws}?token={tokens[i % len(tokens)]}",
                compression=None,
                ping_interval=None,
                open_timeout=60,
                close_timeout=1,
            )
            if not server.bare:
                hello = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                if hello.get("op") != "hello":
                    raise RuntimeError(f"expected hello, got {hello!r}")
            return ws

    return list(await asyncio.gather(*(one(first + i) for i in range(count))))


def abort_all(connections: Sequence[ClientConnection]) -> None:
    for ws in connections:
        ws.transport.abort()


@dataclass
class Fleet:
    """The doctors' connections and their moving positions."""

    connections: list[ClientConnection]
    rnd: random.Random
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    dlat: list[float] = field(default_factory=list)
    dlon: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    last_ts: list[int] = field(default_factory=list)
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    stopped: bool = False

    def __post_init__(self) -> None:
        south, west, north, east = MOSCOW_BOX
        for _ in self.connections:
            self.lat.append(self.rnd.uniform(south, north))
            self.lon.append(self.rnd.uniform(west, east))
            speed, heading = self.rnd.uniform(3.0, 15.0), self.rnd.uniform(0, 2 * math.pi)
            self.dlat.append(speed * math.cos(heading) / 111_320.0)  # degrees per second
            self.dlon.append(speed * math.sin(heading) / (111_320.0 * math.cos(math.radians(55.75))))
            self.acc.append(round(self.rnd.uniform(4.0, 30.0), 1))
            self.last_ts.append(0)


async def drive(fleet: Fleet, rate: float) -> None:
    """Send location frames until ``fleet.stopped``: ``rate`` per connection per second, round-robin."""
    south, west, north, east = MOSCOW_BOX
    conns = fleet.connections
    n = len(conns)
    total_rate = n * rate
    step = 1.0 / rate
    dead = [False] * n
    lat, lon, dlat, dlon, acc, last_ts = (
        fleet.lat,
        fleet.lon,
        fleet.dlat,
        fleet.dlon,
        fleet.acc,
        fleet.last_ts,
    )
    dumps = orjson.dumps
    loop = asyncio.get_running_loop()
    start = loop.time()
    scheduled = 0
    cursor = 0
    max_backlog = max(1, int(total_rate * MAX_BACKLOG_S))
    while not fleet.stopped:
        due = int((loop.time() - start) * total_rate) - scheduled
        if due > max_backlog:
            fleet.dropped += due - max_backlog
            scheduled += due - max_backlog
            cursor = (cursor + due - max_backlog) % n
            due = max_backlog
        scheduled += due
        ts = int(time.time() * 1000)
        for _ in range(due):
            i = cursor
            cursor = i + 1 if i + 1 < n else 0
            if dead[i]:
                continue
            la, lo = lat[i] + dlat[i] * step, lon[i] + dlon[i] * step
            if not south < la < north:
                dlat[i] = -dlat[i]
                la = lat[i]
            if not west < lo < east:
                dlon[i] = -dlon[i]
                lo = lon[i]
            lat[i], lon[i] = la, lo
            payload = dumps({"op": "location", "lat": la, "lon": lo, "acc": acc[i], "ts": ts})
            try:
                await conns[i].send(payload, text=True)
            except ConnectionClosed:
                dead[i] = True
                fleet.failed += 1
                continue
            last_ts[i] = ts
            fleet.sent += 1
        await asyncio.sleep(TICK_S)


# --- measurement --------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    wall: float
    server_cpu: float
    server_wait: float
    ingested: int
    errors: int
    sent: int
    client_cpu: float
    redis_cpu: float | None


def parse_metrics(text: str) -> tuple[int, int]:
    """``(accepted fixes, error frames)`` from a Prometheus exposition."""
    accepted = errors = 0.0
    for line in text.splitlines():
        if line.startswith('tot_location_fixes_total{outcome="accepted"}'):
            accepted = float(line.rsplit(" ", 1)[1])
        elif line.startswith("tot_ws_errors_total{"):
            errors += float(line.rsplit(" ", 1)[1])
    return int(accepted), int(errors)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def redis_cpu(redis: aioredis.Redis | None) -> float | None:
    if redis is None:
        return None
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def snapshot(
    server: Server, http: httpx.AsyncClient, fleet: Fleet, redis: aioredis.Redis | None
) -> Snapshot:
    if server.bare:
        counts = (await http.get(server.http + "/count")).json()
        ingested, errors = int(counts["frames"]), int(counts["invalid"])
    else:
        ingested, errors = parse_metrics((await http.get(server.http + "/metrics")).text)
    return Snapshot(
        wall=time.monotonic(),
        server_cpu=cpu_seconds(server.process.pid),
        server_wait=runqueue_wait_s(server.process.pid),
        ingested=ingested,
        errors=errors,
        sent=fleet.sent,
        client_cpu=own_cpu(),
        redis_cpu=await redis_cpu(redis),
    )


@dataclass
class Result:
    name: str
    connections: int
    idle: int
    rss_before_kb: int
    rss_idle_kb: int
    connect_s: float
    window_s: float
    sent_per_s: float
    ingested_per_s: float
    server_cpu: float  # fraction of one core
    server_wait: float  # fraction of the window runnable but without a CPU
    client_cpu: float
    redis_cpu: float | None
    errors: int
    dropped: int
    failed: int
    lag_p50_ms: int | None = None
    lag_max_ms: int | None = None
    lag_sampled: int = 0
    lag_missing: int = 0

    @property
    def kb_per_idle(self) -> float:
        return (self.rss_idle_kb - self.rss_before_kb) / self.idle

    @property
    def frames_per_cpu_s(self) -> float:
        return self.ingested_per_s / self.server_cpu if self.server_cpu > 0 else float("nan")


async def index_lag_ms(
    redis: aioredis.Redis, prefix: str, fleet: Fleet, doctor_ids: Sequence[str]
) -> list[int]:
    """How far the Redis index trails what was sent: for a sample of doctors, the fix time the
    generator last sent minus the fix time in the doctor's position key (ms, sorted); -1 for a doctor
    with no position in the index at all."""
    keys = Keys(prefix=prefix)
    sample = sorted(random.Random(7).sample(range(len(fleet.connections)), min(500, len(fleet.connections))))
    sent = [fleet.last_ts[i] for i in sample]
    async with redis.pipeline(transaction=False) as pipe:
        for i in sample:
            pipe.get(keys.loc_position(doctor_ids[i % len(doctor_ids)]))
        values = await pipe.execute()
    lags = []
    for sent_ts, value in zip(sent, values, strict=True):
        lags.append(max(0, sent_ts - int(value.split(b" ", 1)[0])) if value else -1)
    return sorted(lags)


async def bench_target(
    server: Server,
    doctor_ids: Sequence[str],
    tokens: Sequence[str],
    args: argparse.Namespace,
    redis_url: str | None,
    prefix: str,
) -> Result:
    pid = server.process.pid
    redis = aioredis.Redis.from_url(redis_url) if redis_url else None
    connections: list[ClientConnection] = []
    try:
        # Warm the server's per-connection code paths (imports, caches, allocator arenas) first, so
        # the idle measurement counts connections, not one-time costs.
        warm = await open_connections(server, tokens, 0, min(50, args.idle))
        for ws in warm:
            await ws.close()
        await asyncio.sleep(1.0)
        rss_before = rss_kb(pid)
        started = time.monotonic()
        connections = await open_connections(server, tokens, 0, args.idle)
        connect_s = time.monotonic() - started
        await asyncio.sleep(args.settle)
        rss_idle = rss_kb(pid)
        print(
            f"  {server.name} (pid {pid}): {args.idle} idle connections in {connect_s:.1f} s, "
            f"RSS {rss_before / 1024:.1f} -> {rss_idle / 1024:.1f} MiB",
            flush=True,
        )
        if args.idle > args.doctors:
            abort_all(connections[args.doctors :])
            del connections[args.doctors :]
        elif args.idle < args.doctors:
            connections += await open_connections(server, tokens, args.idle, args.doctors - args.idle)

        fleet = Fleet(connections, random.Random(args.seed))
        async with httpx.AsyncClient(timeout=30) as http:
            driver = asyncio.create_task(drive(fleet, args.rate))
            try:
                await asyncio.sleep(args.warmup)
                a = await snapshot(server, http, fleet, redis)
                await asyncio.sleep(args.seconds)
                b = await snapshot(server, http, fleet, redis)
                sampled = [] if redis is None else await index_lag_ms(redis, prefix, fleet, doctor_ids)
                lags = [lag for lag in sampled if lag >= 0]
            finally:
                fleet.stopped = True
                await driver
        window = b.wall - a.wall
        result = Result(
            name=server.name,
            connections=len(connections),
            idle=args.idle,
            rss_before_kb=rss_before,
            rss_idle_kb=rss_idle,
            connect_s=connect_s,
            window_s=window,
            sent_per_s=(b.sent - a.sent) / window,
            ingested_per_s=(b.ingested - a.ingested) / window,
            server_cpu=(b.server_cpu - a.server_cpu) / window,
            server_wait=(b.server_wait - a.server_wait) / window,
            client_cpu=(b.client_cpu - a.client_cpu) / window,
            redis_cpu=None
            if a.redis_cpu is None or b.redis_cpu is None
            else (b.redis_cpu - a.redis_cpu) / window,
            errors=b.errors - a.errors,
            dropped=fleet.dropped,
            failed=fleet.failed,
            lag_p50_ms=lags[len(lags) // 2] if lags else None,
            lag_max_ms=lags[-1] if lags else None,
            lag_sampled=len(sampled),
            lag_missing=len(sampled) - len(lags),
        )
        print(
            f"  {server.name}: {result.ingested_per_s:,.0f} frames/s at {result.server_cpu:.0%} of a core "
            f"= {result.frames_per_cpu_s:,.0f} frames/CPU-s (generator {result.client_cpu:.0%})",
            flush=True,
        )
        return result
    finally:
        abort_all(connections)
        if redis is not None:
            await redis.aclose()


async def delete_prefix(redis_url: str, prefix: str) -> int:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        names = [key async for key in redis.scan_iter(match=f"{prefix}*", count=5_000)]
        for start in range(0, len(names), 5_000):
            await redis.delete(*names[start : start + 5_000])
        return len(names)
    finally:
        await redis.aclose()


# --- report -------------------------------------------------------------------------------------------


def report(results: Sequence[Result], args: argparse.Namespace) -> None:
    offered = args.doctors * args.rate
    print()
    print(
        f"ingest: {args.doctors} doctors x {args.rate:g} frames/s = {offered:,.0f} offered frames/s, "
        f"warm-up {args.warmup:g} s, window {args.seconds:g} s; server on CPU {args.server_cpu}, "
        f"generator on CPU {args.client_cpu}"
    )
    print(
        "uvicorn ws=websockets-sansio, no per-message deflate (server.cli.uvicorn_ws_options) for every "
        "target; generator: websockets asyncio client, one process"
    )
    print()
    header = (
        f"{'target':<8}{'conns':>7}{'KB/idle':>9}{'sent/s':>10}{'ingested/s':>12}{'server CPU':>12}"
        f"{'CPU wait':>10}{'frames/CPU-s':>14}{'gen CPU':>9}{'redis CPU':>11}{'errors':>8}{'dropped':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        redis = "-" if r.redis_cpu is None else f"{r.redis_cpu:.0%}"
        print(
            f"{r.name:<8}{r.connections:>7}{r.kb_per_idle:>9.1f}{r.sent_per_s:>10,.0f}{r.ingested_per_s:>12,.0f}"
            f"{r.server_cpu:>12.0%}{r.server_wait:>10.0%}{r.frames_per_cpu_s:>14,.0f}{r.client_cpu:>9.0%}"
            f"{redis:>11}{r.errors:>8}{r.dropped + r.failed:>9}"
        )
    print(
        "KB/idle: server RSS delta per idle authenticated connection "
        f"({args.idle} connections). server CPU: utime+stime over the window, in cores. CPU wait: share "
        "of the window the server was runnable while another process had its CPU (from "
        "/proc/<pid>/schedstat; this machine is shared: high values mean the server was short of CPU, "
        "its throughput and latency suffered, and frames per CPU-second is the figure to compare). "
        "dropped: frames the generator could not send on time or on a closed connection."
    )
    for r in results:
        if r.lag_sampled:
            print(
                f"{r.name}: at the end of the window the Redis index trailed the last fix sent by "
                f"{r.lag_p50_ms} ms (median) / {r.lag_max_ms} ms (max) for {r.lag_sampled} doctors "
                f"sampled (one fix every {1000 / args.rate:.0f} ms each); {r.lag_missing} had no position "
                "in it at all"
            )
    for r in results:
        if r.client_cpu > 0.9 or r.sent_per_s < 0.97 * offered:
            print(
                f"warning: {r.name}: the generator sent {r.sent_per_s:,.0f}/s of {offered:,.0f} offered at "
                f"{r.client_cpu:.0%} of its core: the offered load was not fully delivered"
            )
        if r.errors:
            print(f"warning: {r.name}: the server sent {r.errors} error frames during the window")
        if r.server_wait > 0.1:
            print(
                f"warning: {r.name}: the server waited for its CPU {r.server_wait:.0%} of the window (other "
                "processes ran on it): it fell behind and then read frames in bigger batches, which are "
                "cheaper per frame; this target's numbers are not comparable, run again on a quieter machine"
            )

    by = {r.name: r for r in results}
    bare = by.get("bare")
    print()
    print("ratios (same run, same generator):")
    for name in ("memory", "redis"):
        ours = by.get(name)
        if ours is None:
            continue
        if bare is not None:
            speed = ours.frames_per_cpu_s / bare.frames_per_cpu_s
            print(
                f"  {name:<6} frames per CPU-second / bare's: x{speed:.2f}"
                f"   memory per idle connection / bare's: x{ours.kb_per_idle / bare.kb_per_idle:.2f} "
                f"(+{ours.kb_per_idle - bare.kb_per_idle:.1f} KB)"
            )
    if "memory" in by and "redis" in by:
        print(
            "  redis / memory frames per CPU-second: "
            f"x{by['redis'].frames_per_cpu_s / by['memory'].frames_per_cpu_s:.2f}"
        )

    print()
    print("goals:")
    if (args.doctors, args.rate) != (5_000, 4.0):
        print(
            "  (stated for the default load, 5,000 doctors at 4 frames/s: at a lighter load the per-tick "
            "work of the server weighs more per frame, so frames per CPU-second is lower)"
        )
    for name in ("memory", "redis"):
        ours = by.get(name)
        if ours is None:
            continue

        def verdict(ok: bool) -> str:
            return "met" if ok else "MISSED"

        print(
            f"  {name:<6} >= {GOAL_FRAMES_PER_CPU_S:,} frames per CPU-second: {ours.frames_per_cpu_s:,.0f} "
            f"({verdict(ours.frames_per_cpu_s >= GOAL_FRAMES_PER_CPU_S)})"
        )
        if bare is not None:
            ratio = ours.frames_per_cpu_s / bare.frames_per_cpu_s
            print(
                f"  {name:<6} >= {GOAL_BARE_RATIO} of bare's frames per CPU-second: {ratio:.2f} "
                f"({verdict(ratio >= GOAL_BARE_RATIO)})"
            )
        print(
            f"  {name:<6} <= {GOAL_KB_PER_IDLE:g} KB per idle connection: {ours.kb_per_idle:.1f} KB "
            f"({verdict(ours.kb_per_idle <= GOAL_KB_PER_IDLE)})"
        )


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--doctors", type=int, default=5_000, help="connected doctors sending positions")
    parser.add_argument("--rate", type=float, default=4.0, help="frames per second per doctor (limit: 10)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=5.0, help="load before the window starts")
    parser.add_argument("--engines", default=",".join(TARGETS), help="targets, from: memory,redis,bare")
    parser.add_argument(
        "--idle", type=int, default=None, help="idle connections measured (default: --doctors)"
    )
    parser.add_argument("--settle", type=float, default=2.0, help="wait before reading the idle RSS")
    parser.add_argument("--quick", action="store_true", help="500 doctors, 2 s warm-up, 5 s window")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.quick:
        args.doctors, args.seconds, args.warmup, args.settle = 500, 5.0, 2.0, 1.0
    if args.idle is None:
        args.idle = args.doctors
    if not 0 < args.rate <= 10:
        parser.error("--rate must be in (0, 10]: the gateway refuses more than 10 location frames/s")
    args.targets = [t.strip() for t in args.engines.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if len(os.sched_getaffinity(0)) < 2 or os.cpu_count() == 1:
        args.server_cpu = args.client_cpu = None
    return args


def run(argv: Sequence[str] | None = None) -> list[Result]:
    args = parse_args(argv)
    started = time.monotonic()
    limit = raise_nofile()
    needed = max(args.doctors, args.idle) + 200
    if limit < needed:
        raise SystemExit(f"open-file limit {limit} is below the {needed} this run needs")
    pin(args.client_cpu)
    secret = secrets.token_hex(32)
    tokens_service = TokenService(secret, access_ttl_s=3600, refresh_ttl_s=3600)
    prefix = f"bench{secrets.token_hex(4)}:"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tot-bench-ingest-") as tmp:
        workdir = Path(tmp)
        db_path = workdir / "bench.db"
        database_url = f"sqlite+aiosqlite:///{db_path}"
        doctor_ids, tokens = make_doctors(
            database_url, f"sqlite:///{db_path}", max(args.doctors, args.idle), tokens_service
        )
        print(
            f"{len(tokens)} verified doctors and tokens ready in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        base_env = {
            "TOT_SECRET_KEY": secret,
            "TOT_DATABASE_URL": database_url,
            "TOT_ENGINE_PREFIX": prefix,
            "TOT_LOG_LEVEL": "warning",
        }
        try:
            for name in args.targets:
                env = {**base_env, "TOT_ENGINE_URL": args.redis_url if name == "redis" else "memory://"}
                server = start_server(name, env, workdir, args.server_cpu)
                try:
                    redis_url = args.redis_url if name == "redis" else None
                    results.append(
                        asyncio.run(bench_target(server, doctor_ids, tokens, args, redis_url, prefix))
                    )
                finally:
                    stop_server(server)
        finally:
            if "redis" in args.targets:
                asyncio.run(delete_prefix(args.redis_url, prefix))
    report(results, args)
    print(f"\n(total run time {time.monotonic() - started:.0f} s)")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    run(argv)


if __name__ == "__main__":
    main()
