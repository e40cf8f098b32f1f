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
import random
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from loadtests.accounts import plan_accounts, prepare_database
from loadtests.fleet import Fleet, abort_all, drive, open_connections
from loadtests.servers import (
    Server,
    cpu_seconds,
    cpus_for,
    delete_prefix,
    own_cpu,
    pin,
    raise_nofile,
    redis_cpu,
    rss_kb,
    runqueue_wait_s,
    start_server,
    stop_server,
)
from realtime.keys import Keys
from server.auth.tokens import TokenService

TARGETS = ("memory", "redis", "bare")
GOAL_FRAMES_PER_CPU_S = 15_000
GOAL_BARE_RATIO = 0.6
GOAL_KB_PER_IDLE = 25.0


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
        warm = await open_connections(server.ws, tokens, 0, min(50, args.idle), hello=not server.bare)
        for ws in warm:
            await ws.close()
        await asyncio.sleep(1.0)
        rss_before = rss_kb(pid)
        started = time.monotonic()
        connections = await open_connections(server.ws, tokens, 0, args.idle, hello=not server.bare)
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
            connections += await open_connections(
                server.ws, tokens, args.idle, args.doctors - args.idle, hello=not server.bare
            )

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
        f"uvicorn loop={args.loop}, ws=websockets-sansio, no per-message deflate "
        "(server.cli.uvicorn_ws_options) for every target; generator: websockets asyncio client, one process"
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
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of every target (TOT_EVENT_LOOP)",
    )
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
    args.server_cpu, args.client_cpu = cpus_for(args.server_cpu, args.client_cpu)
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
        database_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        accounts = plan_accounts(tokens_service, max(args.doctors, args.idle))
        prepare_database(database_url, accounts)
        doctor_ids, tokens = accounts.doctors.ids, accounts.doctors.tokens
        print(
            f"{len(tokens)} verified doctors and tokens ready in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        base_env = {
            "TOT_SECRET_KEY": secret,
            "TOT_DATABASE_URL": database_url,
            "TOT_ENGINE_PREFIX": prefix,
            "TOT_LOG_LEVEL": "warning",
            "TOT_EVENT_LOOP": args.loop,
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
