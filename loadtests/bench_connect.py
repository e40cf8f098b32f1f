"""Connect burst: how long a fleet of doctors takes to come online on the embedded server (memory engine,
SQLite), each as an app at the start of a shift (connect, subscribe, a first fix, ``doctor.status
available``; :func:`loadtests.city.connect_doctors`, 100 at a time), for this checkout and, side by
side in the same run, for another git ref (``--before``, exported with ``git archive`` to a scratch
folder: the code of the "before" server, the generator being this checkout's).

Rounds alternate the order (before, after; after, before; ...) so that a drift of the machine's load
touches both alike. Every run starts a fresh server on a copy of one prepared database, upgraded by
the side's own migrations. Reported per
run: the seconds until every doctor was available, the server's CPU seconds and its run-queue wait
(time it was runnable but another process had the core: a noisy machine shows here).

    python -m loadtests.bench_connect --doctors 4000 --before main --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.accounts import Accounts, plan_accounts, prepare_database, service_area
from loadtests.city import Target, connect_doctors, running_server
from loadtests.fleet import Peer, close_peers, silence
from loadtests.servers import (
    CHECKOUT,
    Server,
    cpu_seconds,
    cpus_for,
    load_average,
    pin,
    raise_nofile,
    runqueue_wait_s,
)
from server.auth.tokens import TokenService


@dataclass(frozen=True)
class Run:
    """One connect burst: ``code`` (``before``/``after``), ``round``, seconds until every doctor was
    available, and the server's CPU and run-queue wait over that time (seconds); ``rows``: the
    ``doctor.status`` outbox rows written, ``transactions``: how many transactions wrote them (the
    distinct ``created_ms`` of those rows: one per transaction, two in one millisecond counted once)."""

    code: str
    round: int
    online_s: float
    server_cpu_s: float
    server_wait_s: float
    rows: int
    transactions: int


@contextlib.contextmanager
def exported(ref: str) -> Iterator[Path]:
    """The tree of git ``ref`` of this checkout in a scratch folder (removed on exit)."""
    with tempfile.TemporaryDirectory(prefix="tot-bench-before-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(CHECKOUT), "archive", ref], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def status_writes(database: Path) -> tuple[int, int]:
    """``doctor.status`` rows the doctors' own changes wrote in the outbox of ``database``, and their
    distinct creation times. The server's own changes (``reason``: a doctor silent for a minute is
    moved offline, in a sweep transaction of its own each second; the generator sends one fix per
    doctor, so in a burst longer than a minute the first doctors go) are left out."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows, times = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT created_ms) FROM outbox"
            " WHERE type = 'doctor.status' AND payload NOT LIKE '%\"reason\"%'"
        ).fetchone()
    return int(rows), int(times)


def code_of(checkout: Path) -> str:
    """Where a server child started with ``checkout`` first on ``PYTHONPATH`` (and the current folder,
    a scratch one, as ``sys.path[0]``) imports the availability rules from: a check that the two
    sides really run different code."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    probe = "import dispatch.availability as a; print(a.__file__)"
    return subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def migrate(checkout: Path, database_url: str) -> None:
    """Bring ``database_url`` (migrated by this checkout) to the head of ``checkout``'s migrations: an
    older checkout's head is reached by this checkout's downgrades (the older code does not know the
    newer revisions), a newer one by its own upgrades."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "TOT_DATABASE_URL": database_url}
    probe = "from migrations.runner import head_revision; print(head_revision())"
    head = subprocess.run(
        [sys.executable, "-c", probe], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    ours = {**env, "PYTHONPATH": str(CHECKOUT)}
    known = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from migrations.runner import alembic_config\n"
                f"from alembic.script import ScriptDirectory\n"
                f"print(ScriptDirectory.from_config(alembic_config()).get_revision({head!r}) is not None)",
            ],
            env=ours,
            capture_output=True,
            text=True,
        ).stdout.strip()
        == "True"
    )
    if known and checkout != CHECKOUT:
        subprocess.run(
            [sys.executable, "-m", "server", "migrate", "downgrade", head],
            env=ours,
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [sys.executable, "-m", "server", "migrate", "upgrade"], env=env, check=True, capture_output=True
    )


async def burst(server: Server, accounts: Accounts, doctors: int, seed: int) -> tuple[float, float, float]:
    """Connect ``doctors`` doctors; returns (seconds until all are available, server CPU s, wait s)."""
    cpu, wait = cpu_seconds(server.pid), runqueue_wait_s(server.pid)
    started = time.monotonic()
    connected = await connect_doctors(server, accounts, doctors, _ignore, service_area(None), seed)
    online = time.monotonic() - started
    used, waited = cpu_seconds(server.pid) - cpu, runqueue_wait_s(server.pid) - wait
    peers: list[Peer] = connected.peers
    silence(peers)
    await close_peers(peers)
    return online, used, waited


