"""The embedded deployment keeps its guarantees across a ``kill -9`` (issue 16, "Done when" 5).

One server on an SQLite file and the memory engine. At the kill: call A is offered to a doctor who lets
the offer wait; call B is assigned, and its doctor's ``en_route`` has just been committed, its event not
yet published: the server dies at the ``outbox.committed`` crash point (realtime/faults.py), armed by
the test for that one request. The server is restarted on the same file and port (every client
reconnects by itself). Then:

- what it had committed is published: ``call:B`` carries the ``en_route`` status event (read from the
  new history, or live);
- what was open is re-armed: A's pending offer expires at its deadline (or at once, when the restart
  took longer) and A is offered to the next doctor and assigned; B goes on (its doctor reports
  ``arrived``) and its doctor, busy, is offered nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from models.enums import Role
from realtime.client import Position
from realtime.faults import CRASH_FILE_ENV, arm, disarm
from tests.e2e.dispatch_world import CENTRE, offset
from tests.e2e.faults_world import OFFER_TIMEOUT_S, Deployment, Listener, deployment, until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

CRASH_WITHIN_S = 10.0
STEP_S = 15.0
EXPIRY_SLACK_MS = 2_500  # an expiry's lateness on a loaded two-core machine, after the restart


def test_embedded_server_killed_and_restarted_on_its_sqlite_file(tmp_path: Path) -> None:
    crash_file = tmp_path / "crash-at"
    settings = {CRASH_FILE_ENV: str(crash_file)}
    with deployment(tmp_path, redis=None, servers=1, doctors=3, patients=2, settings=settings) as world:
        started = time.monotonic()
        asyncio.run(_scenario(world, crash_file))
        print(f"embedded kill -9 and restart: {time.monotonic() - started:.1f} s")


async def _create(world: Deployment, patient_no: int, lat: float, lon: float) -> str:
    patient = world.of_role(Role.PATIENT)[patient_no]
    body = {
        "address": "Embedded street 1",
        "lat": lat,
        "lon": lon,
        "urgency": "urgent",
        "specialty": "therapist",
    }
    response = await world.rest("POST", "/v1/calls", patient, json=body)
    assert response.status_code == 201, response.text
    call_id: str = response.json()["id"]
    return call_id


async def _status(world: Deployment, call_id: str) -> str:
    status: str = (await world.city.call(call_id))["status"]
    return status


async def _scenario(world: Deployment, crash_file: Path) -> None:
    d1, d2, d3 = world.of_role(Role.DOCTOR)
    b_place = offset(*CENTRE, -3_000)  # B's doctor, far from A: never a candidate for A
    holder = world.doctor_app(d2, *b_place, server=0)
    waiter = world.doctor_app(d1, *offset(*CENTRE, 100), server=0)  # nearest to A: gets its first offer
    waiter.mode = "ignore"
    next_one = world.doctor_app(d3, *offset(*CENTRE, 1_000), server=0)
    apps = [holder, waiter, next_one]
    patient_b = world.of_role(Role.PATIENT)[1]
    follower = Listener(world.servers[0].url, patient_b.token)
    try:
        # B: assigned to its doctor. A: offered to the waiter, who lets it wait.
        await holder.start()
        call_b = await _create(world, 1, *b_place)
        await until(lambda: _is(world, call_b, "assigned"), STEP_S, "assignment of B")
        await waiter.start()
        next_one.mode = "ignore"  # not before A's first offer is the waiter's
        await next_one.start()
        call_a = await _create(world, 0, *CENTRE)
        await until(lambda: _is(world, call_a, "offered"), STEP_S, "the first offer of A")
        first_offer = (await world.offers(call_a))[0]
        assert first_offer["doctor_id"] == waiter.id, first_offer
        next_one.mode = "accept"
        await follower.start()
        before = (await follower.client.subscribe(f"call:{call_b}")).position

        # The kill: B's en_route is committed, its event not published.
        arm(str(crash_file), "outbox.committed")
        answer = await asyncio.gather(
            world.rest("POST", f"/v1/calls/{call_b}/status", holder.person, json={"status": "en_route"}),
            return_exceptions=True,
        )
        server = world.servers[0]
        try:
            await until(_dead(server.process), CRASH_WITHIN_S, "crash", 0.05)
        except AssertionError:
            raise AssertionError(
                "[outbox] the server did not die at the crash point outbox.committed (is the "
                f"crash_point('outbox.committed') line in the post-commit publish?); answer {answer[0]!r}"
            ) from None
        assert server.process.returncode == -9, server.process.returncode
        disarm(str(crash_file))
        killed_ms = int(time.time() * 1000)

        world.restart_server(0)  # same file, same port: the clients reconnect by themselves
        restarted_ms = int(time.time() * 1000)
        print(f"restarted {restarted_ms - killed_ms} ms after the kill")
        assert await _status(world, call_b) == "en_route", "the en_route commit was lost"

        # What it had committed is published (on the new history of call:B).
        problems = await _published(world, patient_b.token, f"call:{call_b}", before)

        # What was open is re-armed: A's offer expires on time and A goes to the next doctor.
        try:
            await until(lambda: _is(world, call_a, "assigned"), OFFER_TIMEOUT_S + STEP_S, "assignment")
        except AssertionError:
            history = [
                f"{e['to_status']} {e['reason'] or ''} at {_ms(e['at']) - restarted_ms:+d} ms"
                for e in await world.history(call_a)
            ]
            reconnected = [int(t * 1000) - restarted_ms for t in next_one.client.hellos[1:]]
            problems.append(
                f"[rebuild] A (offered at the kill) is {await _status(world, call_a)}, not assigned; its "
                f"history (ms after the restart): {history}; the next doctor reconnected at {reconnected}"
            )
        offers = await world.offers(call_a)
        print(f"A's offers: {[(o['outcome'], o['doctor_id'][:8]) for o in offers]}")
        expired = next(o for o in offers if o["id"] == first_offer["id"])
        due = max(expired["deadline_at"], restarted_ms)
        if expired["outcome"] != "expired":
            problems.append(
                f"[rebuild] A's offer pending at the kill ended {expired['outcome']}, not expired"
            )
        elif expired["decided_at"] > due + EXPIRY_SLACK_MS:
            problems.append(
                f"[rebuild] A's offer pending at the kill expired {expired['decided_at'] - due} ms late"
            )
        if (await world.city.call(call_a))["doctor_id"] not in (None, next_one.id):
            problems.append("A was assigned to a doctor who was not the next one")

        # B goes on; its doctor, busy, was offered nothing.
        response = await world.rest(
            "POST", f"/v1/calls/{call_b}/status", holder.person, json={"status": "arrived"}
        )
        if response.status_code != 200:
            problems.append(f"B's doctor could not report arrived: {response.status_code} {response.text}")
        if call_a in holder.offers.values():
            problems.append("[rebuild] B's doctor, busy, was offered A")
        problems += [p for app in apps for p in app.problems]
        assert not problems, "\n".join(problems)
    finally:
        disarm(str(crash_file))
        await follower.stop()
        await asyncio.gather(*(app.stop() for app in apps), return_exceptions=True)


def _ms(at: str | int) -> int:
    """An event's ``at`` (ISO 8601 or epoch ms) as epoch ms."""
    if isinstance(at, int):
        return at
    return int(dt.datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() * 1000)


