"""``kill -9`` of a server process at the worst moments (issue 16, "Done when" 2 and 3), on two server
processes sharing the test's own Redis and one PostgreSQL database.

The window between a commit and what follows it in Redis is held open from outside: the test pauses
every write on its Redis (``CLIENT PAUSE WRITE``; reads still answer, so the request reaches its commit),
sees the commit in the database through the other server, kills the committing process with SIGKILL and
lets Redis go. The dead process's waiting writes die with its connection (tests/e2e/test_faults_harness.py
pins that), so nothing it meant to publish or free ever happens: the survivor must do it.

1. Between commit and publish: a visit moves ``en_route``; the survivor's outbox relay publishes the
   event; the patient's client, reconnecting to the survivor with ``since``, receives it exactly once;
   a fresh client asking ``since`` a position before it is replayed it once; once Redis has restarted
   empty, a client asking ``since`` that old position is answered ``recovered: false``.
2. After ``completed`` is committed, before the doctor is freed in the engine: the repair sweep frees
   the doctor within one sweep interval (plus slack for a loaded machine), and the doctor is offered the
   next call nearby.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from models.enums import Role
from realtime.client import Position
from tests.e2e.dispatch_world import CENTRE, offset
from tests.e2e.faults_world import (
    OUTBOX_COMMIT_LEASE_S,
    OUTBOX_RELAY_INTERVAL_S,
    OUTBOX_RELAY_LEASE_S,
    REPAIR_INTERVAL_S,
    Deployment,
    DoctorApp,
    Listener,
    deployment,
    until,
)
from tests.e2e.redis_proc import RedisServer, redis_server

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

VICTIM, SURVIVOR = 0, 1
COMMIT_SEEN_WITHIN_S = 15.0
# The survivor's relay publishes rows a dead process left once their commit lease has passed and, when
# the dead process held the relay lease, once that has too (faults_world.FAULT_SETTINGS); the rest is
# slack for two loaded cores.
RELAY_WITHIN_S = OUTBOX_COMMIT_LEASE_S + OUTBOX_RELAY_LEASE_S + 2 * OUTBOX_RELAY_INTERVAL_S + 8.0
SWEEP_SLACK_S = 2.0  # "within one sweep interval": the interval, plus this for a busy two-core machine
SERVER_STEP_S = 15.0


async def _assigned_call(world: Deployment, doctor: DoctorApp) -> str:
    """A call near ``doctor`` (who accepts it), assigned; created on the survivor."""
    patient = world.of_role(Role.PATIENT)[0]
    response = await world.rest(
        "POST",
        "/v1/calls",
        patient,
        SURVIVOR,
        json={
            "address": "Kill street 9",
            "lat": doctor.lat,
            "lon": doctor.lon,
            "urgency": "urgent",
            "specialty": "therapist",
        },
    )
    assert response.status_code == 201, response.text
    call_id: str = response.json()["id"]
    await until(lambda: _status_is(world, call_id, "assigned"), SERVER_STEP_S, f"assignment of {call_id}")
    return call_id


async def _status_is(world: Deployment, call_id: str, status: str) -> bool:
    response = await world.rest("GET", f"/v1/calls/{call_id}", world.city.dispatcher, SURVIVOR)
    return response.status_code == 200 and response.json()["status"] == status


async def _visit(world: Deployment, doctor: DoctorApp, call_id: str, status: str, server: int) -> int:
    response = await world.rest(
        "POST", f"/v1/calls/{call_id}/status", doctor.person, server, json={"status": status}
    )
    return response.status_code


async def _kill_after_commit(
    world: Deployment, redis: RedisServer, doctor: DoctorApp, call_id: str, status: str
) -> float:
    """Move the visit to ``status`` through the victim with Redis writes held, kill the victim once the
    commit is in the database, release Redis. Returns ``time.monotonic()`` at the release."""
    redis.pause_writes()
    try:
        request = asyncio.create_task(_visit(world, doctor, call_id, status, VICTIM))
        await until(
            lambda: _status_is(world, call_id, status), COMMIT_SEEN_WITHIN_S, f"commit of {status}", 0.05
        )
        world.kill9(VICTIM)
    finally:
        redis.unpause()
    released = time.monotonic()
    answered = await asyncio.gather(request, return_exceptions=True)
    print(f"the victim's {status} request: {answered[0]!r}")  # an answer, or the connection it lost
    return released


def test_kill_9_between_commit_and_publish(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis") as redis,
        deployment(tmp_path, redis=redis, servers=2, doctors=1, patients=1) as world,
    ):
        started = time.monotonic()
        asyncio.run(_between_commit_and_publish(world, redis))
        print(f"kill -9 between commit and publish: {time.monotonic() - started:.1f} s")


async def _between_commit_and_publish(world: Deployment, redis: RedisServer) -> None:
    doctor = world.doctor_app(world.of_role(Role.DOCTOR)[0], *offset(*CENTRE, 200), server=SURVIVOR)
    patient = world.of_role(Role.PATIENT)[0]
    follower = Listener(world.servers[VICTIM].url, patient.token)
    await doctor.start()
    try:
        call_id = await _assigned_call(world, doctor)
        channel = f"call:{call_id}"
        await follower.start()
        subscribed = await follower.client.subscribe(channel)
        before = subscribed.position  # where the channel stood before the fault

        released = await _kill_after_commit(world, redis, doctor, call_id, "en_route")
        follower.move_to(world.servers[SURVIVOR].url)  # the load balancer took the dead node out

        # The survivor publishes what the dead process committed; the follower, reconnected with
        # ``since``, gets it (replayed or live).
        try:
            event = await follower.wait_for(channel, "call.status", RELAY_WITHIN_S, status="en_route")
        except AssertionError as exc:
            raise AssertionError(f"[outbox] a committed event was never published: {exc}") from None
        print(f"en_route reached the reconnected client {time.monotonic() - released:.1f} s after the kill")
        # A later change marks the end: everything before it has been delivered (order per channel).
        assert await _visit(world, doctor, call_id, "arrived", SURVIVOR) == 200
        await follower.wait_for(channel, "call.status", SERVER_STEP_S, status="arrived")
        assert len(follower.of(channel, "call.status", status="en_route")) == 1, "en_route delivered twice"
        offsets = [e.offset for e in follower.events if e.channel == channel and e.offset is not None]
        assert offsets == sorted(set(offsets)), f"offsets out of order or repeated: {offsets}"
        assert not follower.failures, f"the reconnect could not recover: {follower.failures}"
        assert event.offset is not None and event.offset > before.offset

        # A client asking since the position before the fault is replayed both events, once each.
        replayed = await _replay_since(world, patient.token, channel, before, until_status="arrived")
        assert replayed["recovered"] is True, replayed
        assert replayed["statuses"] == ["en_route", "arrived"], replayed

        # History gone (Redis restarted empty: a new epoch): the same question is answered honestly.
        redis.restart()
        gone = await _replay_since(world, patient.token, channel, before)
        assert gone["recovered"] is False, f"a lost history answered recovered: {gone}"
    finally:
        await follower.stop()
        await doctor.stop()


async def _replay_since(
    world: Deployment, token: str, channel: str, since: Position, until_status: str | None = None
) -> dict[str, Any]:
    """A fresh client subscribes to ``channel`` with ``since`` on the survivor. Returns the answer's
    ``recovered`` and ``reason`` and, when ``until_status`` is given, the ``call.status`` statuses
    received up to the one with that status (a replay is in order: a duplicate shows before it)."""
    listener = Listener(world.servers[SURVIVOR].url, token)
    await listener.start()
    try:
        subscribed = await listener.client.subscribe(channel, since=since)
        statuses: list[str] = []
        if until_status is not None and subscribed.recovered:
            await listener.wait_for(channel, "call.status", SERVER_STEP_S, status=until_status)
            statuses = [e.data["status"] for e in listener.events if e.type == "call.status"]
        return {"recovered": subscribed.recovered, "reason": subscribed.reason, "statuses": statuses}
    finally:
        await listener.stop()


def test_kill_9_after_completed_before_the_doctor_is_freed(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis") as redis,
        deployment(tmp_path, redis=redis, servers=2, doctors=1, patients=1) as world,
    ):
        started = time.monotonic()
        asyncio.run(_after_completed(world, redis))
        print(f"kill -9 after completed: {time.monotonic() - started:.1f} s")


async def _after_completed(world: Deployment, redis: RedisServer) -> None:
    doctor = world.doctor_app(world.of_role(Role.DOCTOR)[0], *offset(*CENTRE, 200), server=SURVIVOR)
    await doctor.start()
    try:
        call_id = await _assigned_call(world, doctor)
        for status in ("en_route", "arrived", "in_progress"):
            assert await _visit(world, doctor, call_id, status, SURVIVOR) == 200
        released = await _kill_after_commit(world, redis, doctor, call_id, "completed")
        doctor.busy_with = None

        async def available() -> bool:
            state = (await world.engine_states([doctor.id]))[doctor.id]
            return str(state.status) == "available"

        try:
            await until(available, REPAIR_INTERVAL_S + SWEEP_SLACK_S + 5, "freed doctor", 0.05)
        except AssertionError:
            state = (await world.engine_states([doctor.id]))[doctor.id]
            raise AssertionError(
                f"[rebuild] the doctor of a completed call is still {state.status} ({state.ref}) in the "
                f"engine {REPAIR_INTERVAL_S + SWEEP_SLACK_S + 5:g} s after the crash: no repair sweep"
            ) from None
        took = time.monotonic() - released
        print(f"doctor freed {took:.2f} s after the crash (sweep interval {REPAIR_INTERVAL_S:g} s)")
        assert took <= REPAIR_INTERVAL_S + SWEEP_SLACK_S, f"[rebuild] freed after {took:.1f} s"

        # And back at work: the next call nearby is offered to them.
        patient = world.of_role(Role.PATIENT)[0]
        lat, lon = offset(doctor.lat, doctor.lon, 300)
        body = {
            "address": "Next street 1",
            "lat": lat,
            "lon": lon,
            "urgency": "urgent",
            "specialty": "therapist",
        }
        response = await world.rest("POST", "/v1/calls", patient, SURVIVOR, json=body)
        assert response.status_code == 201, response.text
        next_id = response.json()["id"]
        offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == next_id, SERVER_STEP_S)
        assert offer["call"]["id"] == next_id
    finally:
        await doctor.stop()
