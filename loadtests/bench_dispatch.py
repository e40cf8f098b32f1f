"""Benchmark of dispatch latency: create-call HTTP response -> ``offer.created`` at the doctor's app.

Run ``python -m loadtests.bench_dispatch`` (``--help`` for options; ``--quick`` for a run of under a
minute with 300 doctors). In ONE run, with the same load generator, it measures each target
(``loadtests/city.py``): ``memory`` (memory engine, SQLite) and ``redis`` (Redis engine, a scratch
PostgreSQL/PostGIS database).

The city: Moscow's raions (``--districts``, the shared data, read in place) are imported as service
zones, as ``tot-dispatch zones import`` does; ``--doctors`` verified doctors (a third of them
therapists) connect, subscribe to ``doctor:<id>``, go ``available`` and stream a position at
``--rate`` Hz each (moving at 3-15 m/s inside the zones' part of the 55.55-55.92 N, 37.35-37.85 E box).
After ``--warmup`` s, patients create ``--calls-per-s`` calls per second (urgent, therapist, an
``Idempotency-Key`` each) for ``--seconds`` s, one every 1/rate s whatever the answers, each at the
current position of a therapist who is not engaged (so a call lands where doctors are, inside a zone).

Per call, with both ends in this process and ``time.perf_counter()`` (no clock skew):

- ``response->offer``: from the moment the ``POST /v1/calls`` response is read to the moment the
  ``offer.created`` frame for that call is read by whichever doctor's connection received it (the
  issue's measure; negative when the offer arrived before the response: the server starts dispatch
  before it answers, and both race);
- ``request->offer``: from just before the request is sent to the same frame (the patient's view);
- ``create``: the HTTP round trip of the create call;
- ``decline->next``: a doctor declines ``--decline-share`` of first offers; from sending
  ``offer.decline`` to the next doctor's ``offer.created`` for that call.

Every other offer is accepted over the socket (``offer.accept``); ``--visit-s`` s later the patient
cancels the call over REST (one request: the visit's own REST traffic is not what is measured here),
which frees the doctor, back in the pool. The server's CPU is also read over the warm-up, when it only
ingests positions: the share of its core left for dispatch.

The server is a child process pinned to ``--server-cpu`` (CPU 0); this process, the generator, to
``--client-cpu`` (CPU 1). Its CPU is reported: 10,000 doctors at 1 Hz cost it a good part of its core,
and times it stamps are late by whatever else it was doing then (it reads frames between sends of
positions). Redis and PostgreSQL are not pinned and share the machine. Compare ratios within a run.
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

from loadtests.accounts import Accounts, plan_accounts
from loadtests.city import Doctors, Window, connect_doctors, usage
from loadtests.city_run import add_city_options, check_city_options, print_latencies, run_city
from loadtests.fleet import Peer, RequestFailed, close_peers, drive, silence
from loadtests.servers import Server
from loadtests.stats import Summary, summarize
from server.auth.tokens import TokenService

GOAL_P50_MS = 10.0
GOAL_P99_MS = 50.0
SETTLE_S = 8.0
"""After the last call, how long stragglers may take to get their offers."""


@dataclass
class CallTrace:
    """One call's times (``perf_counter`` seconds) and outcome."""

    sent: float
    response: float | None = None
    call_id: str | None = None
    error: str | None = None


@dataclass
class Offer:
    """One ``offer.created`` as a doctor's app read it."""

    at: float
    doctor: int
    offer_id: str


