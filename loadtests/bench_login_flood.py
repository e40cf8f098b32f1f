"""Benchmark: ``/v1/health`` latency with and without a login flood, side by side in one run (issue 17).

Run ``python -m loadtests.bench_login_flood`` (``--help`` for options). For each target, a real
``python -m server serve`` (embedded: SQLite and the memory engine, migrated in a scratch folder) is
started; then, with the same probe:

- ``quiet``: ``/v1/health`` is probed ``--probe-hz`` times a second for ``--seconds`` s, nothing else;
- ``flood``: the same probe while ``--flooders`` clients send wrong-password logins, ``--rate`` a second
  together (each an argon2 verification of ~150 ms of CPU, or a fast ``503 busy`` when the hash queue
  is full; a flooder whose answer is late sends its next at once). The offered rate is bounded so that
  the generator, on the same machine, does not itself take the CPU the server needs.

The per-address and per-account login limits are off for the run (``loadtests/servers.py``): they would
answer a flood from one address with cheap 429s after 20 tries and measure nothing; a flood from many
addresses, which they do not stop, is what the hash queue is for. Targets: ``before`` (as before issue
17: one hash per core at once, an unbounded queue) and ``after`` (the defaults: ``TOT_HASH_CONCURRENCY``
one per four cores, ``TOT_HASH_QUEUE`` 16). The report gives health's p50/p99 per phase, the ratio
flood/quiet of the p99, and what the flood's logins got (401 after a hash, 503 busy) with their latency.

The hashing threads' lower priority (``server/auth/passwords.py``, nice +10) only shows when the server
runs below nice 19: a server started under ``nice -n 19`` has no lower priority left to give them.

Nothing is pinned: the server's hashing threads and event loop share the machine's cores with this
generator, as they would share a host with other work; on a shared 2-core machine the numbers are noisy
(run it twice). The result is reported in docs/benchmarks.md, not asserted by a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadtests.servers import child_environ, start_server, stop_server
from loadtests.stats import Summary, summarize

SECRET = "bench-login-flood-" + "s" * 32
TARGETS = {
    # As before issue 17: one hash per core at once, every login queued however long the queue.
    "before": {"TOT_HASH_CONCURRENCY": str(os.cpu_count() or 1), "TOT_HASH_QUEUE": "100000"},
    # The defaults: one hash at once per four cores (at least one), 16 waiting, the rest 503 busy.
    "after": {"TOT_HASH_QUEUE": "16"},
}


@dataclass
class Phase:
    """One phase's samples: health latencies (ms) and the flood's answers."""

    health_ms: list[float] = field(default_factory=list)
    health_failed: int = 0
    login_ms: dict[int, list[float]] = field(default_factory=dict)


async def _probe(http: httpx.AsyncClient, url: str, hz: float, until: float, phase: Phase) -> None:
    period = 1 / hz
    next_at = time.perf_counter()
    while (now := time.perf_counter()) < until:
        if now < next_at:
            await asyncio.sleep(next_at - now)
        next_at += period
        started = time.perf_counter()
        try:
            answer = await http.get(f"{url}/v1/health")
            ok = answer.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            phase.health_ms.append((time.perf_counter() - started) * 1000)
        else:
            phase.health_failed += 1


async def _flood(url: str, until: float, period_s: float, phase: Phase) -> None:
    """One flooder: a login every ``period_s`` seconds, or back to back while answers are slower."""
    async with httpx.AsyncClient(timeout=60) as http:
        next_at = time.perf_counter()
        while (now := time.perf_counter()) < until:
            if now < next_at:
                await asyncio.sleep(next_at - now)
            next_at = max(next_at + period_s, time.perf_counter())
            started = time.perf_counter()
            try:
                answer = await http.post(
                    f"{url}/v1/auth/login", json={"login": "nobody@bench.test", "password": "wrong-password"}
                )
                status = answer.status_code
            except httpx.HTTPError:
                status = 0
            phase.login_ms.setdefault(status, []).append((time.perf_counter() - started) * 1000)


async def _phase(url: str, seconds: float, hz: float, flooders: int, rate: float) -> Phase:
    phase = Phase()
    until = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=60) as probe_http:
        await probe_http.get(f"{url}/v1/health")  # the probe's connection is open before timing
        period_s = flooders / rate if flooders else 0.0
        tasks = [asyncio.create_task(_flood(url, until, period_s, phase)) for _ in range(flooders)]
        await _probe(probe_http, url, hz, until, phase)
        await asyncio.gather(*tasks)
    return phase


def _line(name: str, summary: Summary | None, extra: str = "") -> str:
    cells = summary.cells() if summary else "   (no samples)"
    count = summary.n if summary else 0
    return f"  {name:<24}{count:>7}{cells}{extra}"


def run_target(name: str, env: dict[str, str], args: argparse.Namespace, workdir: Path) -> float | None:
    """Migrate, start, measure both phases, print; the flood/quiet ratio of health's p99."""
    server_env = {
        "TOT_SECRET_KEY": SECRET,
        "TOT_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / f'{name}.db'}",
        "TOT_ENGINE_URL": "memory://",
        "TOT_LOG_LEVEL": "warning",
        **env,
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        env=child_environ(server_env),
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    if migrated.returncode != 0:
        raise RuntimeError(migrated.stderr)
    server = start_server(name, server_env, workdir, None)
    try:
        quiet = asyncio.run(_phase(server.http, args.seconds, args.probe_hz, 0, 1.0))
        flood = asyncio.run(_phase(server.http, args.seconds, args.probe_hz, args.flooders, args.rate))
    finally:
        stop_server(server)
    print(
        f"\n{name} ({', '.join(f'{k}={v}' for k, v in env.items())}), "
        f"{args.flooders} flooders, at most {args.rate:g} logins/s"
    )
    print(f"  {'':<24}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  (ms)")
    quiet_s, flood_s = summarize(quiet.health_ms), summarize(flood.health_ms)
    print(_line("health, quiet", quiet_s, f"  failed {quiet.health_failed}"))
    print(_line("health, login flood", flood_s, f"  failed {flood.health_failed}"))
    answers: Counter[int] = Counter({status: len(ms) for status, ms in flood.login_ms.items()})
    for status, samples in sorted(flood.login_ms.items()):
        print(_line(f"login -> {status or 'error'}", summarize(samples)))
    total = sum(answers.values())
    print(f"  logins: {total} in {args.seconds:g} s ({total / args.seconds:.0f}/s): {dict(answers)}")
    if quiet_s and flood_s:
        ratio = flood_s.p99 / quiet_s.p99
        print(f"  health p99 flood/quiet: {ratio:.2f}x ({quiet_s.p99:.1f} -> {flood_s.p99:.1f} ms)")
        return ratio
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--probe-hz", type=float, default=20.0, help="health probes per second")
    parser.add_argument("--flooders", type=int, default=64, help="concurrent login flooders")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="logins per second offered by all flooders together"
    )
    parser.add_argument("--targets", default="before,after", help=f"of {', '.join(TARGETS)}")
    args = parser.parse_args(argv)
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="tot-flood-") as scratch:
        for name in args.targets.split(","):
            ratios[name] = run_target(name, TARGETS[name], args, Path(scratch))
    print("\nhealth p99 ratio, flood/quiet: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items() if v))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
