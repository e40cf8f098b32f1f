"""One replay run, start to end: inputs, accounts, apps on the compressed clock, drain, the server's record.

Phases (wall time): read and slice the inputs; wait for the server's health; sign the accounts in
(cached, see :mod:`loadtests.replay.accounts`); connect every doctor and the dispatchers; start the
clock; replay the slice (doctors follow their traces, a patient app starts at each call's time);
drain (no new calls; at most ``replay_drain_min`` for open calls to settle); stop the patients and
doctors (doctors go offline); cancel the run's calls still open (``cleanup``) while the dispatchers keep
listening until the calls are quiet; read the server's record of every call; run the integrity checks.
Before the clock starts, open calls an earlier run left behind are cancelled too.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from tqdm import tqdm

from loadtests.replay import roster
from loadtests.replay.accounts import Account, AccountBook, AccountSetupError
from loadtests.replay.api import Rest, wait_healthy
from loadtests.replay.cleanup import clear_leftovers, close_run
from loadtests.replay.clock import ReplayClock
from loadtests.replay.collect import ServerCall, collect_calls
from loadtests.replay.context import Context
from loadtests.replay.dispatcher import DispatcherApp
from loadtests.replay.doctor import DoctorApp
from loadtests.replay.inputs import (
    CallSpec,
    ReadStats,
    Trace,
    first_time,
    read_calls,
    read_traces,
    resolve_start,
    slice_calls,
    slice_traces,
)
from loadtests.replay.integrity import Check, run_checks
from loadtests.replay.monitor import (
    Progress,
    count_client_warnings,
    poll_server,
    sample_doctors,
    watch_loop_lag,
)
from loadtests.replay.options import ReplayOptions
from loadtests.replay.patient import PatientApp
from loadtests.replay.recorder import Recorder
from loadtests.replay.scale import scale_calls, scale_fleet

log = logging.getLogger("tot.replay")

SETUP_CONCURRENCY = 4
"""Accounts signed in at once (each costs the server one argon2 hash: more would only queue)."""
CONNECT_CONCURRENCY = 32
"""Sockets opened at once while connecting the fleet."""
QUIET_WALL_S = 20.0
"""After the apps stop: wait until no call changed status for this long (wall s; offers still open
expire on the server's 15 s timer), or until every call is settled."""
SETTLE_MAX_WALL_S = 90.0
HTTP_CONNECTIONS = 256
"""REST connections the simulated people share (requests beyond wait for one in the client)."""

T = TypeVar("T")


@dataclass
class RunMeta:
    """Facts about the run for the report. Times: ``*_s`` seconds; ``slice_*`` epoch seconds."""

    run_id: str
    server: str
    health: dict[str, Any]
    started: str
    slice_start: float
    slice_end: float
    speed: float
    scale: int
    doctors: int
    calls_planned: int
    traces_read: ReadStats
    calls_read: ReadStats
    setup_wall_s: float = 0.0
    replay_wall_s: float = 0.0
    drain_wall_s: float = 0.0
    leftovers_cancelled: int = 0
    """Open calls of earlier runs cancelled before this one (cleanup.clear_leftovers)."""
    closed_at_end: int = 0
    """Calls of this run still open after the drain, cancelled by the replay (cleanup.close_run)."""
    client_cpu_s: float = 0.0
    """CPU seconds the replay process itself used during the replay and the drain."""
    accounts: dict[str, int] = field(default_factory=dict)
    dispatcher_login: str = ""
    report_dir: Path = Path()


@dataclass
class RunResult:
    """Everything the report needs."""

    options: ReplayOptions
    meta: RunMeta
    recorder: Recorder
    server: dict[str, ServerCall]
    checks: list[Check]


@dataclass
class Inputs:
    """The slice to replay (already scaled)."""

    traces: list[Trace]
    calls: list[CallSpec]
    start: float
    end: float
    drain_end: float
    traces_read: ReadStats
    calls_read: ReadStats


def load_inputs(options: ReplayOptions) -> Inputs:
    """Read, filter, slice and scale the inputs (see :mod:`loadtests.replay.inputs`)."""
    traces, traces_read = read_traces(options.traces)
    calls, calls_read = read_calls(options.calls)
    start = resolve_start(options.start, options.tz, first_time(traces))
    end = start + options.hours * 3600.0
    drain_end = end + options.replay_drain_min * 60.0
    fleet = [t for t in slice_traces(traces, start, drain_end) if t.fixes[0].ts < end]
    if options.limit_doctors is not None:
        fleet = fleet[: options.limit_doctors]
    wanted = slice_calls(calls, start, end)
    if options.fleet_calls:
        vehicles = {t.id for t in fleet}
        wanted = [c for c in wanted if c.id in vehicles]
    if options.limit_calls is not None:
        wanted = wanted[: options.limit_calls]
    rng = random.Random(options.seed)
    fleet = scale_fleet(fleet, options.scale, rng, jitter_m=options.jitter_m, jitter_s=options.jitter_s)
    wanted = scale_calls(wanted, options.scale, rng, jitter_m=options.jitter_m, jitter_s=options.jitter_s)
    wanted = [c for c in wanted if start <= c.ts < end]  # clones shifted out of the slice stay out
    return Inputs(fleet, wanted, start, end, drain_end, traces_read, calls_read)


async def _bounded(
    items: list[T], work: Callable[[T], Awaitable[Any]], limit: int, label: str, show: bool
) -> list[Any]:
    room = asyncio.Semaphore(limit)
    bar = tqdm(total=len(items), desc=label, disable=not show, leave=False)

    async def one(item: T) -> Any:
        async with room:
            try:
                return await work(item)
            finally:
                bar.update(1)

    try:
        return await asyncio.gather(*(one(i) for i in items))
    finally:
        bar.close()


async def _sign_in(
    options: ReplayOptions, book: AccountBook, inputs: Inputs
) -> tuple[Account, Account, list[Account], list[Account]]:
    admin = await book.staff(*options.admin)
    try:
        dispatcher = await book.staff(*options.dispatcher)
    except AccountSetupError:
        log.warning("dispatcher login %s failed: the admin acts as dispatcher", options.dispatcher[0])
        dispatcher = admin

    async def doctor(person: roster.Person) -> Account:
        return await book.doctor(
            person.email, person.password, person.name, person.licence, options.specialty, admin
        )

    async def patient(person: roster.Person) -> Account:
        return await book.patient(person.email, person.password, person.name)

    try:
        doctors = await _bounded(
            roster.doctors(options, inputs.traces), doctor, SETUP_CONCURRENCY, "doctors", options.progress
        )
        people = roster.patients(options, len(inputs.calls))
        patients = await _bounded(people, patient, SETUP_CONCURRENCY, "patients", options.progress)
    finally:
        book.save()
    return admin, dispatcher, doctors, patients


def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (every simulated app holds a socket);
    returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


async def prepare_accounts(options: ReplayOptions) -> dict[str, int]:
    """Only sign in (and make) the run's accounts and cache them: a big run's set-up done ahead.
    Returns how many were registered, logged in and refreshed."""
    inputs = load_inputs(options)
    report_dir = options.resolved_report_dir()
    report_dir.mkdir(parents=True, exist_ok=True)
    async with httpx.AsyncClient(base_url=options.server, timeout=30.0) as http:
        await wait_healthy(http, options.wall_server_wait_s)
        book = AccountBook(Rest(http), options.accounts_file or report_dir / "accounts.json")
        await _sign_in(options, book, inputs)
        return book.counts()


async def run_replay(options: ReplayOptions) -> RunResult:
    """Run one replay against ``options.server`` and return what the report needs."""
    raise_open_file_limit()
    inputs = load_inputs(options)
    report_dir = options.resolved_report_dir()
    report_dir.mkdir(parents=True, exist_ok=True)
    accounts_file = options.accounts_file or report_dir / "accounts.json"
    limits = httpx.Limits(max_connections=HTTP_CONNECTIONS, max_keepalive_connections=HTTP_CONNECTIONS)
    async with httpx.AsyncClient(base_url=options.server, timeout=30.0, limits=limits) as http:
        health = await wait_healthy(http, options.wall_server_wait_s)
        rest = Rest(http)
        book = AccountBook(rest, accounts_file)
        setup_started = time.monotonic()
        _admin, dispatcher, doctor_accounts, patients = await _sign_in(options, book, inputs)
        leftovers = await clear_leftovers(rest, book.token_source(dispatcher), {p.user_id for p in patients})
        meta = RunMeta(
            run_id=uuid.uuid4().hex[:10],
            server=options.server,
            health=health,
            started=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            slice_start=inputs.start,
            slice_end=inputs.end,
            speed=options.speed,
            scale=options.scale,
            doctors=len(inputs.traces),
            calls_planned=len(inputs.calls),
            traces_read=inputs.traces_read,
            calls_read=inputs.calls_read,
            dispatcher_login=dispatcher.email,
            report_dir=report_dir,
            leftovers_cancelled=leftovers,
        )
        recorder = Recorder()
        ctx = Context(
            options.server,
            rest,
            book,
            ReplayClock(inputs.start, options.speed),
            options.behaviour,
            recorder,
            options.seed,
            options.specialty,
        )
        doctors = [DoctorApp(ctx, a, t) for a, t in zip(doctor_accounts, inputs.traces, strict=True)]
        team = [
            DispatcherApp(ctx, dispatcher, i, options.behaviour.dispatchers)
            for i in range(options.behaviour.dispatchers)
        ]
        with count_client_warnings(recorder):
            await _bounded(doctors, lambda d: d.connect(), CONNECT_CONCURRENCY, "connect", options.progress)
            for console in team:
                await console.connect()
            meta.setup_wall_s = time.monotonic() - setup_started
            server = await _replay(options, inputs, ctx, doctors, team, patients, meta)
        meta.accounts = book.counts()
        book.save()
    checks = run_checks(recorder, server)
    return RunResult(options, meta, recorder, server, checks)


async def _replay(
    options: ReplayOptions,
    inputs: Inputs,
    ctx: Context,
    doctors: list[DoctorApp],
    team: list[DispatcherApp],
    patients: list[Account],
    meta: RunMeta,
) -> dict[str, ServerCall]:
    clock, recorder = ctx.clock, ctx.recorder
    patient_tasks: list[asyncio.Task[None]] = []

    def describe() -> dict[str, object]:
        states = [d.state for d in doctors]
        return {
            "calls": sum(1 for c in recorder.calls.values() if c.call_id),
            "open": recorder.open_calls(),
            "on call": states.count("on_call"),
            "free": states.count("available"),
        }

    async def schedule() -> None:
        for i, spec in enumerate(inputs.calls):
            await clock.sleep_until(spec.ts)
            app = PatientApp(ctx, patients[i % len(patients)], spec, meta.run_id)
            patient_tasks.append(ctx.spawn(app.run(), app.name))

    progress = Progress(inputs.end - inputs.start, options.progress, describe)
    clock.start()
    started = time.monotonic()
    cpu_started = time.process_time()
    background = [asyncio.create_task(d.run(), name=d.name) for d in doctors]
    background += [asyncio.create_task(c.run(), name=c.name) for c in team]
    # /metrics on a connection of its own: a server slow to answer the people must not hide its CPU.
    metrics_http = httpx.AsyncClient(base_url=options.server, timeout=10.0)
    monitors = [
        asyncio.create_task(poll_server(Rest(metrics_http), clock, recorder)),
        asyncio.create_task(sample_doctors(doctors, clock, recorder)),
        asyncio.create_task(watch_loop_lag(recorder)),
    ]
    scheduler = asyncio.create_task(schedule())
    try:
        while clock.now() < inputs.end or not scheduler.done():
            progress.update(clock.now() - inputs.start)
            await asyncio.sleep(0.5)
        meta.replay_wall_s = time.monotonic() - started
        progress.set_description("draining")
        while clock.now() < inputs.drain_end and recorder.open_calls() > 0:
            progress.update(inputs.end - inputs.start)
            await asyncio.sleep(0.5)
        meta.drain_wall_s = time.monotonic() - started - meta.replay_wall_s
        meta.client_cpu_s = time.process_time() - cpu_started
    finally:
        progress.close()
        ctx.stop.set()
        for task in monitors:  # the report covers the replay and the drain, not the wind-down
            task.cancel()
        await asyncio.gather(*monitors, return_exceptions=True)
        await metrics_http.aclose()
        scheduler.cancel()
        for task in background[: len(doctors)]:
            task.cancel()
        await asyncio.gather(*background[: len(doctors)], return_exceptions=True)
        await asyncio.gather(*(d.close() for d in doctors), return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*patient_tasks, return_exceptions=True), 15)
    token = dispatcher_token_source(ctx, team)
    meta.closed_at_end = await close_run(ctx.rest, token, recorder)
    await _settle(recorder)
    server = await _collect(options, ctx, token)
    for task in background[len(doctors) :]:
        task.cancel()
    await asyncio.gather(*background[len(doctors) :], return_exceptions=True)
    for console in team:
        await console.client.close()
    await ctx.cancel_background()
    return server


