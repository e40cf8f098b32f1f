"""The frame of a city benchmark (``bench_dispatch``, ``bench_sos``): the command-line options they
share, the run over each target (scratch database, server, one ``bench`` per target, a failed target
reported and the others still run), the machine's load before and after, and the ``--json`` file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import secrets
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from loadtests.accounts import DEFAULT_DISTRICTS, DEFAULT_PG_SERVER, Accounts, ServiceArea, service_area
from loadtests.city import TARGETS, prepared_target, running_server
from loadtests.servers import Server, cpus_for, load_average, pin, raise_nofile
from loadtests.stats import Summary


class HasJson(Protocol):
    def as_json(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=HasJson)


def add_city_options(parser: argparse.ArgumentParser) -> None:
    """The options every city benchmark takes (doctors and their rate, targets, zones, services, CPUs,
    seed, ``--json``); the caller adds its own and ``--quick``."""
    parser.add_argument("--doctors", type=int, default=10_000, help="doctors online, streaming positions")
    parser.add_argument("--rate", type=float, default=1.0, help="position frames per second per doctor")
    parser.add_argument("--engines", default=",".join(TARGETS), help="targets, from: memory,redis")
    parser.add_argument("--districts", type=Path, default=DEFAULT_DISTRICTS, help="zones (GeoJSON)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--pg-server-url", default=DEFAULT_PG_SERVER, help="where the scratch database goes")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="pin neither process (tests)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")


def check_city_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate the shared options (``parser.error`` on a bad one) and derive ``args.targets`` and the
    CPUs; a missing ``--districts`` file runs without zones."""
    args.targets = [t.strip() for t in args.engines.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if not 0 < args.rate <= 10:
        parser.error("--rate must be in (0, 10]: the gateway refuses more than 10 location frames/s")
    args.server_cpu, args.client_cpu = (
        (None, None) if args.no_pin else cpus_for(args.server_cpu, args.client_cpu)
    )
    if not args.districts.exists():
        print(f"{args.districts} not found: running without zones")
        args.districts = None


@contextlib.contextmanager
def restored_gc() -> Iterator[None]:
    """Give back the collector as it was (``quiet_gc`` tunes and freezes it for a target's run): the
    next target starts from the same state, and a test calling the harness in-process keeps its own."""
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def run_city(
    args: argparse.Namespace,
    benchmark: str,
    connections: int,
    make_accounts: Callable[[str], Accounts],
    bench: Callable[[Server, str, Accounts, ServiceArea], Coroutine[Any, Any, R]],
    # bench(server, database kind "SQLite"/"PostgreSQL", accounts, service area) -> one target's result
    report: Callable[[list[R], str], None],
) -> list[R]:
    """Run ``bench`` on each of ``args.targets`` with the accounts ``make_accounts(secret)`` plans,
    then ``report(results, area description)``, the load average and the run time; write ``--json``.
    ``connections``: sockets the generator opens (raises ``SystemExit`` if the open-file limit is below
    it plus 500)."""
    started = time.monotonic()
    load_before = load_average()
    limit = raise_nofile()
    if limit < connections + 500:
        raise SystemExit(f"open-file limit {limit} is below the {connections + 500} this run needs")
    pin(args.client_cpu)
    secret = secrets.token_hex(32)
    accounts = make_accounts(secret)
    area = service_area(args.districts)
    results: list[R] = []
    with tempfile.TemporaryDirectory(prefix=f"tot-bench-{benchmark}-") as tmp:
        workdir = Path(tmp)
        for name in args.targets:
            with prepared_target(
                name, workdir, accounts, args.districts, args.redis_url, args.pg_server_url
            ) as target:
                prefix = f"bench{secrets.token_hex(4)}:"
                with running_server(target, secret, prefix, workdir, args.server_cpu, {}) as server:
                    try:
                        with restored_gc():
                            results.append(asyncio.run(bench(server, target.database, accounts, area)))
                    except Exception as exc:  # the other targets still run and are reported
                        print(f"  {name}: the run failed: {exc!r}", flush=True)
    report(results, area.description)
    load_after = load_average()
    print(
        f"\nmachine load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"total run time {time.monotonic() - started:.0f} s"
    )
    if args.json is not None:
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
        document = {
            "benchmark": benchmark,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "settings": settings,
            "results": [r.as_json() for r in results],
        }
        args.json.write_text(json.dumps(document, indent=2))
    return results


def print_latencies(rows: Sequence[tuple[str, str, Summary | None]]) -> None:
    """A table of latencies: (target, measure, summary) per row; rows without a summary are left out."""
    width = max([len(measure) for _, measure, _ in rows] + [15]) + 3
    header = f"{'target':<8}{'measure':<{width}}{'n':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
    print(header)
    print("-" * len(header))
    for target, measure, summary in rows:
        if summary is not None:
            print(f"{target:<8}{measure:<{width}}{summary.n:>7}{summary.cells()}")
