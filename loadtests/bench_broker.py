"""Benchmark of the broker's fan-out: an SOS-sized batch of publications, published and received.

Run ``python -m loadtests.bench_broker`` (``--help`` for options, ``--quick`` for a few seconds). One
process holds a publishing and a subscribing broker (the subscriber subscribed to every channel, as
the process serving the doctors in range is), publishes ``--channels`` events, one per channel (an
SOS's ``sos.nearby`` fan-out: ~275 doctors at the benchmark city's density), and waits until the
subscriber has received all of them. Variants, in one run and interleaved round by round so that the
shared machine's drift hits each alike:

- ``memory``: ``MemoryBroker.publish_many`` (publisher and subscriber are one broker, as in the
  embedded deployment);
- ``redis publish loop``: ``RedisBroker.publish`` awaited once per event (the code before
  ``publish_many``: one round trip each);
- ``redis publish_many``: one pipeline for the batch;
- ``publish_many, keyed`` (memory and Redis): the same batch with a publication key per event (the
  transactional outbox's ``key="outbox:<row id>"``, new each round as new rows' are), so the cost of the
  broker's key dedupe is read beside the unkeyed batch;
- each Redis variant with redis-py's pure-Python RESP parser and with hiredis (its C parser), chosen
  per client with ``parser_class``, so that both are measured in the same run.

Reported per variant: wall time per batch (publish start -> last event received; p50 / p90 over the
rounds) and this process's CPU per event (``time.process_time``: packing commands, parsing replies and
pub/sub messages, building publications), and the ratios between variants. Redis runs on the same
2-core machine, so wall times include its work; compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP3Parser
from redis.utils import HIREDIS_AVAILABLE

from loadtests.stats import percentile
from realtime.broker import Broker, Outgoing
from realtime.broker_memory import MemoryBroker
from realtime.broker_redis import RedisBroker
from realtime.keys import Keys

SOS_DATA = {
    "id": str(uuid.UUID(int=7)),
    "kind": "danger",
    "raised_by": str(uuid.UUID(int=8)),
    "role": "doctor",
    "lat": 55.7558,
    "lon": 37.6173,
    "call": None,
    "status": "open",
    "message": "aggressive relative at the door",
    "raised_at": 1_795_000_000_000,
    "repeat": 0,
}
"""An ``sos.nearby`` payload of the size the server sends (``dispatch/sos.py``)."""


@dataclass
class Variant:
    """One way of publishing, with the brokers it uses and what was measured."""

    name: str
    publisher: Broker
    subscriber: Broker
    batched: bool
    keyed: bool = False
    wall_ms: list[float] = field(default_factory=list)
    cpu_us_per_event: list[float] = field(default_factory=list)


def _events(channels: list[str], round_no: int, *, keyed: bool = False) -> list[Outgoing]:
    return [
        Outgoing(
            channel,
            "sos.nearby",
            {**SOS_DATA, "repeat": round_no, "distance_m": i},
            key=f"outbox:{round_no}:{i}" if keyed else None,
        )
        for i, channel in enumerate(channels)
    ]


async def _run_batch(variant: Variant, events: list[Outgoing]) -> None:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if variant.batched:
        await variant.publisher.publish_many(events)
    else:
        for event in events:
            await variant.publisher.publish(event.channel, event.type, event.data)
    async with asyncio.timeout(30):  # one timer for the batch: wait_for would add a task per event
        for _ in events:
            await variant.subscriber.receive()
    variant.wall_ms.append((time.perf_counter() - wall0) * 1000)
    variant.cpu_us_per_event.append((time.process_time() - cpu0) * 1e6 / len(events))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every variant; returns the results (also printed)."""
    prefix = f"bench-broker-{uuid.uuid4().hex[:8]}:"
    channels = [f"doctor:{uuid.UUID(int=i)}" for i in range(args.channels)]
    memory = MemoryBroker()
    variants = [
        Variant("memory publish_many", memory, memory, batched=True),
        Variant("memory publish_many, keyed", memory, memory, batched=True, keyed=True),
    ]
    clients: list[aioredis.Redis] = []

    def client(parser: type[Any]) -> aioredis.Redis:
        made = aioredis.Redis.from_url(args.redis_url, parser_class=parser)
        clients.append(made)
        return made

    parsers: list[tuple[str, type[Any]]] = [("python parser", _AsyncRESP3Parser)]
    if HIREDIS_AVAILABLE:
        parsers.append(("hiredis", _AsyncHiredisParser))
    for n, (label, parser) in enumerate(parsers):
        # A key prefix per parser: sharing one, each subscriber also received the other parser's
        # publications, and a batch could count as received on leftovers (keyed events, deduplicated
        # across the two publishers, were not published at all).
        own = Keys(prefix=f"{prefix}{n}:")
        publisher: Broker = RedisBroker(client(parser), own)
        subscriber: Broker = RedisBroker(client(parser), own)
        variants.append(Variant(f"redis publish loop, {label}", publisher, subscriber, batched=False))
        variants.append(Variant(f"redis publish_many, {label}", publisher, subscriber, batched=True))
        variants.append(
            Variant(f"redis publish_many, keyed, {label}", publisher, subscriber, batched=True, keyed=True)
        )
    try:
        for subscriber in {id(v.subscriber): v.subscriber for v in variants}.values():
            for channel in channels:
                await subscriber.subscribe(channel)
        for round_no in range(args.warmup + args.rounds):
            for variant in variants:
                await _run_batch(variant, _events(channels, round_no, keyed=variant.keyed))
                if round_no < args.warmup:
                    variant.wall_ms.clear()
                    variant.cpu_us_per_event.clear()
    finally:
        for broker in {id(v.publisher): v.publisher for v in variants}.values():
            await broker.aclose()
        for broker in {id(v.subscriber): v.subscriber for v in variants}.values():
            await broker.aclose()
        if clients:
            found = [key async for key in clients[0].scan_iter(match=f"{prefix}*", count=1000)]
            for start in range(0, len(found), 500):
                await clients[0].delete(*found[start : start + 500])
        for made in clients:
            await made.aclose()
    return _report(args, variants)


