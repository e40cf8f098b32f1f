"""Soak: the dispatch benchmark's load held for half an hour, watching for what grows (issue 16).

Run ``python -m loadtests.soak`` (30 minutes per target; ``--minutes 2`` for a try; ``--help``). Not run
in CI. The load is ``bench_dispatch``'s, from the same code: ``--doctors`` (10,000) verified doctors
streaming at ``--rate`` Hz, ``--calls-per-s`` (10) urgent calls a second, a quarter of first offers
declined, accepted visits ended ``--visit-s`` later by the patient, which frees the doctor.

Every ``--sample-s`` seconds it reads, per target (``memory``: SQLite and the memory engine;
``redis``: PostgreSQL and Redis):

- the server's resident memory (``/proc/<pid>/status`` VmRSS), open file descriptors and threads;
- the server's asyncio task count, from ``/metrics`` when the server exports a gauge with ``tasks`` in
  its name (e.g. ``tot_asyncio_tasks``), else ``-``;
- the rows of the ``outbox`` table, all and not yet published (``SELECT count(*) ... FROM outbox``;
  ``-`` while the table does not exist), through the target's database;
- calls created, offered, refused so far.

The first ``--warmup-minutes`` (default: a tenth of the run, at least one minute) are warm-up: caches
fill, the collector settles, history reaches its bounds. The verdicts compare the end with the end of
the warm-up: RSS growth under 5 %, no growth in tasks (±10 and 5 %) nor in outbox rows (the table is
pruned after its retention: it must plateau, not climb). ``--json`` writes every sample.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from loadtests.accounts import Accounts, ServiceArea, plan_accounts, service_area
from loadtests.bench_dispatch import Dispatch, place_call
from loadtests.city import Target, connect_doctors, prepared_target, running_server
from loadtests.city_run import add_city_options, check_city_options, restored_gc
from loadtests.fleet import close_peers, drive, silence
from loadtests.servers import Server, load_average, pin, raise_nofile, rss_kb
from models.db import make_engine
from server.auth.tokens import TokenService

RSS_GROWTH_LIMIT = 0.05
TASKS_SLACK = 10
TASK_METRIC = re.compile(r"^(tot_[a-z_]*tasks[a-z_]*)(?:\{[^}]*\})? ([0-9.e+-]+)$", re.MULTILINE)


@dataclass
class Sample:
    """One reading (``t``: seconds since the load started)."""

    t: float
    rss_kib: int
    fds: int
    threads: int
    tasks: int | None
    outbox_rows: int | None
    outbox_unpublished: int | None
    calls: int
    offered: int
    errors: int


@dataclass
class Soak:
    """One target's run: its samples and where the warm-up ended."""

    target: str
    database: str
    minutes: float
    warmup_minutes: float
    samples: list[Sample] = field(default_factory=list)

    def after_warmup(self) -> list[Sample]:
        return [s for s in self.samples if s.t >= self.warmup_minutes * 60]

    def verdicts(self) -> dict[str, str]:
        """``{"rss": "ok 1.2 %" | "GREW 7.0 %", "tasks": ..., "outbox": ...}`` (``n/a`` without data)."""
        late = self.after_warmup()
        if len(late) < 2:
            return {"rss": "n/a (no sample after the warm-up)", "tasks": "n/a", "outbox": "n/a"}
        first, last = late[0], late[-1]
        growth = (last.rss_kib - first.rss_kib) / first.rss_kib
        verdicts = {"rss": f"{'ok' if growth < RSS_GROWTH_LIMIT else 'GREW'} {growth:+.1%}"}
        if first.tasks is None or last.tasks is None:
            verdicts["tasks"] = "n/a (the server exports no task gauge)"
        else:
            grew = last.tasks > first.tasks * 1.05 + TASKS_SLACK
            verdicts["tasks"] = f"{'GREW' if grew else 'ok'} {first.tasks} -> {last.tasks}"
        rows = [s.outbox_rows for s in late if s.outbox_rows is not None]
        if len(rows) < 2:
            verdicts["outbox"] = "n/a (no outbox table)"
        else:
            # A plateau: the second half never exceeds the first half's peak by more than 10 % (+100).
            half = len(rows) // 2
            peak, later = max(rows[: max(half, 1)]), max(rows[half:])
            grew = later > peak * 1.1 + 100
            verdicts["outbox"] = f"{'GREW' if grew else 'ok'} peak {peak} then {later}"
        return verdicts

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "database": self.database,
            "minutes": self.minutes,
            "warmup_minutes": self.warmup_minutes,
            "verdicts": self.verdicts(),
            "samples": [asdict(s) for s in self.samples],
        }


