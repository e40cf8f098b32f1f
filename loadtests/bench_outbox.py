"""Benchmark of the transactional outbox's cost per event: CPU and SQL statements, beside the direct
publish it replaced.

Run ``python -m loadtests.bench_outbox`` (``--help``; ``--quick`` for a few seconds). One process, one
database at a time (SQLite on the loop as in the embedded deployment, then a scratch PostgreSQL
database as in the scale-out one), an in-process ``MemoryBroker`` (the broker's own cost is the same
in both variants and is measured by ``bench_broker``). The change is a real one: a doctor's chosen
availability (``doctor_repo.set_chosen_status``, one UPDATE), committed with ``--events`` events
(default 2, as a ``call.status`` goes on the call's channel and on ``dispatch``). Variants, interleaved
round by round so that the shared machine's drift hits both alike:

- ``direct`` (before issue 16): the change in ``sessions.begin()``, then ``Broker.publish_many`` of the
  events after the commit;
- ``outbox`` (now): ``EventPublisher.transaction()``: the change and its event rows in one
  transaction, the committer's ``publish_many`` with the rows' keys right after the commit, and the
  batch marker's UPDATE (flushed at the end of each round, so its cost is inside the round).

Reported per variant and database: this process's CPU per transaction (``time.process_time``; the
database server's CPU for PostgreSQL is not included: the statement counts stand for it) and SQL
statements per transaction (counted with SQLAlchemy's ``before_cursor_execute``, BEGIN/COMMIT not
being statements there); then the outbox's extra CPU per event, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch.outbox_settings import OutboxSettings
from dispatch.publisher import EventPublisher
from loadtests.accounts import create_pg_database, drop_pg_database
from migrations import runner
from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from realtime.broker import Outgoing
from realtime.broker_memory import MemoryBroker
from realtime.event_types import EventType

STATUSES = ("available", "paused")


class Counted:
    """SQL statements executed on an engine (``before_cursor_execute``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        event.listen(engine.sync_engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        self.statements += 1


async def seed_doctor(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    """One doctor (user + profile) whose chosen availability the rounds change."""
    async with sessions.begin() as session:
        user = await user_repo.create_user(
            session,
            email=f"bench-{uuid.uuid4().hex[:8]}@example.test",
            phone=None,
            password_hash="x",
            full_name="Bench Doctor",
            role=Role.DOCTOR,
        )
        await doctor_repo.create_profile(
            session,
            user_id=user.id,
            licence_number=uuid.uuid4().hex[:12],
            specialties=["therapist"],
            clinic_id=None,
        )
        return user.id


def payloads(doctor: uuid.UUID, i: int, events: int) -> list[tuple[str, dict[str, Any]]]:
    """The ``events`` (channel, payload) pairs of transaction ``i``: a doctor.status-sized payload."""
    data = {"status": STATUSES[i % 2], "version": i, "since": 1_760_000_000_000 + i}
    channels = [f"doctor:{doctor}", "dispatch"] + [
        f"call:{uuid.UUID(int=k)}" for k in range(max(0, events - 2))
    ]
    return [(channels[k], data) for k in range(events)]


async def run_direct(
    sessions: async_sessionmaker[AsyncSession], broker: MemoryBroker, doctor: uuid.UUID, n: int, events: int
) -> None:
    """``n`` transactions the pre-outbox way: commit, then publish."""
    for i in range(n):
        async with sessions.begin() as session:
            await doctor_repo.set_chosen_status(session, doctor, STATUSES[i % 2], dt.datetime.now(dt.UTC))
        await broker.publish_many(
            [Outgoing(ch, EventType.DOCTOR_STATUS.value, data) for ch, data in payloads(doctor, i, events)]
        )


async def run_outbox(publisher: EventPublisher, doctor: uuid.UUID, n: int, events: int) -> None:
    """``n`` transactions through the outbox, then the marker's pending UPDATE."""
    for i in range(n):
        async with publisher.transaction() as tx:
            await doctor_repo.set_chosen_status(tx.session, doctor, STATUSES[i % 2], dt.datetime.now(dt.UTC))
            for ch, data in payloads(doctor, i, events):
                tx.stage(ch, EventType.DOCTOR_STATUS, data)
    await publisher.flush_marks()


async def measure(label: str, url: str, rounds: int, n: int, events: int) -> dict[str, dict[str, float]]:
    """Interleaved rounds of both variants on the database at ``url`` (migrated here)."""
    await asyncio.to_thread(runner.upgrade, url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    counted = Counted(engine)
    broker = MemoryBroker()
    # A long mark interval: the marker runs once per round, at flush_marks (its cost stays inside).
    publisher = EventPublisher(broker, sessions, settings=OutboxSettings(mark_interval_ms=3_600_000))
    try:
        doctor = await seed_doctor(sessions)
        variants: dict[str, Callable[[], Awaitable[None]]] = {
            "direct": lambda: run_direct(sessions, broker, doctor, n, events),
            "outbox": lambda: run_outbox(publisher, doctor, n, events),
        }
        for run in variants.values():  # warm-up: caches, statement compilation
            await run()
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        statements: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, run in variants.items():
                before_cpu, before_st = time.process_time(), counted.statements
                await run()
                cpu[name].append((time.process_time() - before_cpu) / n * 1e6)
                statements[name].append((counted.statements - before_st) / n)
        result = {
            name: {
                "cpu_us_per_tx": statistics.median(cpu[name]),
                "statements_per_tx": statistics.median(statements[name]),
            }
            for name in variants
        }
        print(f"{label}: {n} transactions x {rounds} rounds, {events} events each")
        for name, values in result.items():
            cpu_us, per_tx = values["cpu_us_per_tx"], values["statements_per_tx"]
            print(f"  {name:7} CPU {cpu_us:8.1f} us/transaction   {per_tx:.2f} statements/transaction")
        extra = (result["outbox"]["cpu_us_per_tx"] - result["direct"]["cpu_us_per_tx"]) / events
        print(f"  outbox - direct: {extra:+.1f} us of CPU per event")
        return result
    finally:
        await publisher.aclose()
        await broker.aclose()
        await engine.dispose()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Both databases, one after the other; returns the results by database."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'outbox.db'}"
        results["sqlite"] = await measure("SQLite", url, args.rounds, args.transactions, args.events)
    if args.pg_server_url:
        url = await create_pg_database(args.pg_server_url, prefix="tot_bench_outbox")
        try:
            results["postgresql"] = await measure(
                "PostgreSQL", url, args.rounds, args.transactions, args.events
            )
        finally:
            await drop_pg_database(url)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_outbox", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--transactions", type=int, default=500, help="transactions per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--events", type=int, default=2, help="events per transaction")
    parser.add_argument(
        "--pg-server-url",
        default="postgresql+asyncpg://tot:tot@127.0.0.1:5432/postgres",
        help="where the scratch database goes ('' to skip PostgreSQL)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="50 transactions x 3 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.transactions, args.rounds = 50, 3
    return args


if __name__ == "__main__":
    options = parse_args()
    output = asyncio.run(main(options))
    if options.json:
        options.json.write_text(json.dumps(output, indent=2))