def dispatcher_token_source(ctx: Context, team: list[DispatcherApp]) -> Callable[[], Awaitable[str]]:
    """The token of the dispatchers' account, for reading the record (offers are staff-only)."""
    return ctx.book.token_source(team[0].account) if team else _no_token


async def _no_token() -> str:
    raise AccountSetupError("no dispatcher account to read the record with")


def _tick(bar: tqdm[Any]) -> None:
    bar.update(1)


async def _settle(recorder: Recorder) -> None:
    """Wait until every call is settled and every SOS acknowledged, or until no call changed status for
    ``QUIET_WALL_S`` (SOS acknowledgements still count: the dispatchers are still at work)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_MAX_WALL_S
    while loop.time() < deadline:
        quiet = time.monotonic() - recorder.last_change_s
        if recorder.unacknowledged_sos() == 0 and (
            (recorder.open_calls() == 0 and quiet > 1.0) or quiet > QUIET_WALL_S
        ):
            return
        await asyncio.sleep(0.5)


async def _collect(
    options: ReplayOptions, ctx: Context, token: Callable[[], Awaitable[str]]
) -> dict[str, ServerCall]:
    ids = [log.call_id for log in ctx.recorder.calls.values() if log.call_id is not None]
    bar = tqdm(total=len(ids), desc="reading calls", disable=not options.progress, leave=False)
    try:
        server = await collect_calls(ctx.rest, token, ids, lambda: _tick(bar))
    finally:
        bar.close()
    # A status the dispatchers saw after its call was read (the server moved on meanwhile): read again.
    behind = [
        i
        for i in ids
        if server[i].call is None or server[i].call.get("status") != ctx.recorder.by_id[i].status  # type: ignore[union-attr]
    ]
    if behind:
        await asyncio.sleep(2.0)
        server.update(await collect_calls(ctx.rest, token, behind))
    return server