# --- readings -----------------------------------------------------------------------------------------


def process_counts(pid: int) -> tuple[int, int]:
    """(open file descriptors, threads) of process ``pid`` (``/proc``)."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return fds, threads


async def task_count(http: httpx.AsyncClient) -> int | None:
    """The server's asyncio tasks from ``/metrics`` (a gauge named ``tot_..tasks..``), or None."""
    try:
        text = (await http.get("/metrics")).text
    except httpx.HTTPError:
        return None
    found = TASK_METRIC.findall(text)
    return int(sum(float(value) for _, value in found)) if found else None


async def outbox_rows(engine: AsyncEngine) -> tuple[int | None, int | None]:
    """(rows, rows not yet published) of the ``outbox`` table; (None, None) while the table does not
    exist (before issue 16's outbox) or the database does not answer."""
    query = "SELECT count(*), count(*) - count(published_ms) FROM outbox"
    try:
        async with engine.connect() as conn:
            total, unpublished = (await conn.execute(sa.text(query))).one()
    except sa.exc.DBAPIError:
        return None, None
    return int(total), int(unpublished)


# --- the run ------------------------------------------------------------------------------------------


async def soak_target(
    server: Server, target: Target, accounts: Accounts, args: argparse.Namespace, area: ServiceArea
) -> Soak:
    """Hold the load on ``server`` for ``args.minutes``, sampling every ``args.sample_s``."""
    soak = Soak(target.name, target.database, args.minutes, args.warmup_minutes)
    rnd = random.Random(args.seed)
    engine = make_engine(target.database_url)
    async with httpx.AsyncClient(
        base_url=server.http, timeout=30, limits=httpx.Limits(max_connections=200)
    ) as http:
        state = Dispatch(accounts, http, random.Random(args.seed + 1), args.decline_share, args.visit_s)
        doctors = await connect_doctors(server, accounts, args.doctors, state.on_event, area, args.seed)
        driver = asyncio.create_task(drive(doctors.fleet, args.rate))
        loop = asyncio.get_running_loop()
        begin = loop.time()

        async def sample() -> None:
            fds, threads = process_counts(server.pid)
            rows, unpublished = await outbox_rows(engine)
            reading = Sample(
                t=round(loop.time() - begin, 1),
                rss_kib=rss_kb(server.pid),
                fds=fds,
                threads=threads,
                tasks=await task_count(http),
                outbox_rows=rows,
                outbox_unpublished=unpublished,
                calls=len(state.calls),
                offered=len(state.offers),
                errors=sum(1 for c in state.calls if c.error) + sum(state.refused.values()),
            )
            soak.samples.append(reading)
            print(f"  {target.name} {format_sample(reading)}", flush=True)

        try:
            total = round(args.calls_per_s * args.minutes * 60)
            next_sample = 0.0
            for n in range(total):
                now = loop.time() - begin
                if now >= next_sample:
                    await sample()
                    next_sample += args.sample_s
                delay = begin + n / args.calls_per_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                lat, lon = place_call(doctors, state, area.contains, rnd)
                state.spawn(state.create(n, lat, lon))
            await sample()
        finally:
            doctors.fleet.stopped = True
            await driver
            silence(doctors.peers)
            for task in list(state.tasks):
                task.cancel()
            await close_peers(doctors.peers)
            await engine.dispose()
    return soak


