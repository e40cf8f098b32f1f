"""A live subscriber whose server cannot recover its channel (issue 16, "Done when" 4): the failed
recovery ends in ``recovered: false`` (or a close with the documented code), never in silence, and the
events the session holds meanwhile stay within their bound. One server process on the test's own Redis
and a scratch PostgreSQL database; a dispatcher's real client follows ``dispatch`` through the gateway.

1. **History unreadable.** ``CLIENT KILL TYPE pubsub`` drops the server's sharded pub/sub connection:
   the broker reconnects, resubscribes and queues a ``Resync`` of every channel, so each session reads
   the channel's history to fill what it may have missed. That read is the ``broker_recover`` script
   (EVALSHA), which writes (its ``ensure_meta`` PEXPIREs the meta, and recreates it when lost), so a
   ``CLIENT PAUSE WRITE`` on the test's Redis holds it while SSUBSCRIBE and reads are answered (Redis
   7.0: a pause holds every script, SPUBLISH too): each attempt times out and the session gives up.
   A frozen Redis (SIGSTOP) would not do: the reconnect could not happen, so no ``Resync`` would start
   a recovery. Expected: ``recovered:false`` with reason ``recovery_failed`` once the retries are
   used up, not before and not long after (3 attempts and their pauses, ``RecoveryPolicy`` in
   ``realtime/session.py``; each attempt bounded at 1 s here by ``TOT_WS_RECOVERY_TIMEOUT``, 5 s by
   default) on the open socket, and the events published once Redis takes writes again reach it, in
   order.
2. **The buffer's bound.** No real publisher can outpace a recovery on demand, so the test sends the
   live events itself with SPUBLISH, in the broker's live format (``realtime/broker_redis.py``), as
   another server's publish script would, with offsets past a hole that history can never fill: the
   session recovers, holds them, and its retries take at least 0.6 s while the burst takes ms. With
   1,000 held the connection is still open (an ephemeral marker sent after them arrives: ephemeral
   events bypass the buffer, and nothing is sent after an overflow); one more closes it with 4499
   (docs/protocol.md). The client then reconnects, resubscribes with ``since`` and recovers honestly;
   none of the held events was ever delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from models.enums import Role
from realtime.broker import encode_ephemeral, encode_event
from realtime.keys import Keys
from realtime.protocol import CloseCode
from realtime.session import RECOVERY_FAILED, RecoveryPolicy
from tests.e2e.dispatch_world import CENTRE
from tests.e2e.faults_world import Deployment, Listener, deployment, until
from tests.e2e.redis_proc import RedisServer, redis_server

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

DISPATCH = "dispatch"
RECOVERY = RecoveryPolicy(attempt_timeout_s=1.0)  # the default's 3 attempts and pauses, reads of 1 s
RECOVERY_SETTINGS = {
    "TOT_WS_RECOVERY_ATTEMPTS": str(RECOVERY.attempts),
    "TOT_WS_RECOVERY_TIMEOUT": f"{RECOVERY.attempt_timeout_s:g}",
}
GIVE_UP_S = RECOVERY.attempts * RECOVERY.attempt_timeout_s + sum(
    RECOVERY.pause_s(failures) for failures in range(1, RECOVERY.attempts)
)
"""When a session whose every history read hangs sends ``recovered:false``: 3.6 s here (15.6 s with
the server's defaults); never sooner, as every read waits out its timeout."""
EARLY_S = 0.1  # timers may fire a clock tick early; the drop is timed before the server reconnects
SLACK_S = 6.0  # the broker's reconnect and a busy two-core machine
STEP_S = 15.0  # a REST change reaching the dispatcher once Redis takes writes
PAUSE_CEILING_MS = 45_000  # a pause always ends, even if the test dies holding it
FAKE_TYPE = "test.held"  # the type of the live events the test sends itself (never in history)
HELD_FROM = 1_000_000  # the held events' first offset: far past anything this test publishes for real
MARKER_TYPE = "test.marker"  # an ephemeral event: bypasses the recovery buffer


def test_a_failed_recovery_on_a_live_subscriber_is_told_and_bounded(tmp_path: Path) -> None:
    begun = time.monotonic()
    with (
        redis_server(tmp_path / "redis") as redis_proc,
        deployment(
            tmp_path, redis=redis_proc, servers=1, doctors=0, patients=1, settings=RECOVERY_SETTINGS
        ) as world,
    ):
        started = time.monotonic()
        print(f"set-up: {started - begun:.1f} s")
        asyncio.run(_scenario(world, redis_proc))
        print(f"failed recovery on a live subscriber: {time.monotonic() - started:.1f} s")


async def _scenario(world: Deployment, redis_proc: RedisServer) -> None:
    dispatcher = Listener(world.servers[0].url, world.city.dispatcher.token)
    await dispatcher.start()
    try:
        await dispatcher.client.subscribe(DISPATCH)
        await _created_call(world, dispatcher)  # live delivery works before the fault
        await _recovery_fails_then_delivery_goes_on(world, redis_proc, dispatcher)
        await _the_recovery_buffer_is_bounded(world, redis_proc, dispatcher)
    finally:
        await dispatcher.stop()


async def _created_call(world: Deployment, dispatcher: Listener) -> str:
    """A patient's call, created through the server's REST; returns its id once its ``call.created``
    and then its ``call.escalated`` (no doctor in this world: its last event) reached the dispatcher."""
    patient = world.of_role(Role.PATIENT)[0]
    response = await world.city.create_call(patient, *CENTRE)
    assert response.status_code == 201, response.text
    call_id: str = response.json()["id"]
    await dispatcher.wait_for(DISPATCH, "call.created", STEP_S, call=call_id)

    async def escalated() -> bool:
        return any(e.data["call"]["id"] == call_id for e in dispatcher.of(DISPATCH, "call.escalated"))

    await until(escalated, STEP_S, f"call.escalated of {call_id}", 0.05)
    return call_id


def _offsets(dispatcher: Listener) -> list[int]:
    return [e.offset for e in dispatcher.events if e.channel == DISPATCH and e.offset is not None]


async def _recovery_fails_then_delivery_goes_on(
    world: Deployment, redis_proc: RedisServer, dispatcher: Listener
) -> None:
    redis_proc.pause_writes(PAUSE_CEILING_MS)
    try:
        assert redis_proc.kill_pubsub() >= 1, "the server had no pub/sub connection to drop"
        dropped = time.monotonic()

        async def told() -> bool:
            return bool(dispatcher.failures)

        try:
            await until(told, GIVE_UP_S + SLACK_S, "recovered:false", 0.05)
        except AssertionError:
            raise AssertionError(
                f"[recovery] the dispatcher heard nothing {GIVE_UP_S + SLACK_S:g} s after its server's "
                f"recovery of {DISPATCH} started failing: a silent subscription"
            ) from None
        took = time.monotonic() - dropped
        print(f"recovered:false {took:.1f} s after the pub/sub drop (retries bound {GIVE_UP_S:g} s)")
        assert took >= GIVE_UP_S - EARLY_S, (
            f"[recovery] recovered:false {took:.2f} s after the drop, before {RECOVERY.attempts} reads of "
            f"{RECOVERY.attempt_timeout_s:g} s and their pauses could have been waited out"
        )
        failure = dispatcher.failures[0]
        assert (failure.channel, failure.reason) == (DISPATCH, RECOVERY_FAILED), failure
        # Nothing could be published during the pause: the position is the last event the client got.
        assert failure.position.offset == _offsets(dispatcher)[-1], (failure, _offsets(dispatcher))
        assert dispatcher.client.closed_code is None, "recovered:false is told on an open socket"
    finally:
        redis_proc.unpause()

    # Not silence afterwards: what is published once Redis takes writes reaches the same socket.
    count = len(dispatcher.events)
    call_id = await _created_call(world, dispatcher)
    offsets = _offsets(dispatcher)
    assert offsets == sorted(set(offsets)), f"offsets out of order or repeated: {offsets}"
    assert len(dispatcher.events) > count and dispatcher.client.closed_code is None, call_id
    assert len(dispatcher.failures) == 1, dispatcher.failures


async def _the_recovery_buffer_is_bounded(
    world: Deployment, redis_proc: RedisServer, dispatcher: Listener
) -> None:
    bound = RECOVERY.max_buffer  # 1,000, as docs/protocol.md says (not a setting)
    live = Keys(prefix=world.prefix).broker_pubsub(DISPATCH)
    epoch = dispatcher.events[-1].epoch
    assert epoch is not None
    failures_before = len(dispatcher.failures)
    # One burst, in this order on the shard channel: ``bound`` held events, marker "full", one more held
    # event, marker "over". The first held event jumps far past the session's last offset: it starts a
    # recovery that history can never complete (nothing fills up to HELD_FROM), retried with pauses of 0.1 and
    # 0.5 s, so the session is still recovering, and holding, when the rest of the burst (a few ms of
    # work) has been handed to it. Marker "full" reaching the client proves nothing was closed with
    # ``bound`` held (after an overflow nothing more is sent); the next one must close the socket.
    with contextlib.closing(redis_proc.client()) as c:
        pipe = c.pipeline(transaction=False)
        for n in range(bound):
            pipe.execute_command("SPUBLISH", live, _held(HELD_FROM + n, epoch))
        pipe.execute_command("SPUBLISH", live, _marker("full"))
        pipe.execute_command("SPUBLISH", live, _held(HELD_FROM + bound, epoch))
        pipe.execute_command("SPUBLISH", live, _marker("over"))
        assert pipe.execute() == [1] * (bound + 3), "the server is not on the shard channel"

    async def closed() -> bool:
        return dispatcher.client.closed_code == CloseCode.SLOW_CONSUMER

    try:
        await until(closed, SLACK_S, "close 4499", 0.02)
    except AssertionError:
        raise AssertionError(
            f"[recovery] {bound + 1} events held for {DISPATCH} while recovering and the socket is still "
            f"open (closed_code {dispatcher.client.closed_code}): an unbounded buffer"
        ) from None
    assert dispatcher.of(DISPATCH, MARKER_TYPE, at="full"), f"closed with {bound} events held: bound lower?"

    # The client reconnects and resubscribes with ``since``: recovered (nothing real was missed), and
    # later events arrive; none of the held events, and nothing after the overflow, was delivered.
    await _created_call(world, dispatcher)
    assert not dispatcher.of(DISPATCH, FAKE_TYPE), "an event held beyond the bound was delivered"
    assert not dispatcher.of(DISPATCH, MARKER_TYPE, at="over"), "a frame was sent after the overflow"
    assert len(dispatcher.failures) == failures_before, dispatcher.failures[failures_before:]
    offsets = _offsets(dispatcher)
    assert offsets == sorted(set(offsets)), f"offsets out of order or repeated: {offsets}"


def _held(offset: int, epoch: str) -> bytes:
    """A regular live publication on ``dispatch`` in the broker's live format (``<offset>|<epoch>|
    <time_ms>|<type>\\n`` + frame), as the publish script sends it; never written to history."""
    parts = encode_event(DISPATCH, FAKE_TYPE, {"n": offset}, 16 * 1024)
    frame = parts.head + b"%d" % offset + b',"epoch":"' + epoch.encode() + b'"' + parts.tail
    return b"%d|%s|%d|%s\n" % (offset, epoch.encode(), int(time.time() * 1000), FAKE_TYPE.encode()) + frame


def _marker(at: str) -> bytes:
    """An ephemeral publication on ``dispatch`` (offset 0, no epoch): delivered at once, never held."""
    frame = encode_ephemeral(DISPATCH, MARKER_TYPE, {"at": at}, 16 * 1024)
    return b"0||%d|%s\n" % (int(time.time() * 1000), MARKER_TYPE.encode()) + frame