@dataclass
class Dispatch:
    """The state of one target's run: calls, offers by call, decisions, counters."""

    accounts: Accounts
    http: httpx.AsyncClient
    rnd: random.Random
    decline_share: float
    visit_s: float
    calls: list[CallTrace] = field(default_factory=list)
    offers: dict[str, list[Offer]] = field(default_factory=dict)
    declined: dict[str, float] = field(default_factory=dict)
    engaged: set[int] = field(default_factory=set)
    accepted: int = 0
    visits: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    patient_of: dict[str, str] = field(default_factory=dict)  # call id -> the patient's token
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def count_refusal(self, what: str) -> None:
        self.refused[what] = self.refused.get(what, 0) + 1

    # --- the doctors' side ------------------------------------------------------------------------

    def on_event(self, peer: Peer, frame: dict[str, Any], arrived: float) -> None:
        """A doctor's app reads an event: answer each offer (in a task)."""
        if frame.get("type") != "offer.created":
            return
        data = frame["data"]
        call_id = data["call"]["id"]
        offers = self.offers.setdefault(call_id, [])
        offers.append(Offer(arrived, peer.index, data["offer"]))
        self.engaged.add(peer.index)
        self.spawn(self.answer(peer, call_id, data["offer"], first=len(offers) == 1))

    async def answer(self, peer: Peer, call_id: str, offer_id: str, first: bool) -> None:
        try:
            if first and self.rnd.random() < self.decline_share:
                self.declined[call_id] = time.perf_counter()
                await peer.request("offer.decline", offer=offer_id, reason="benchmark")
                return
            await peer.request("offer.accept", offer=offer_id)
            self.accepted += 1
            await asyncio.sleep(self.visit_s)
            token = self.patient_of.get(call_id)
            response = await self.http.post(
                f"/v1/calls/{call_id}/cancel",
                json={"reason": "benchmark: visit over"},
                headers={"Authorization": f"Bearer {token}"},
            )
            if response.status_code != 200:
                self.count_refusal(f"cancel: {response.status_code}")
                return
            self.visits += 1
        except RequestFailed as exc:
            self.count_refusal(exc.code)
        except (TimeoutError, ConnectionError, httpx.HTTPError) as exc:
            self.count_refusal(type(exc).__name__)
        finally:
            self.engaged.discard(peer.index)

    # --- the patients' side -----------------------------------------------------------------------

    async def create(self, n: int, lat: float, lon: float) -> None:
        patients = self.accounts.patients
        token = patients.tokens[n % len(patients)]
        body = {
            "address": f"Benchmark street {n}",
            "lat": lat,
            "lon": lon,
            "urgency": "urgent",
            "specialty": "therapist",
            "symptoms": "fever",
        }
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        trace = CallTrace(sent=time.perf_counter())
        self.calls.append(trace)
        try:
            response = await self.http.post("/v1/calls", json=body, headers=headers)
        except httpx.HTTPError as exc:
            trace.error = type(exc).__name__
            return
        trace.response = time.perf_counter()
        if response.status_code != 201:
            trace.error = f"{response.status_code} {response.text[:120]}"
            return
        trace.call_id = response.json()["id"]
        self.patient_of[trace.call_id] = token


@dataclass
class Result:
    """One target's numbers (latencies in ms; CPU as shares of a core)."""

    name: str
    database: str
    doctors: int
    calls: int
    created: int
    offered: int
    no_offer: int
    errors: dict[str, int]
    response_to_offer: Summary | None
    request_to_offer: Summary | None
    create: Summary | None
    decline_to_next: Summary | None
    offer_before_response: int
    accepted: int
    declined: int
    visits: int
    window: Window
    ingest_only: Window
    offered_fixes_per_s: float

    def as_json(self) -> dict[str, Any]:
        def summary(s: Summary | None) -> dict[str, Any] | None:
            return None if s is None else s.as_json()

        return {
            "target": self.name,
            "database": self.database,
            "doctors": self.doctors,
            "calls": self.calls,
            "created": self.created,
            "offered": self.offered,
            "no_offer": self.no_offer,
            "errors": self.errors,
            "response_to_offer_ms": summary(self.response_to_offer),
            "request_to_offer_ms": summary(self.request_to_offer),
            "create_ms": summary(self.create),
            "decline_to_next_offer_ms": summary(self.decline_to_next),
            "offer_before_response": self.offer_before_response,
            "accepted": self.accepted,
            "declined": self.declined,
            "visits_ended": self.visits,
            "window_s": round(self.window.seconds, 2),
            "server_cpu": round(self.window.server_cpu, 3),
            "server_cpu_wait": round(self.window.server_wait, 3),
            "generator_cpu": round(self.window.client_cpu, 3),
            "generator_cpu_wait": round(self.window.client_wait, 3),
            "server_cpu_ingest_only": round(self.ingest_only.server_cpu, 3),
            "server_cpu_wait_ingest_only": round(self.ingest_only.server_wait, 3),
            "redis_cpu": None if self.window.redis_cpu is None else round(self.window.redis_cpu, 3),
            "fixes_offered_per_s": self.offered_fixes_per_s,
            "fixes_sent_per_s": round(self.window.sent_per_s, 1),
            "fixes_dropped": self.window.dropped,
            "generator_kept_up": self.window.kept_up(self.offered_fixes_per_s),
        }