def format_sample(s: Sample) -> str:
    tasks = "-" if s.tasks is None else str(s.tasks)
    rows = "-" if s.outbox_rows is None else f"{s.outbox_rows}/{s.outbox_unpublished}"
    return (
        f"t={s.t:>7.0f}s rss={s.rss_kib / 1024:>7.1f} MiB fds={s.fds:>6} threads={s.threads:>3} "
        f"tasks={tasks:>6} outbox(all/unpublished)={rows:>11} calls={s.calls:>6} "
        f"offered={s.offered:>6} errors={s.errors}"
    )


def report(results: Sequence[Soak], args: argparse.Namespace) -> None:
    print()
    print(
        f"soak: {args.doctors} doctors at {args.rate:g} Hz, {args.calls_per_s:g} calls/s for "
        f"{args.minutes:g} min (warm-up {args.warmup_minutes:g} min), a sample every {args.sample_s:g} s"
    )
    for soak in results:
        late = soak.after_warmup()
        print(
            f"\n{soak.target} ({soak.database}): {len(soak.samples)} samples, {len(late)} after the warm-up"
        )
        if late:
            print(f"  end of warm-up: {format_sample(late[0])}")
            print(f"  end:            {format_sample(late[-1])}")
        for what, verdict in soak.verdicts().items():
            print(f"  {what:<7}{verdict}")
    print(
        f"\ngoals: RSS growth after the warm-up under {RSS_GROWTH_LIMIT:.0%}; no growth in tasks "
        f"(5 % + {TASKS_SLACK}) nor in outbox rows (a plateau once pruning runs)"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.soak", description=__doc__.split("\n")[0])
    add_city_options(parser)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load is held")
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a tenth, at least 1")
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between readings")
    parser.add_argument("--calls-per-s", type=float, default=10.0, help="calls created per second")
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--decline-share", type=float, default=0.25, help="first offers declined")
    parser.add_argument("--visit-s", type=float, default=5.0, help="accepted call -> ended, seconds")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sample_s <= 0:
        parser.error("--minutes and --sample-s must be positive")
    if args.warmup_minutes is None:
        args.warmup_minutes = min(max(args.minutes / 10, 1.0), args.minutes / 2)
    if not 0 <= args.warmup_minutes < args.minutes:
        parser.error("--warmup-minutes must be shorter than --minutes")
    check_city_options(parser, args)
    return args


def run(argv: Sequence[str] | None = None) -> list[Soak]:
    """Soak each target in turn; returns (and prints, and writes to ``--json``) the samples."""
    args = parse_args(argv)
    load_before = load_average()
    limit = raise_nofile()
    if limit < args.doctors + 500:
        raise SystemExit(f"open-file limit {limit} is below the {args.doctors + 500} this run needs")
    pin(args.client_cpu)
    secret = secrets.token_hex(32)
    # Tokens outlive the run: a soak is longer than an access token's default quarter hour.
    ttl = int(args.minutes * 60) + 3600
    accounts = plan_accounts(
        TokenService(secret, access_ttl_s=ttl, refresh_ttl_s=ttl), args.doctors, args.patients
    )
    area = service_area(args.districts)
    results: list[Soak] = []
    with tempfile.TemporaryDirectory(prefix="tot-soak-") as tmp:
        workdir = Path(tmp)
        for name in args.targets:
            with prepared_target(
                name, workdir, accounts, args.districts, args.redis_url, args.pg_server_url
            ) as target:
                prefix = f"soak{secrets.token_hex(4)}:"
                with running_server(target, secret, prefix, workdir, args.server_cpu, {}) as server:
                    try:
                        with restored_gc():
                            results.append(asyncio.run(soak_target(server, target, accounts, args, area)))
                    except Exception as exc:  # the other targets still run and are reported
                        print(f"  {name}: the run failed: {exc!r}", flush=True)
    report(results, args)
    print(f"\nmachine load average (1 min) {load_before[0]:.2f} before, {load_average()[0]:.2f} after")
    if args.json is not None:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
        document: dict[str, Any] = {
            "benchmark": "soak",
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": settings,
            "results": [r.as_json() for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(argv)


if __name__ == "__main__":
    main()