def _report(args: argparse.Namespace, variants: list[Variant]) -> dict[str, Any]:
    print(
        f"broker fan-out: {args.channels} events (one per channel) published and received, "
        f"{args.rounds} rounds after {args.warmup} of warm-up; hiredis available: {HIREDIS_AVAILABLE}\n"
    )
    header = f"{'variant':<42} {'batch p50 ms':>12} {'batch p90 ms':>12} {'CPU us/event p50':>17}"
    print(header)
    print("-" * len(header))
    rows: dict[str, dict[str, float]] = {}
    for v in variants:
        row = {
            "batch_p50_ms": percentile(sorted(v.wall_ms), 50),
            "batch_p90_ms": percentile(sorted(v.wall_ms), 90),
            "cpu_us_per_event_p50": percentile(sorted(v.cpu_us_per_event), 50),
        }
        rows[v.name] = row
        print(
            f"{v.name:<42} {row['batch_p50_ms']:>12.2f} {row['batch_p90_ms']:>12.2f} "
            f"{row['cpu_us_per_event_p50']:>17.1f}"
        )
    ratios: dict[str, float] = {}

    def ratio(label: str, over: str, under: str, key: str) -> None:
        if over in rows and under in rows and rows[under][key] > 0:
            ratios[label] = rows[over][key] / rows[under][key]

    for label, _ in (("python parser", None), ("hiredis", None)):
        ratio(
            f"publish_many / publish loop, batch time ({label})",
            f"redis publish_many, {label}",
            f"redis publish loop, {label}",
            "batch_p50_ms",
        )
    ratio(
        "hiredis / python parser, CPU per event (publish_many)",
        "redis publish_many, hiredis",
        "redis publish_many, python parser",
        "cpu_us_per_event_p50",
    )
    ratio(
        "hiredis / python parser, batch time (publish_many)",
        "redis publish_many, hiredis",
        "redis publish_many, python parser",
        "batch_p50_ms",
    )
    for label in ("memory publish_many", "redis publish_many, python parser", "redis publish_many, hiredis"):
        keyed = label.replace("publish_many", "publish_many, keyed")
        for what, key in (("batch time", "batch_p50_ms"), ("CPU per event", "cpu_us_per_event_p50")):
            ratio(f"keyed / unkeyed, {what} ({label})", keyed, label, key)
    print("\nratios (same run):")
    for label, value in ratios.items():
        print(f"  {label}: x{value:.2f}")
    return {"rows": rows, "ratios": ratios}


def main(argv: list[str] | None = None, *, runner: Callable[..., Any] = asyncio.run) -> dict[str, Any]:
    """Parse options, run, print, write ``--json``; returns the results (``rows`` by variant, ``ratios``)."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_broker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--channels", type=int, default=275, help="events per batch, one per channel")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--quick", action="store_true", help="5 rounds of 50 events")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.channels, args.rounds, args.warmup = 50, 5, 1
    results = runner(run(args))
    if args.json is not None:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        args.json.write_text(json.dumps({"benchmark": "broker", "settings": settings, **results}, indent=2))
    return dict(results)


if __name__ == "__main__":
    main()