def _ignore(_peer: Peer, _frame: dict[str, Any], _arrived: float) -> None:
    """Events the doctors receive (their own status) are not measured."""


def run(argv: Sequence[str] | None = None) -> list[Run]:
    """Run the benchmark (see the module docstring); returns the runs (also printed)."""
    args = parse_args(argv)
    server_cpu, client_cpu = (None, None) if args.no_pin else cpus_for(args.server_cpu, args.client_cpu)
    if raise_nofile() < args.doctors + 500:
        raise SystemExit(f"the open-file limit is below the {args.doctors + 500} this run needs")
    pin(client_cpu)
    secret = secrets.token_hex(32)
    accounts = plan_accounts(TokenService(secret, access_ttl_s=3600, refresh_ttl_s=3600), args.doctors)
    load_before = load_average()
    runs: list[Run] = []
    home = Path.cwd()
    with (
        exported(args.before) as before,
        tempfile.TemporaryDirectory(prefix="tot-bench-connect-") as tmp,
    ):
        workdir = Path(tmp)
        os.chdir(workdir)  # sys.path[0] of a `python -m server` child: neither checkout
        try:
            sides = {"before": before, "after": CHECKOUT}
            for name, checkout in sides.items():
                print(
                    f"{name}: {args.before if name == 'before' else 'this checkout'} -> {code_of(checkout)}"
                )
            template = workdir / "template.db"
            prepare_database(f"sqlite+aiosqlite:///{template}", accounts, None)
            for n in range(args.rounds):
                order = ["before", "after"] if n % 2 == 0 else ["after", "before"]
                for name in order:
                    database = workdir / f"{name}-{n}.db"
                    shutil.copyfile(template, database)
                    migrate(sides[name], f"sqlite+aiosqlite:///{database}")
                    target = Target("memory", "memory://", f"sqlite+aiosqlite:///{database}")
                    settings = {"PYTHONPATH": str(sides[name])}
                    prefix = f"bench{secrets.token_hex(4)}:"
                    try:
                        with running_server(target, secret, prefix, workdir, server_cpu, settings) as server:
                            online, used, waited = asyncio.run(
                                burst(server, accounts, args.doctors, args.seed)
                            )
                    except Exception as exc:  # the other runs still go on and are reported
                        print(f"  round {n} {name:>6}: the run failed: {exc!r}", flush=True)
                        continue
                    rows, transactions = status_writes(database)
                    runs.append(Run(name, n, online, used, waited, rows, transactions))
                    print(
                        f"  round {n} {name:>6}: {args.doctors} doctors online in {online:6.1f} s; "
                        f"server CPU {used:5.1f} s, run-queue wait {waited:5.1f} s; "
                        f"{rows} status rows in {transactions} transactions",
                        flush=True,
                    )
        finally:
            os.chdir(home)
    report(runs, load_before)
    if args.json is not None:
        settings = {"doctors": args.doctors, "before": args.before, "rounds": args.rounds, "seed": args.seed}
        body = {
            "settings": settings,
            "time": time.time(),
            "load_average": [load_before[0], load_average()[0]],
            "runs": [dataclasses.asdict(r) for r in runs],
        }
        args.json.write_text(json.dumps(body, indent=2))
    return runs


def report(runs: Sequence[Run], load_before: tuple[float, float, float]) -> None:
    """Per side: median, min and max of the seconds to come online, and the median CPU and wait."""
    print("\nside     runs  online s: median (min-max)   server CPU s   run-queue wait s")
    for name in ("before", "after"):
        mine = [r for r in runs if r.code == name]
        if not mine:
            continue
        online = [r.online_s for r in mine]
        spread = f"({min(online):.1f}-{max(online):.1f})"
        print(
            f"{name:<8} {len(mine):>4}  {statistics.median(online):7.1f} {spread}"
            f"   {statistics.median(r.server_cpu_s for r in mine):12.1f}"
            f"   {statistics.median(r.server_wait_s for r in mine):16.1f}"
        )
    print(f"machine load average (1 min) {load_before[0]:.2f} before, {load_average()[0]:.2f} after")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_connect", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--doctors", type=int, default=4_000, help="doctors starting their shifts at once")
    parser.add_argument("--before", default="main", help="git ref of the other side (default main)")
    parser.add_argument("--rounds", type=int, default=2, help="bursts per side, alternating the order")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="pin neither process")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the runs here")
    parser.add_argument("--quick", action="store_true", help="300 doctors, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.doctors, args.rounds = 300, 1
    if args.doctors < 1 or args.rounds < 1:
        parser.error("--doctors and --rounds must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(argv)


if __name__ == "__main__":
    main()
