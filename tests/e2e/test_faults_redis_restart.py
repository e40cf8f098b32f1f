"""Redis restarted without persistence under load (issue 16, "Done when" 1).

Two server processes share the test's own ``redis-server`` (no RDB, no AOF) and one PostgreSQL
database. Doctors are real WebSocket clients streaming positions, split between the servers. Before
the fault: some calls are assigned (three of them in progress), some are offered to doctors who let the
offers wait. Redis is then killed, stays down ``OUTAGE_S``, and comes back empty. During the outage,
doctors complete visits, patients cancel calls, a visit moves on, doctors pause. Right after Redis is
back, ``AFTER_CALLS`` calls are created, one every ``AFTER_SPACING_S``, and every doctor accepts offers.

What must hold (each failure is listed, tagged with the issue-16 part it needs):

- every call created after Redis is back got its first offer within 2 s of its creation (the offer's
  ``created_at`` minus the call's, both stamped by the servers);
- every call that was offered at the restart (and not cancelled) was offered again and is assigned;
- no doctor is left busy or offered in the engine for a call that is final, or an offer that is not
  pending, in the database (within a few repair-sweep intervals);
- every connected doctor app got the re-announce frame and re-sent its status and position;
- no call lost (every created call is assigned or final, none escalated), none assigned twice, no doctor
  holding two calls;
- no request made during the outage answered 500 (or the socket's ``internal_error``); a non-success
  answer committed nothing, a success committed its change (checked in the database);
- the rebuild is counted in ``/metrics``: ``tot_engine_rebuilds`` went up (summed over the servers:
  one process rebuilds) and every server counted the engine change in ``tot_engine_epoch_events``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.enums import Role
from tests.e2e.dispatch_world import CENTRE, Person, offset
from tests.e2e.faults_world import (
    REPAIR_INTERVAL_S,
    Deployment,
    DoctorApp,
    deployment,
    start_apps,
    stop_apps,
    summary,
    until,
)
from tests.e2e.redis_proc import RedisServer, redis_server

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

DISPATCH_DOCTORS = 36
RESERVE_DOCTORS = 4  # far from every call; they only change their availability during the outage
PATIENTS = 6
ASSIGNED_BEFORE = 6  # three are completed during the outage, one moves en route
PENDING_BEFORE = 6  # offered, unanswered, at the restart; two are cancelled during the outage
AFTER_CALLS = 24
AFTER_SPACING_S = 0.1
OUTAGE_S = 2.5
FIRST_OFFER_WITHIN_MS = 2_000
DOCTOR_SPREAD_M, CALL_SPREAD_M = 1_500, 1_000
SETTLE_TIMEOUT_S = 45.0
REANNOUNCE_TIMEOUT_S = 10.0
ENGINE_CONSISTENT_WITHIN_S = 3 * REPAIR_INTERVAL_S + 5.0
OPEN = ("created", "searching", "offered")
ON_CALL = ("assigned", "en_route", "arrived", "in_progress")
FINAL = ("completed", "cancelled")

# The helper whose feature each check needs (issue 16): for the reader of a failure on a partial main.
REBUILD, OUTBOX, BROKER = "[rebuild]", "[outbox]", "[broker]"


@dataclass
class OutageRequest:
    """A change asked for while Redis was down: what, how it was answered, what the database says."""

    what: str
    call_id: str | None
    doctor: DoctorApp | None
    wanted: str  # the call status or doctor availability the change makes
    before: str  # the same before the change
    answer: str = "not answered"  # "200", "503 unavailable", "ok", "internal_error"...
    success: bool = False


def test_redis_restart_under_load(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis") as redis,
        deployment(
            tmp_path, redis=redis, servers=2, doctors=DISPATCH_DOCTORS + RESERVE_DOCTORS, patients=PATIENTS
        ) as world,
    ):
        started = time.monotonic()
        problems = asyncio.run(_scenario(world, redis))
        print(f"redis restart scenario took {time.monotonic() - started:.1f} s")
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


async def _scenario(world: Deployment, redis: RedisServer) -> list[str]:
    rng = random.Random(16)
    people = world.of_role(Role.DOCTOR)
    apps = [
        world.doctor_app(p, *_scatter(rng, DOCTOR_SPREAD_M), server=n % 2, seed=n)
        for n, p in enumerate(people[:DISPATCH_DOCTORS])
    ]
    reserve = [
        world.doctor_app(p, *offset(*CENTRE, 40_000 + 100 * n), server=n % 2, seed=100 + n)
        for n, p in enumerate(people[DISPATCH_DOCTORS:])
    ]
    patients = world.of_role(Role.PATIENT)
    owner: dict[str, Person] = {}
    problems: list[str] = []
    try:
        await start_apps(apps + reserve)

        # --- before: assigned calls (three taken to in_progress), then calls left offered -----------------
        assigned = [await _create(world, owner, patients, rng, n) for n in range(ASSIGNED_BEFORE)]
        await until(lambda: _all_in(world, assigned, ON_CALL), 30, "assignment of the first calls")
        for app in apps:
            app.mode = "ignore"
        pending = [await _create(world, owner, patients, rng, n) for n in range(PENDING_BEFORE)]
        await until(lambda: _all_in(world, pending, ("offered",)), 30, "offers of the pending calls")
        calls = {c["id"]: c for c in await world.all_calls()}
        by_doctor = {a.id: a for a in apps}
        holder = {cid: by_doctor[calls[cid]["doctor_id"]] for cid in assigned}
        for cid in assigned[:3]:
            for status in ("en_route", "arrived", "in_progress"):
                response = await _visit(world, holder[cid], cid, status)
                assert response.status_code == 200, response.text

        # --- the outage: Redis dies, changes are asked for, Redis comes back empty ------------------------
        outage = [
            *(
                OutageRequest("complete", cid, holder[cid], "completed", "in_progress")
                for cid in assigned[:3]
            ),
            OutageRequest("en route", assigned[3], holder[assigned[3]], "en_route", "assigned"),
            *(OutageRequest("cancel", cid, None, "cancelled", "offered") for cid in pending[:2]),
            *(OutageRequest("pause", None, app, "paused", "available") for app in reserve),
        ]
        rebuilds_before = await _rebuild_counts(world)
        redis.crash()
        asks = [asyncio.create_task(_ask(world, owner, r)) for r in outage]
        await asyncio.sleep(OUTAGE_S)  # the outage is wall time on purpose
        redis.start()
        back_ms = int(time.time() * 1000)
        for app in apps:
            app.mode = "accept"

        # --- after: calls keep coming ---------------------------------------------------------------------
        after = []
        for n in range(AFTER_CALLS):
            after.append(await _create(world, owner, patients, rng, n))
            await asyncio.sleep(AFTER_SPACING_S)  # the load's pace, not a wait for a condition
        await asyncio.wait_for(asyncio.gather(*asks), 60)
        for r in outage:
            if r.what == "complete" and r.success and r.doctor is not None:
                r.doctor.busy_with = None  # the app learns from its own answer
        try:
            await until(lambda: _settled(world), SETTLE_TIMEOUT_S, "calm: calls still being dispatched", 0.5)
        except AssertionError as exc:
            problems.append(f"{REBUILD} {exc}")

        # --- what must hold ---------------------------------------------------------------------------------
        calls = {c["id"]: c for c in await world.all_calls()}
        offers = {cid: await world.offers(cid) for cid in calls}
        problems += _first_offers(calls, offers, after, back_ms)
        problems += _pending_again(calls, offers, pending[2:], back_ms)
        problems += await _outage_answers(world, calls, outage)
        problems += await _no_loss_no_double(world, calls, offers, assigned + pending + after)
        problems += _reannounced(apps + reserve, back_ms)
        problems += await _engine_follows_database(world, people)
        problems += _rebuilds_counted(rebuilds_before, await _rebuild_counts(world))
        for app in apps + reserve:
            problems += [f"doctor app {app.id}: {p}" for p in app.problems]
        return problems
    finally:
        await stop_apps(apps + reserve)


# --- the scenario's steps -------------------------------------------------------------------------------


async def _create(
    world: Deployment, owner: dict[str, Person], patients: list[Person], rng: random.Random, n: int
) -> str:
    patient = patients[n % len(patients)]
    body = {"address": "Fault street 16", "urgency": "urgent", "specialty": "therapist"}
    lat, lon = _scatter(rng, CALL_SPREAD_M)
    response = await world.rest(
        "POST", "/v1/calls", patient, server=n % 2, json={**body, "lat": lat, "lon": lon}
    )
    assert response.status_code == 201, response.text
    call_id: str = response.json()["id"]
    owner[call_id] = patient
    return call_id


async def _visit(
    world: Deployment, doctor: DoctorApp, call_id: str, status: str, server: int = 0
) -> httpx.Response:
    return await world.rest(
        "POST", f"/v1/calls/{call_id}/status", doctor.person, server=server, json={"status": status}
    )


async def _ask(world: Deployment, owner: dict[str, Person], r: OutageRequest) -> None:
    """Make the outage request ``r`` and record its answer (REST status and error code, or the socket's
    ``ok``/error code)."""
    try:
        if r.what == "pause":
            assert r.doctor is not None
            r.answer = await r.doctor.set_status(r.wanted)
            r.success = r.answer == "ok"
            return
        if r.what == "cancel":
            assert r.call_id is not None
            response = await world.rest(
                "POST",
                f"/v1/calls/{r.call_id}/cancel",
                owner[r.call_id],
                server=1,
                json={"reason": "outage test"},
            )
        else:
            assert r.doctor is not None and r.call_id is not None
            response = await _visit(world, r.doctor, r.call_id, r.wanted, server=1)
    except httpx.HTTPError as exc:
        r.answer = f"no answer ({exc!r})"
        return
    code = ""
    if response.status_code != 200:
        try:
            code = " " + str(response.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            code = " " + response.text[:80]
    r.answer = f"{response.status_code}{code}"
    r.success = response.status_code == 200


async def _all_in(world: Deployment, call_ids: list[str], statuses: tuple[str, ...]) -> bool:
    calls = {c["id"]: c["status"] for c in await world.all_calls()}
    return all(calls.get(cid) in statuses for cid in call_ids)


async def _settled(world: Deployment) -> bool:
    """No call is being dispatched any more (each is on a doctor, escalated or final)."""
    return not any(c["status"] in OPEN for c in await world.all_calls())


# --- the checks -----------------------------------------------------------------------------------------


def _first_offers(
    calls: dict[str, dict[str, Any]], offers: dict[str, list[dict[str, Any]]], after: list[str], back_ms: int
) -> list[str]:
    never, late, waits = [], [], []
    for cid in after:
        if not offers[cid]:
            made = calls[cid]["created_at"] - back_ms
            never.append(f"{cid} ({calls[cid]['status']}, created {made:+d} ms after Redis was back)")
            continue
        wait = min(o["created_at"] for o in offers[cid]) - calls[cid]["created_at"]
        waits.append(wait)
        if wait > FIRST_OFFER_WITHIN_MS:
            late.append(f"{cid} after {wait} ms")
    if waits:
        print(
            f"first offer after the restart: max {max(waits)} ms, median {sorted(waits)[len(waits) // 2]} ms"
        )
    return [
        *summary(REBUILD, "calls created after the restart never offered", never, len(after)),
        *summary(
            REBUILD, f"calls created after the restart offered later than {FIRST_OFFER_WITHIN_MS} ms", late
        ),
    ]


def _pending_again(
    calls: dict[str, dict[str, Any]],
    offers: dict[str, list[dict[str, Any]]],
    pending: list[str],
    back_ms: int,
) -> list[str]:
    stuck = []
    for cid in pending:
        again = [o for o in offers[cid] if o["created_at"] >= back_ms]
        if calls[cid]["status"] not in ON_CALL or not again:
            outcomes = [(o["outcome"], o["created_at"] - back_ms) for o in offers[cid]]
            stuck.append(
                f"{cid} {calls[cid]['status']}, offers (outcome, ms after Redis was back) {outcomes}"
            )
    return summary(
        REBUILD, "calls offered at the restart not offered again and assigned", stuck, len(pending)
    )


async def _outage_answers(
    world: Deployment, calls: dict[str, dict[str, Any]], outage: list[OutageRequest]
) -> list[str]:
    errors, lies, refused_committed = [], [], []
    chosen = await world.chosen_statuses([r.doctor.id for r in outage if r.what == "pause" and r.doctor])
    for r in outage:
        now = calls[r.call_id]["status"] if r.call_id else chosen.get(r.doctor.id if r.doctor else "", "?")
        committed = now == r.wanted
        line = (
            f"{r.what} {r.call_id or (r.doctor.id if r.doctor else '')}: answered {r.answer}, database {now}"
        )
        print(f"during the outage: {line}")
        if r.answer.startswith("500") or "internal_error" in r.answer or r.answer.startswith("no answer"):
            errors.append(line)
        elif r.success and not committed:
            lies.append(line)
        elif not r.success and committed:
            refused_committed.append(line)
    return [
        *summary(f"{OUTBOX}{REBUILD}", "outage requests answered 500 or not at all", errors, len(outage), 10),
        *summary(REBUILD, "outage requests answered success, not committed", lies, len(outage), 10),
        *summary(OUTBOX, "outage requests refused but committed", refused_committed, len(outage), 10),
    ]


async def _no_loss_no_double(
    world: Deployment,
    calls: dict[str, dict[str, Any]],
    offers: dict[str, list[dict[str, Any]]],
    created: list[str],
) -> list[str]:
    missing = [cid for cid in created if cid not in calls]
    statuses = Counter(c["status"] for c in calls.values())
    print(f"calls at the end: {dict(statuses)}")
    unfinished, twice = [], []
    for cid, call in calls.items():
        if call["status"] not in ON_CALL + FINAL:
            unfinished.append(f"{cid} {call['status']}")
        accepted = [o for o in offers[cid] if o["outcome"] == "accepted"]
        history = await world.history(cid)
        into_assigned = [e for e in history if e["to_status"] == "assigned"]
        if len(accepted) > 1 or len(into_assigned) > 1:
            twice.append(f"{cid}: {len(accepted)} accepted offers, {len(into_assigned)} assigned events")
    holders = Counter(c["doctor_id"] for c in calls.values() if c["status"] in ON_CALL)
    return [
        *summary("", "calls lost (created, not in the database)", missing, len(created)),
        *summary(
            REBUILD, "calls neither on a doctor nor final (lost to the restart)", unfinished, len(calls)
        ),
        *summary("", "calls assigned twice", twice),
        *summary("", "doctors holding two calls", [f"{d}: {n}" for d, n in holders.items() if n > 1]),
    ]


def _reannounced(apps: list[DoctorApp], back_ms: int) -> list[str]:
    """Each app got ``reannounce`` after Redis was back, and its client answered it: a ``doctor.status``
    sent at or after the frame (the app itself sends none then; a location goes out every second
    anyway)."""
    silent, late = [], []
    back = back_ms / 1000
    for app in apps:
        frames = [t for t in app.client.reannounce_frames if t >= back]
        resent = app.client.sent_since("doctor.status", frames[0]) if frames else []
        if not frames or not resent:
            silent.append(
                f"{app.id}: {len(frames)} frames, {len(resent)} status re-sent, "
                f"{len(app.client.hellos)} connections"
            )
        elif frames[0] - back > REANNOUNCE_TIMEOUT_S:
            late.append(f"{app.id} after {frames[0] - back:.1f} s")
    return [
        *summary(
            REBUILD, "connected doctor apps never asked to re-announce (or never did)", silent, len(apps)
        ),
        *summary(REBUILD, f"doctor apps asked to re-announce later than {REANNOUNCE_TIMEOUT_S:g} s", late),
    ]


async def _engine_follows_database(world: Deployment, people: list[Person]) -> list[str]:
    """Within a few sweep intervals: a doctor busy in the engine holds that open call in the database; a
    doctor offered has that pending offer."""
    ids = [p.id for p in people]
    found: list[str] = []

    async def consistent() -> bool:
        found.clear()
        states = await world.engine_states(ids)
        calls = {c["id"]: c for c in await world.all_calls()}
        for doctor_id, state in states.items():
            if state.status == "busy":
                call = calls.get(state.ref or "")
                if call is None or call["status"] not in ON_CALL or call["doctor_id"] != doctor_id:
                    status = call["status"] if call else "missing"
                    found.append(f"busy {doctor_id} for call {state.ref} ({status})")
            elif state.status == "offered":
                pending = [
                    o["id"]
                    for c in calls.values()
                    if c["status"] == "offered"
                    for o in await world.offers(c["id"])
                    if o["outcome"] == "pending" and o["doctor_id"] == doctor_id
                ]
                if state.ref not in pending:
                    found.append(f"offered {doctor_id} for {state.ref} (no such pending offer)")
        return not found

    try:
        took = await until(consistent, ENGINE_CONSISTENT_WITHIN_S, "engine that follows the database", 0.5)
        print(f"engine consistent with the database after {took:.1f} s more")
    except AssertionError:
        return summary(
            REBUILD, "doctors busy or offered in the engine for what is over in the database", found
        )
    return []


async def _rebuild_counts(world: Deployment) -> list[tuple[float, float]]:
    """Per server: (``tot_engine_rebuilds``, ``tot_engine_epoch_events`` with outcome ``changed`` or
    ``rebuilt``): the rebuilds it made, the engine changes it noticed (0 when not exported)."""
    counts = []
    for server in world.servers:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            text = (await http.get("/metrics")).text
        samples = [_sample(line) for line in text.splitlines()]
        rebuilds = sum(v for name, labels, v in samples if name in REBUILDS)
        noticed = sum(
            v for name, labels, v in samples if name in EPOCH_EVENTS and labels.get("outcome") in NOTICED
        )
        counts.append((rebuilds, noticed))
    return counts


def _rebuilds_counted(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> list[str]:
    """One rebuild for the restart across the servers (one process rebuilds; a server also rebuilds
    at its start), and every server noticed the engine change."""
    print(f"(rebuilds, engine changes noticed) per server: {before} before the restart, {after} after")
    rebuilt = sum(a for a, _ in after) - sum(b for b, _ in before)
    problems = []
    if not 1 <= rebuilt <= len(after):
        problems.append(f"{REBUILD} {rebuilt:g} rebuilds counted for one restart (tot_engine_rebuilds)")
    problems += [
        f"{REBUILD} server {n} never noticed the engine change (tot_engine_epoch_events)"
        for n, ((_, was), (_, now)) in enumerate(zip(before, after, strict=True))
        if now <= was
    ]
    return problems


REBUILDS = ("tot_engine_rebuilds", "tot_engine_rebuilds_total")
EPOCH_EVENTS = ("tot_engine_epoch_events", "tot_engine_epoch_events_total")
NOTICED = ("changed", "rebuilt")


def _sample(line: str) -> tuple[str, dict[str, str], float]:
    """(name, labels, value) of a Prometheus text line; ("", {}, 0) for a comment."""
    if line.startswith("#") or " " not in line:
        return "", {}, 0.0
    head, value = line.rsplit(" ", 1)
    name, _, rest = head.partition("{")
    labels = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
    return name, {k: v.strip('"') for k, v in labels.items()}, float(value)


def _scatter(rng: random.Random, radius_m: float) -> tuple[float, float]:
    distance, angle = radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return offset(*CENTRE, distance * math.cos(angle), distance * math.sin(angle))
