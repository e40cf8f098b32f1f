"""Benchmark of SOS delivery and of live tracking, with ten thousand doctors streaming positions.

Run ``python -m loadtests.bench_sos`` (``--help`` for options; ``--quick`` for a run of under a minute
with 300 doctors). In ONE run, with the same load generator, it measures each target
(``loadtests/city.py``): ``memory`` (memory engine, SQLite) and ``redis`` (Redis engine, a scratch
PostgreSQL/PostGIS database).

The city is the dispatch benchmark's (``loadtests/bench_dispatch.py``): Moscow's raions as zones,
``--doctors`` doctors online, subscribed to ``doctor:<id>``, available, streaming at ``--rate`` Hz.
Then:

- ``--dispatchers`` dispatchers' consoles connect and subscribe to ``sos``;
- ``--tracked`` patients each create a call at a therapist's position; whoever is offered it accepts;
  each patient subscribes to ``call:<id>``, where the server forwards the assigned doctor's positions
  (``doctor.position``, at most one per second per doctor, from the ingest's 25 ms flush);
- for ``--seconds`` s, ``--sos-per-s`` times a second a doctor who is not on a call raises an SOS
  (socket op ``sos``, kind ``danger``, at its current position, a numbered message); the dispatcher
  whose turn it is acknowledges it (``sos.ack``) as soon as it arrives, so it is not repeated.

Measured, with both ends in this process and ``time.perf_counter()`` (no clock skew):

- ``sos->dispatcher``: from just before the ``sos`` frame is sent to each console's reading of its
  ``sos.raised`` (every delivery: SOS x dispatchers); ``sos->all consoles``: to the last of them;
- ``sos->nearby doctor``: to each doctor's reading of ``sos.nearby`` (the event doctors within
  ``TOT_SOS_RADIUS_KM`` get on their own channel; the ack lists them, so a missing one is counted);
- ``sos->ack``: the raiser's round trip (stored, delivered, audited);
- ``fix->patient``: from just before a tracked doctor's ``location`` frame is sent to the reading of
  the ``doctor.position`` with the same ``ts`` by the call's patient (every forwarded fix in the
  window; ``forwarded`` is their share of the fixes those doctors sent).

Pinning, CPU readings and caveats as in the dispatch benchmark: the generator stamps times between
sends of 10,000 positions a second, so its CPU is reported and its stamps can be late by a few ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis.asyncio as aioredis

from loadtests.accounts import (
    Accounts,
    ServiceArea,
    plan_accounts,
)
from loadtests.city import (
    Doctors,
    Window,
    connect_doctors,
    connect_peers,
    usage,
)
from loadtests.city_run import add_city_options, check_city_options, print_latencies, run_city
from loadtests.fleet import Peer, RequestFailed, close_peers, drive, keep_alive, silence
from loadtests.servers import Server
from loadtests.stats import Summary, summarize
from server.auth.tokens import TokenService

GOAL_SOS_P99_MS = 100.0
GOAL_TRACKING_P99_MS = 50.0
SETTLE_S = 3.0
MESSAGE = "bench-sos-"


@dataclass
class Alert:
    """One SOS: when it was sent (``perf_counter``), by whom, and who read it when."""

    sent: float
    raiser: int
    acked: float | None = None
    expected_doctors: set[str] = field(default_factory=set)
    consoles: dict[int, float] = field(default_factory=dict)
    doctors: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Scene:
    """One target's run: the alerts, the tracked calls and what the patients read."""

    accounts: Accounts
    dispatchers: int
    alerts: list[Alert] = field(default_factory=list)
    consoles: list[Peer] = field(default_factory=list)
    assigned: dict[str, int] = field(default_factory=dict)  # call id -> doctor index
    on_call: set[int] = field(default_factory=set)
    doctor_index: dict[str, int] = field(default_factory=dict)
    watch: dict[int, dict[int, float]] = field(default_factory=dict)
    positions: list[tuple[float, float]] = field(default_factory=list)  # (read at, latency ms)
    unmatched_positions: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def count_refusal(self, what: str, n: int = 1) -> None:
        self.refused[what] = self.refused.get(what, 0) + n

    def alert_of(self, data: dict[str, Any]) -> Alert | None:
        message = data.get("message") or ""
        if not message.startswith(MESSAGE):
            return None
        n = int(message[len(MESSAGE) :])
        return self.alerts[n] if n < len(self.alerts) else None

    # --- doctors ----------------------------------------------------------------------------------

    def on_doctor_event(self, peer: Peer, frame: dict[str, Any], arrived: float) -> None:
        kind = frame.get("type")
        if kind == "sos.nearby":
            alert = self.alert_of(frame["data"])
            if alert is not None:
                alert.doctors.setdefault(self.accounts.doctors.ids[peer.index], arrived)
        elif kind == "offer.created":
            self.spawn(self.accept(peer, frame["data"]))

    async def accept(self, peer: Peer, data: dict[str, Any]) -> None:
        try:
            await peer.request("offer.accept", offer=data["offer"])
        except RequestFailed as exc:
            self.count_refusal(f"offer.accept: {exc.code}")
            return
        self.assigned[data["call"]["id"]] = peer.index
        self.on_call.add(peer.index)

    async def raise_sos(self, peer: Peer, lat: float, lon: float) -> None:
        n = len(self.alerts)
        alert = Alert(sent=time.perf_counter(), raiser=peer.index)
        self.alerts.append(alert)
        try:
            ack = await peer.request("sos", kind="danger", lat=lat, lon=lon, message=f"{MESSAGE}{n}")
        except (RequestFailed, TimeoutError, ConnectionError) as exc:
            alert.error = str(exc)
            return
        alert.acked = time.perf_counter()
        alert.expected_doctors = set(ack["sos"]["delivered"]["doctors"])

    # --- consoles and patients --------------------------------------------------------------------

    def on_console_event(self, peer: Peer, frame: dict[str, Any], arrived: float) -> None:
        if frame.get("type") != "sos.raised" or frame["data"].get("repeat") != 0:
            return
        alert = self.alert_of(frame["data"])
        if alert is None:
            return
        alert.consoles.setdefault(peer.index, arrived)
        if peer.index == self.alerts.index(alert) % self.dispatchers:
            self.spawn(self.acknowledge(peer, frame["data"]["id"]))

    async def acknowledge(self, peer: Peer, sos_id: str) -> None:
        try:
            await peer.request("sos.ack", sos=sos_id)
        except (RequestFailed, TimeoutError, ConnectionError) as exc:
            self.count_refusal(f"sos.ack: {exc}")

    def on_patient_event(self, peer: Peer, frame: dict[str, Any], arrived: float) -> None:
        if frame.get("type") != "doctor.position":
            return
        data = frame["data"]
        sent = self.watch.get(self.doctor_index.get(data["doctor"], -1), {}).get(data["ts"])
        if sent is None:
            self.unmatched_positions += 1
        else:
            self.positions.append((arrived, (arrived - sent) * 1000))