def _dead(process: subprocess.Popen[bytes]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return process.poll() is not None

    return check


async def _is(world: Deployment, call_id: str, status: str) -> bool:
    return await _status(world, call_id) == status


async def _published(world: Deployment, token: str, channel: str, before: Position) -> list[str]:
    """``channel`` carries the ``en_route`` status event in the restarted server's history (the old
    epoch died with the memory engine: ``since`` the old position is honestly refused)."""
    listener = Listener(world.servers[0].url, token)
    await listener.start()
    try:
        stale = await listener.client.subscribe(channel, since=before)
        if stale.recovered:
            return ["[broker] a lost history (memory engine restarted) answered recovered: true"]
        await listener.client.unsubscribe(channel)
        # From the new history's beginning: the relay published before or after this subscribe.
        replay = await listener.client.subscribe(channel, since=Position(0, stale.position.epoch))
        if not replay.recovered:
            return [f"[broker] the new history cannot be read from its start: {replay}"]
        try:
            await listener.wait_for(channel, "call.status", STEP_S, status="en_route")
        except AssertionError as exc:
            return [f"[outbox] a committed event was not published after the restart: {exc}"]
        if len(listener.of(channel, "call.status", status="en_route")) != 1:
            return ["[outbox] the committed event was published twice"]
        return []
    finally:
        await listener.stop()