def place_call(
    doctors: Doctors, state: Dispatch, area_contains: Any, rnd: random.Random
) -> tuple[float, float]:
    """Where the next call is: the current position of a random therapist who holds no offer and no
    visit and stands inside a zone (the first of 200 draws that qualifies; else the last drawn)."""
    fleet = doctors.fleet
    n = len(fleet.lat)
    therapists = range(0, n, 3)  # doctor i has DOCTOR_SPECIALTIES[i % 3]; index 0 is the therapist
    lat = lon = 0.0
    for _ in range(200):
        i = rnd.choice(therapists)
        lat, lon = fleet.lat[i], fleet.lon[i]
        if i not in state.engaged and area_contains(lat, lon):
            break
    return lat, lon


async def bench_target(
    server: Server, database: str, accounts: Accounts, args: argparse.Namespace, area: Any
) -> Result:
    rnd = random.Random(args.seed)
    redis = aioredis.Redis.from_url(args.redis_url) if server.name == "redis" else None
    async with httpx.AsyncClient(
        base_url=server.http, timeout=30, limits=httpx.Limits(max_connections=200)
    ) as http:
        state = Dispatch(accounts, http, random.Random(args.seed + 1), args.decline_share, args.visit_s)
        started = time.monotonic()
        doctors = await connect_doctors(server, accounts, args.doctors, state.on_event, area, args.seed)
        print(
            f"  {server.name}: {args.doctors} doctors online and available in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        driver = asyncio.create_task(drive(doctors.fleet, args.rate))
        try:
            await asyncio.sleep(min(2.0, args.warmup / 2))
            warm = await usage(server, doctors.fleet, redis)
            await asyncio.sleep(args.warmup - min(2.0, args.warmup / 2))
            a = await usage(server, doctors.fleet, redis)
            loop = asyncio.get_running_loop()
            begin = loop.time()
            total = round(args.calls_per_s * args.seconds)
            for n in range(total):
                delay = begin + n / args.calls_per_s - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                lat, lon = place_call(doctors, state, area.contains, rnd)
                state.spawn(state.create(n, lat, lon))
            await asyncio.sleep(max(0.0, begin + total / args.calls_per_s - loop.time()))
            b = await usage(server, doctors.fleet, redis)
            # Stragglers: offers still on their way, visits still going (polled: a bounded wait).
            for _ in range(int((SETTLE_S + args.visit_s) / 0.2)):
                if not state.tasks and all(c.call_id in state.offers for c in state.calls if c.call_id):
                    break
                await asyncio.sleep(0.2)
        finally:
            doctors.fleet.stopped = True
            await driver
            silence(doctors.peers)
            for task in list(state.tasks):
                task.cancel()
            await close_peers(doctors.peers)
            if redis is not None:
                await redis.aclose()
    return summarize_run(server.name, database, args, state, Window.between(a, b), Window.between(warm, a))


def summarize_run(
    name: str, database: str, args: argparse.Namespace, state: Dispatch, window: Window, ingest_only: Window
) -> Result:
    response_to_offer, request_to_offer, create, decline_to_next = [], [], [], []
    errors: dict[str, int] = {}
    early = no_offer = 0
    for trace in state.calls:
        if trace.error is not None or trace.response is None or trace.call_id is None:
            key = trace.error or "no answer"
            errors[key] = errors.get(key, 0) + 1
            continue
        create.append((trace.response - trace.sent) * 1000)
        offers = state.offers.get(trace.call_id)
        if not offers:
            no_offer += 1
            continue
        first = offers[0].at
        response_to_offer.append((first - trace.response) * 1000)
        request_to_offer.append((first - trace.sent) * 1000)
        early += first < trace.response
        declined = state.declined.get(trace.call_id)
        if declined is not None and len(offers) > 1:
            decline_to_next.append((offers[1].at - declined) * 1000)
    for what, count in state.refused.items():
        errors[f"doctor: {what}"] = count
    return Result(
        name=name,
        database=database,
        doctors=args.doctors,
        calls=len(state.calls),
        created=len(create),
        offered=len(response_to_offer),
        no_offer=no_offer,
        errors=errors,
        response_to_offer=summarize(response_to_offer),
        request_to_offer=summarize(request_to_offer),
        create=summarize(create),
        decline_to_next=summarize(decline_to_next),
        offer_before_response=early,
        accepted=state.accepted,
        declined=len(state.declined),
        visits=state.visits,
        window=window,
        ingest_only=ingest_only,
        offered_fixes_per_s=args.doctors * args.rate,
    )


# --- report -------------------------------------------------------------------------------------------


def report(results: Sequence[Result], args: argparse.Namespace, area_description: str) -> None:
    print()
    print(
        f"dispatch: {args.doctors} doctors at {args.rate:g} Hz, {args.calls_per_s:g} calls/s for "
        f"{args.seconds:g} s after {args.warmup:g} s of warm-up; {area_description}; decline "
        f"{args.decline_share:.0%} of first offers, visits of {args.visit_s:g} s; server on CPU "
        f"{args.server_cpu}, generator on CPU {args.client_cpu}"
    )
    print()
    print_latencies(
        [
            (r.name, label, summary)
            for r in results
            for label, summary in (
                ("response->offer", r.response_to_offer),
                ("request->offer", r.request_to_offer),
                ("create (HTTP)", r.create),
                ("decline->next", r.decline_to_next),
            )
        ]
    )
    print()
    header = (
        f"{'target':<8}{'database':<11}{'calls':>6}{'offered':>8}{'no offer':>9}{'accepted':>9}"
        f"{'declined':>9}{'ingest CPU':>11}{'server CPU':>11}{'CPU wait':>9}{'gen CPU':>8}{'gen wait':>9}"
        f"{'redis CPU':>10}{'fixes/s':>9}{'dropped':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        w = r.window
        redis = "-" if w.redis_cpu is None else f"{w.redis_cpu:.0%}"
        print(
            f"{r.name:<8}{r.database:<11}{r.calls:>6}{r.offered:>8}{r.no_offer:>9}{r.accepted:>9}"
            f"{r.declined:>9}{r.ingest_only.server_cpu:>11.0%}{w.server_cpu:>11.0%}{w.server_wait:>9.0%}"
            f"{w.client_cpu:>8.0%}{w.client_wait:>9.0%}{redis:>10}{w.sent_per_s:>9,.0f}{w.dropped:>8}"
        )
    print(
        "response->offer: create-call response read -> offer.created read by the doctor's connection "
        "(negative: the offer came first). CPU: shares of a core over the calls' window (ingest CPU: the "
        "server over the warm-up, positions only); CPU wait / gen wait: share of it the server / generator "
        "was runnable while another process held its CPU (/proc/<pid>/schedstat)."
    )
    for r in results:
        if r.offer_before_response:
            print(f"  {r.name}: {r.offer_before_response} offers arrived before their call's HTTP response")
        if r.errors:
            print(f"  {r.name}: errors: {r.errors}")
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
    if "memory" in {r.name for r in results} and "redis" in {r.name for r in results}:
        by = {r.name: r for r in results}
        m, rd = by["memory"].response_to_offer, by["redis"].response_to_offer
        if m is not None and rd is not None and m.p50 > 0:
            print(
                f"\nratios (same run): redis / memory response->offer p50 x{rd.p50 / m.p50:.2f}, "
                f"p99 x{rd.p99 / m.p99:.2f}"
            )
    print("\ngoals (memory engine):")
    for r in results:
        s = r.response_to_offer
        if r.name != "memory" or s is None:
            continue
        print(
            f"  p50 <= {GOAL_P50_MS:g} ms: {s.p50:.1f} ({'met' if s.p50 <= GOAL_P50_MS else 'MISSED'}); "
            f"p99 <= {GOAL_P99_MS:g} ms: {s.p99:.1f} ({'met' if s.p99 <= GOAL_P99_MS else 'MISSED'})"
        )


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_dispatch", description=__doc__.split("\n")[0]
    )
    add_city_options(parser)
    parser.add_argument("--calls-per-s", type=float, default=10.0, help="calls created per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long calls are created")
    parser.add_argument("--warmup", type=float, default=10.0, help="streaming before the first call")
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--decline-share", type=float, default=0.25, help="first offers declined")
    parser.add_argument("--visit-s", type=float, default=5.0, help="accepted call -> completed, seconds")
    parser.add_argument("--quick", action="store_true", help="300 doctors, 5 calls/s for 8 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.doctors, args.calls_per_s, args.seconds, args.warmup, args.visit_s = 300, 5.0, 8.0, 2.0, 1.0
        args.patients = 10
    check_city_options(parser, args)
    return args


def run(argv: Sequence[str] | None = None) -> list[Result]:
    """Run the benchmark; returns one result per target (also printed, and written to ``--json``)."""
    args = parse_args(argv)
    return run_city(
        args,
        "dispatch",
        args.doctors,
        lambda secret: plan_accounts(
            TokenService(secret, access_ttl_s=3600, refresh_ttl_s=3600), args.doctors, args.patients
        ),
        lambda server, database, accounts, area: bench_target(server, database, accounts, args, area),
        lambda results, area: report(results, args, area),
    )


def main(argv: Sequence[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(argv)


if __name__ == "__main__":
    main()