async def track_calls(
    server: Server, scene: Scene, doctors: Doctors, area: ServiceArea, count: int, rnd: random.Random
) -> list[Peer]:
    """Create ``count`` calls (patient ``i`` makes call ``i``) at therapists' positions, wait (30 s at
    most) until they are assigned, then connect each assigned call's patient and subscribe it to the
    call; the assigned doctors' sends are watched from then on. A call that fails or is not assigned
    in time is counted in ``scene.refused`` and not tracked. Returns the patients' peers."""
    patients = scene.accounts.patients
    fleet = doctors.fleet
    call_ids: dict[str, int] = {}  # call id -> patient index
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
        for i in range(count):
            while True:
                d = rnd.randrange(0, len(fleet.lat), 3)  # therapists
                if d not in scene.on_call and area.contains(fleet.lat[d], fleet.lon[d]):
                    break
            try:
                response = await http.post(
                    "/v1/calls",
                    json={
                        "address": f"Tracked street {i}",
                        "lat": fleet.lat[d],
                        "lon": fleet.lon[d],
                        "urgency": "urgent",
                        "specialty": "therapist",
                    },
                    headers={
                        "Authorization": f"Bearer {patients.tokens[i]}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                )
                response.raise_for_status()
            except httpx.HTTPError as exc:
                scene.count_refusal(f"tracked call: {type(exc).__name__}")
                continue
            call_ids[response.json()["id"]] = i
    for _ in range(150):  # bounded: 30 s
        if all(c in scene.assigned for c in call_ids):
            break
        await asyncio.sleep(0.2)
    assigned = {c: i for c, i in call_ids.items() if c in scene.assigned}
    if len(assigned) < len(call_ids):
        scene.count_refusal("tracked call not assigned in 30 s", len(call_ids) - len(assigned))
    peers = await connect_peers(
        server, [patients.tokens[i] for i in assigned.values()], scene.on_patient_event, []
    )
    for peer, call_id in zip(peers, assigned, strict=True):
        await peer.request("subscribe", ch=f"call:{call_id}")
        scene.watch[scene.assigned[call_id]] = {}  # the fleet's own dict: drive() sees it at once
    return peers


@dataclass
class Result:
    """One target's numbers (latencies in ms; CPU as shares of a core)."""

    name: str
    database: str
    doctors: int
    dispatchers: int
    sos: int
    sos_failed: int
    to_console: Summary | None
    to_all_consoles: Summary | None
    to_doctor: Summary | None
    sos_ack: Summary | None
    console_missing: int
    doctors_expected: int
    doctors_missing: int
    tracked: int
    fix_to_patient: Summary | None
    fixes_sent_tracked: int
    unmatched_positions: int
    errors: dict[str, int]
    window: Window
    offered_fixes_per_s: float

    def as_json(self) -> dict[str, Any]:
        def summary(s: Summary | None) -> dict[str, Any] | None:
            return None if s is None else s.as_json()

        return {
            "target": self.name,
            "database": self.database,
            "doctors": self.doctors,
            "dispatchers": self.dispatchers,
            "sos": self.sos,
            "sos_failed": self.sos_failed,
            "sos_to_dispatcher_ms": summary(self.to_console),
            "sos_to_all_dispatchers_ms": summary(self.to_all_consoles),
            "sos_to_nearby_doctor_ms": summary(self.to_doctor),
            "sos_ack_ms": summary(self.sos_ack),
            "dispatcher_deliveries_missing": self.console_missing,
            "nearby_doctor_deliveries_expected": self.doctors_expected,
            "nearby_doctor_deliveries_missing": self.doctors_missing,
            "tracked_calls": self.tracked,
            "fix_to_patient_ms": summary(self.fix_to_patient),
            "tracked_fixes_sent": self.fixes_sent_tracked,
            "unmatched_positions": self.unmatched_positions,
            "errors": self.errors,
            "window_s": round(self.window.seconds, 2),
            "server_cpu": round(self.window.server_cpu, 3),
            "server_cpu_wait": round(self.window.server_wait, 3),
            "generator_cpu": round(self.window.client_cpu, 3),
            "generator_cpu_wait": round(self.window.client_wait, 3),
            "redis_cpu": None if self.window.redis_cpu is None else round(self.window.redis_cpu, 3),
            "fixes_offered_per_s": self.offered_fixes_per_s,
            "fixes_sent_per_s": round(self.window.sent_per_s, 1),
            "fixes_dropped": self.window.dropped,
            "generator_kept_up": self.window.kept_up(self.offered_fixes_per_s),
        }


async def bench_target(
    server: Server, database: str, accounts: Accounts, args: argparse.Namespace, area: ServiceArea
) -> Result:
    rnd = random.Random(args.seed)
    redis = aioredis.Redis.from_url(args.redis_url) if server.name == "redis" else None
    scene = Scene(accounts, args.dispatchers)
    scene.doctor_index = {d: i for i, d in enumerate(accounts.doctors.ids)}
    started = time.monotonic()
    doctors = await connect_doctors(server, accounts, args.doctors, scene.on_doctor_event, area, args.seed)
    scene.watch = doctors.fleet.watch
    scene.consoles = await connect_peers(server, accounts.dispatchers.tokens, scene.on_console_event, ["sos"])
    print(
        f"  {server.name}: {args.doctors} doctors and {args.dispatchers} consoles online in "
        f"{time.monotonic() - started:.1f} s",
        flush=True,
    )
    driver = asyncio.create_task(drive(doctors.fleet, args.rate))
    patients: list[Peer] = []
    pinging: asyncio.Task[None] | None = None
    try:
        await asyncio.sleep(args.warmup)
        patients = await track_calls(server, scene, doctors, area, args.tracked, rnd)
        pinging = asyncio.create_task(keep_alive([*scene.consoles, *patients]))
        await asyncio.sleep(3.0)  # the ingest reads a doctor's state at most every 2 s
        sent_before = sum(len(v) for v in scene.watch.values())
        a = await usage(server, doctors.fleet, redis)
        window_start = time.perf_counter()
        loop = asyncio.get_running_loop()
        begin = loop.time()
        total = round(args.sos_per_s * args.seconds)
        fleet = doctors.fleet
        for n in range(total):
            delay = begin + n / args.sos_per_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            while True:
                raiser = rnd.randrange(len(fleet.lat))
                if raiser not in scene.on_call:
                    break
            scene.spawn(scene.raise_sos(doctors.peers[raiser], fleet.lat[raiser], fleet.lon[raiser]))
        await asyncio.sleep(max(0.0, begin + total / args.sos_per_s - loop.time()))
        b = await usage(server, doctors.fleet, redis)
        window_end = time.perf_counter()
        sent_tracked = sum(len(v) for v in scene.watch.values()) - sent_before
        await asyncio.sleep(SETTLE_S)
    finally:
        doctors.fleet.stopped = True
        await driver
        if pinging is not None:
            pinging.cancel()
        everyone = [*doctors.peers, *scene.consoles, *patients]
        silence(everyone)
        for task in list(scene.tasks):
            task.cancel()
        await close_peers(everyone)
        if redis is not None:
            await redis.aclose()
    return summarize_run(
        server.name, database, args, scene, Window.between(a, b), (window_start, window_end), sent_tracked
    )


def summarize_run(
    name: str,
    database: str,
    args: argparse.Namespace,
    scene: Scene,
    window: Window,
    span: tuple[float, float],
    sent_tracked: int,
) -> Result:
    to_console, to_all, to_doctor, acks = [], [], [], []
    console_missing = doctors_expected = doctors_missing = failed = 0
    for alert in scene.alerts:
        if alert.error is not None or alert.acked is None:
            failed += 1
            continue
        acks.append((alert.acked - alert.sent) * 1000)
        to_console += [(t - alert.sent) * 1000 for t in alert.consoles.values()]
        console_missing += args.dispatchers - len(alert.consoles)
        if len(alert.consoles) == args.dispatchers:
            to_all.append((max(alert.consoles.values()) - alert.sent) * 1000)
        to_doctor += [
            (alert.doctors[d] - alert.sent) * 1000 for d in alert.expected_doctors if d in alert.doctors
        ]
        doctors_expected += len(alert.expected_doctors)
        doctors_missing += len(alert.expected_doctors - alert.doctors.keys())
    tracking = [latency for at, latency in scene.positions if span[0] <= at <= span[1]]
    return Result(
        name=name,
        database=database,
        doctors=args.doctors,
        dispatchers=args.dispatchers,
        sos=len(scene.alerts),
        sos_failed=failed,
        to_console=summarize(to_console),
        to_all_consoles=summarize(to_all),
        to_doctor=summarize(to_doctor),
        sos_ack=summarize(acks),
        console_missing=console_missing,
        doctors_expected=doctors_expected,
        doctors_missing=doctors_missing,
        tracked=len(scene.watch),
        fix_to_patient=summarize(tracking),
        fixes_sent_tracked=sent_tracked,
        unmatched_positions=scene.unmatched_positions,
        errors=dict(scene.refused),
        window=window,
        offered_fixes_per_s=args.doctors * args.rate,
    )


# --- report -------------------------------------------------------------------------------------------


def report(results: Sequence[Result], args: argparse.Namespace, area_description: str) -> None:
    print()
    print(
        f"sos: {args.doctors} doctors at {args.rate:g} Hz, {args.dispatchers} consoles on sos, "
        f"{args.sos_per_s:g} SOS/s for {args.seconds:g} s, {args.tracked} tracked calls; "
        f"{area_description}; server on CPU {args.server_cpu}, generator on CPU {args.client_cpu}"
    )
    print()
    print_latencies(
        [
            (r.name, label, summary)
            for r in results
            for label, summary in (
                ("sos->dispatcher", r.to_console),
                ("sos->all dispatchers", r.to_all_consoles),
                ("sos->nearby doctor", r.to_doctor),
                ("sos->ack (raiser)", r.sos_ack),
                ("fix->patient", r.fix_to_patient),
            )
        ]
    )
    print()
    header = (
        f"{'target':<8}{'database':<11}{'SOS':>5}{'failed':>7}{'console miss':>13}{'nearby/SOS':>11}"
        f"{'nearby miss':>12}{'forwarded':>10}{'server CPU':>11}{'CPU wait':>9}{'gen CPU':>8}"
        f"{'gen wait':>9}{'redis CPU':>10}{'fixes/s':>9}{'dropped':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        w = r.window
        redis = "-" if w.redis_cpu is None else f"{w.redis_cpu:.0%}"
        per_sos = r.doctors_expected / max(1, r.sos - r.sos_failed)
        forwarded = (r.fix_to_patient.n if r.fix_to_patient else 0) / max(1, r.fixes_sent_tracked)
        print(
            f"{r.name:<8}{r.database:<11}{r.sos:>5}{r.sos_failed:>7}{r.console_missing:>13}{per_sos:>11.0f}"
            f"{r.doctors_missing:>12}{forwarded:>10.0%}{w.server_cpu:>11.0%}{w.server_wait:>9.0%}"
            f"{w.client_cpu:>8.0%}{w.client_wait:>9.0%}{redis:>10}{w.sent_per_s:>9,.0f}{w.dropped:>8}"
        )
    print(
        "forwarded: doctor.position frames the patients read / fixes their doctors sent in the window "
        "(the server forwards at most one a second per doctor). CPU: shares of a core over the window; "
        "CPU wait / gen wait: share of it the server / generator was runnable while another process held "
        "its CPU (/proc/<pid>/schedstat)."
    )
    for r in results:
        if r.errors:
            print(f"  {r.name}: errors: {r.errors}")
        if r.unmatched_positions:
            print(f"  {r.name}: {r.unmatched_positions} positions matched no watched send (before watching)")
        if not r.window.kept_up(r.offered_fixes_per_s):
            print(
                f"warning: {r.name}: the generator sent {r.window.sent_per_s:,.0f} of "
                f"{r.offered_fixes_per_s:,.0f} fixes/s at {r.window.client_cpu:.0%} of its core "
                f"({r.window.dropped} dropped): it did not keep up, and its time stamps are late"
            )
        if r.window.server_wait > 0.1:
            print(
                f"warning: {r.name}: the server waited for its CPU {r.window.server_wait:.0%} of the window "
                "(other processes ran on it): its latencies include that wait"
            )
    print("\ngoals:")
    for r in results:
        for label, s, goal in (
            ("SOS -> dispatcher p99", r.to_console, GOAL_SOS_P99_MS),
            ("SOS -> nearby doctor p99", r.to_doctor, GOAL_SOS_P99_MS),
            ("fix -> patient p99", r.fix_to_patient, GOAL_TRACKING_P99_MS),
        ):
            if s is not None:
                verdict = "met" if s.p99 <= goal else "MISSED"
                print(f"  {r.name:<6} {label} <= {goal:g} ms: {s.p99:.1f} ({verdict})")


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench_sos", description=__doc__.split("\n")[0])
    add_city_options(parser)
    parser.add_argument("--dispatchers", type=int, default=50, help="consoles subscribed to sos")
    parser.add_argument("--tracked", type=int, default=100, help="calls whose patient follows the doctor")
    parser.add_argument("--sos-per-s", type=float, default=2.0, help="SOS raised per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring window")
    parser.add_argument("--warmup", type=float, default=10.0, help="streaming before the tracked calls")
    parser.add_argument("--quick", action="store_true", help="300 doctors, 10 consoles, 10 calls, 8 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.doctors, args.dispatchers, args.tracked = 300, 10, 10
        args.seconds, args.warmup, args.sos_per_s = 8.0, 2.0, 2.0
    if args.tracked * 3 > args.doctors:
        parser.error("--tracked: at most a third of --doctors (the therapists)")
    check_city_options(parser, args)
    return args


def run(argv: Sequence[str] | None = None) -> list[Result]:
    """Run the benchmark; returns one result per target (also printed, and written to ``--json``)."""
    args = parse_args(argv)
    return run_city(
        args,
        "sos",
        args.doctors + args.dispatchers + args.tracked,
        lambda secret: plan_accounts(
            TokenService(secret, access_ttl_s=3600, refresh_ttl_s=3600),
            args.doctors,
            patients=args.tracked,
            dispatchers=args.dispatchers,
        ),
        lambda server, database, accounts, area: bench_target(server, database, accounts, args, area),
        lambda results, area: report(results, args, area),
    )


def main(argv: Sequence[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(argv)


if __name__ == "__main__":
    main()
