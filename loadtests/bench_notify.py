"""Benchmark of the notification pipeline's latency: from an offer's commit to the fake Bot API's
receipt of its Telegram message.

Run ``python -m loadtests.bench_notify`` (``--help``; ``--quick`` for a few seconds). One process on
the wall clock, as a server runs it: the outbox writer (``EventPublisher``) staging ``offer.created``
for the rules, the deriver and the sender (``server/notify/``, default settings, wired as ``server/app.py``
wires them: the committer wakes the deriver, the deriver wakes the sender; they also poll, every 250
and 200 ms) and the Telegram channel (python-telegram-bot) sending to the
loopback fake (``server/notify/fake_telegram.py``) over HTTP. ``--doctors`` doctors, each linked to a
chat of their own, get offers at ``--rate`` a second for ``--seconds`` (each doctor at most one offer
at a time, so a chat's pace of one message a second never holds one back: the pipeline is measured,
not the throttle). Latency = the fake's arrival time - the commit's end, per offer; reported p50, p99
and max in milliseconds, on SQLite (the embedded deployment) and PostgreSQL (``--pg-server-url``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from dispatch.outbox_settings import OutboxSettings
from dispatch.publisher import EventPublisher
from loadtests.accounts import create_pg_database, drop_pg_database
from migrations import runner
from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.repositories import telegram as telegram_repo
from models.repositories import users as user_repo
from realtime.broker_memory import MemoryBroker
from realtime.event_types import EventType
from server.notify.deriver import Deriver, DeriverSettings
from server.notify.fake_telegram import FakeBotApi, serving
from server.notify.rules import NOTIFY_TYPES
from server.notify.sender import Sender
from server.notify.telegram import TelegramChannel, close_bot, make_bot

CHAT0 = 1_000_000


def _ms() -> int:
    return int(time.time() * 1000)


async def measure(
    label: str, url: str, doctors: int, rate: float, seconds: float, coalesce_ms: int
) -> dict[str, Any]:
    """Offers at ``rate``/s for ``seconds`` to ``doctors`` linked doctors, the deriver woken by each
    commit and pausing ``coalesce_ms`` (``TOT_NOTIFY_COALESCE_MS``) before its pass; returns the
    latencies' p50, p99 and max (ms) and the count."""
    await asyncio.to_thread(runner.upgrade, url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    broker = MemoryBroker()
    publisher = EventPublisher(broker, sessions, settings=OutboxSettings(notify_types=NOTIFY_TYPES))
    ids: list[uuid.UUID] = []
    async with sessions.begin() as session:
        for i in range(doctors):
            user = await user_repo.create_user(
                session,
                email=f"d{i}-{uuid.uuid4().hex[:6]}@bench.test",
                phone=None,
                password_hash="x",
                full_name=f"Doctor {i}",
                role=Role.DOCTOR,
            )
            ids.append(user.id)
            await telegram_repo.link(session, user.id, CHAT0 + i, _ms())
    fake = FakeBotApi()
    committed: dict[int, int] = {}
    async with serving(fake) as api_url:
        bot = make_bot("1:bench", api_url)
        channels = {"telegram": TelegramChannel(bot)}
        sender = Sender(sessions, channels)
        deriver = Deriver(
            sessions, channels, settings=DeriverSettings(coalesce_ms=coalesce_ms), on_derived=sender.wake
        )
        publisher.notify_wakeup = deriver.wake  # as server/app.py wires them
        tasks = [asyncio.create_task(deriver.run()), asyncio.create_task(sender.run())]
        try:
            total = int(rate * seconds)
            start = time.monotonic()
            for n in range(total):
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
                doctor = n % doctors
                offer = uuid.uuid4()
                payload = {
                    "offer": str(offer),
                    "call": {"id": str(uuid.uuid4()), "address": f"Bench street {n}", "urgency": "urgent"},
                    "distance_m": 1200,
                    "eta_s": 240,
                    "deadline": _ms() + 15_000,
                }
                async with publisher.transaction() as tx:
                    tx.doctor(ids[doctor], EventType.OFFER_CREATED, payload)
                committed[n] = _ms()
            await fake.wait_for("sendMessage", total, timeout_s=60 + seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await deriver.stop()
            await close_bot(bot)
            await publisher.aclose()
            await broker.aclose()
            await engine.dispose()
    arrived = {
        int(r.params["text"].split("Bench street ")[1].split("\n")[0]): r.at_ms
        for r in fake.calls("sendMessage")
    }
    latencies = sorted(arrived[n] - committed[n] for n in committed)
    result = {
        "count": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms": latencies[-1],
    }
    print(
        f"{label}: {result['count']} offers, commit -> fake Bot API p50 {result['p50_ms']:.0f} ms, "
        f"p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms",
        flush=True,
    )
    return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for coalesce_ms in args.coalesce_ms:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'notify.db'}"
            results[f"sqlite, coalesce {coalesce_ms} ms"] = await measure(
                f"SQLite, coalesce {coalesce_ms} ms", url, args.doctors, args.rate, args.seconds, coalesce_ms
            )
        if args.pg_server_url:
            url = await create_pg_database(args.pg_server_url, prefix="tot_bench_notify")
            try:
                results[f"postgresql, coalesce {coalesce_ms} ms"] = await measure(
                    f"PostgreSQL, coalesce {coalesce_ms} ms",
                    url,
                    args.doctors,
                    args.rate,
                    args.seconds,
                    coalesce_ms,
                )
            finally:
                await drop_pg_database(url)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_notify", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--doctors", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="offers a second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--pg-server-url",
        default="postgresql+asyncpg://tot:tot@127.0.0.1:5432/postgres",
        help="where the scratch database goes ('' to skip PostgreSQL)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="5 seconds")
    parser.add_argument(
        "--coalesce-ms",
        type=lambda raw: [int(part) for part in raw.split(",")],
        default=[0, 100],
        help="the deriver's pauses after a wake to compare, comma-separated (TOT_NOTIFY_COALESCE_MS)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 5.0
    return args


if __name__ == "__main__":
    options = parse_args()
    output = asyncio.run(main(options))
    if options.json:
        options.json.write_text(json.dumps(output, indent=2))
