"""The WebSocket gateway end to end: real server processes on the Redis engine, real WebSocket clients.

Covers auth failures, origin checks, the per-channel authorization matrix, location ingest into the
live index, offline after silence, recovery after a dropped connection (no gap, no duplicate),
slow-consumer handling, frame limits and floods, idle timeout, and delivery across two processes.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import h3
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from dispatch.doctor_states_redis import RedisDoctorStates
from geo.location_index_redis import RedisLocationIndex
from geo.map_cells import MAP_RESOLUTION
from models.db import make_engine, make_sessionmaker
from models.enums import DoctorStatus, Role
from realtime.broker_redis import RedisBroker
from realtime.keys import Keys
from realtime.presence_redis import RedisPresence
from server.accounts import NewAccount
from server.auth.tokens import TokenService
from tests.conftest import migrated_sqlite_url, redis_test_url
from tests.e2e.deployments import create_accounts
from tests.e2e.process import RunningServer, run_server
from tests.helpers import new_call

SECRET = "gateway-e2e-secret-" + "k" * 32
PASSWORD = "gateway-pass-123"
ROLES = {
    "patient": Role.PATIENT,
    "patient2": Role.PATIENT,
    "doctor": Role.DOCTOR,
    "doctor2": Role.DOCTOR,
    "doctor3": Role.DOCTOR,
    "clinic_admin": Role.CLINIC_ADMIN,
    "dispatcher": Role.DISPATCHER,
    "admin": Role.ADMIN,
}
MOSCOW = (55.7558, 37.6173)


@dataclass
class World:
    """Two server processes sharing one SQLite file and one Redis key prefix, and their users."""

    server: RunningServer
    server2: RunningServer
    prefix: str
    database_url: str
    call_id: str
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def ws_url(self, token: str | None, server: RunningServer | None = None) -> str:
        base = (server or self.server).url.replace("http://", "ws://") + "/v1/ws"
        return base if token is None else f"{base}?token={token}"


async def _insert_call(database_url: str, patient_id: str, doctor_id: str) -> str:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            call = new_call(
                patient_id, *MOSCOW, status="assigned", address="Tverskaya 1", doctor_id=doctor_id
            )
            session.add(call)
        return str(call.id)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    cwd = tmp_path_factory.mktemp("gateway")
    prefix = f"e2e{uuid.uuid4().hex[:8]}:"
    database_url = migrated_sqlite_url(cwd / "tot.db")
    env = {
        "TOT_SECRET_KEY": SECRET,
        "TOT_DATABASE_URL": database_url,
        "TOT_ENGINE_URL": redis_test_url(),
        "TOT_ENGINE_PREFIX": prefix,
        "TOT_DOCTOR_OFFLINE_AFTER": "2",
        "TOT_WS_SEND_QUEUE": "50",
        "TOT_WS_ALLOWED_ORIGINS": "http://console.test",
    }
    emails = {name: f"{name}@gateway.test" for name in ROLES}
    accounts = [
        NewAccount(role=role.value, email=emails[name], full_name=name, password=PASSWORD)
        if role is not Role.DOCTOR
        else NewAccount(
            role=role.value,
            email=emails[name],
            full_name=name,
            password=PASSWORD,
            licence_number=f"LIC-{name}",
            specialties=["therapist"],
            verified=True,
        )
        for name, role in ROLES.items()
    ]
    create_accounts(database_url, accounts)  # as `tot-dispatch users create` (tests/e2e/deployments.py)
    with (
        run_server(["serve"], env, cwd) as server,
        run_server(["serve"], {**env, "TOT_WS_IDLE_TIMEOUT": "3"}, cwd) as server2,
    ):
        tokens, ids = {}, {}
        for name, email in emails.items():
            body = httpx.post(
                f"{server.url}/v1/auth/login", json={"login": email, "password": PASSWORD}
            ).json()
            tokens[name], ids[name] = body["tokens"]["access_token"], body["user"]["id"]
        call_id = asyncio.run(_insert_call(database_url, ids["patient"], ids["doctor"]))
        yield World(server, server2, prefix, database_url, call_id, tokens, ids)


@pytest.fixture
async def engine_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_test_url())
    yield client
    await client.aclose()


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def recv_op(ws: ClientConnection, op: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame with ``op`` (skipping others, e.g. events)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await recv(ws, max(0.1, deadline - time.monotonic()))
        if frame["op"] == op:
            return frame


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code, exc.rcvd.reason


async def request(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` with a fresh ref; return the ack, error or subscribed frame for it."""
    ref = uuid.uuid4().hex[:10]
    await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
    while True:
        reply = await recv(ws)
        if reply.get("ref") == ref:
            return reply


async def session(
    world: World, name: str, server: RunningServer | None = None, **kwargs: Any
) -> ClientConnection:
    ws = await connect(world.ws_url(world.tokens[name], server), compression=None, **kwargs)
    hello = await recv(ws)
    assert hello["op"] == "hello" and hello["user"] == world.ids[name]
    return ws


# --- connecting -----------------------------------------------------------------------------------


async def test_auth_failures_close_with_4401_and_a_reason(world: World) -> None:
    expired = TokenService(SECRET, 60, 120).issue(
        uuid.UUID(world.ids["doctor"]), Role.DOCTOR, now=time.time() - 3600
    )
    refresh = TokenService(SECRET, 60, 120).issue(uuid.UUID(world.ids["doctor"]), Role.DOCTOR).refresh_token
    cases = [(None, "auth_required"), ("garbage", "token_invalid"), (expired.access_token, "token_expired")]
    cases.append((refresh, "token_invalid"))
    for token, reason in cases:
        async with connect(world.ws_url(token), compression=None) as ws:
            assert await closed_with(ws) == (4401, reason)


async def test_token_in_the_authorization_header(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['dispatcher']}"}
    async with connect(world.ws_url(None), additional_headers=headers, compression=None) as ws:
        assert (await recv(ws))["role"] == "dispatcher"


async def test_origin_is_checked_when_configured(world: World) -> None:
    async with connect(
        world.ws_url(world.tokens["dispatcher"]), origin=Origin("http://evil.test"), compression=None
    ) as ws:
        assert await closed_with(ws) == (4403, "origin_not_allowed")
    async with connect(
        world.ws_url(world.tokens["dispatcher"]), origin=Origin("http://console.test"), compression=None
    ) as ws:
        assert (await recv(ws))["op"] == "hello"


# --- authorization --------------------------------------------------------------------------------


async def test_channel_authorization_matrix(world: World) -> None:
    cell = h3.latlng_to_cell(*MOSCOW, MAP_RESOLUTION)
    channel_names = {
        "own doctor": f"doctor:{world.ids['doctor']}",
        "other doctor": f"doctor:{world.ids['doctor2']}",
        "call": f"call:{world.call_id}",
        "dispatch": "dispatch",
        "sos": "sos",
        "map": f"map:{cell}",
    }
    # The rules of docs/protocol.md, written out: who may subscribe to what.
    allowed = {
        "patient": {"call"},
        "patient2": set(),
        "doctor": {"own doctor", "call"},
        "doctor2": {"other doctor"},  # labels are from the first doctor's side: this is its own channel
        "doctor3": set(),
        "clinic_admin": set(),
        "dispatcher": {"call", "dispatch", "sos", "map"},
        "admin": {"call", "dispatch", "sos", "map"},
    }
    for name in ROLES:
        ws = await session(world, name)
        try:
            for label, channel in channel_names.items():
                reply = await request(ws, {"op": "subscribe", "ch": channel})
                if label in allowed[name]:
                    assert reply["op"] == "subscribed", (name, label, reply)
                else:
                    assert (reply["op"], reply["code"]) == ("error", "forbidden"), (name, label, reply)
            if name not in ("doctor", "doctor2"):  # already tried their own channel above
                own = await request(ws, {"op": "subscribe", "ch": f"doctor:{world.ids[name]}"})
                assert own["op"] == ("subscribed" if ROLES[name] is Role.DOCTOR else "error"), (name, own)
        finally:
            await ws.close()


async def test_unknown_calls_and_bad_channel_names(world: World) -> None:
    ws = await session(world, "patient")
    try:
        missing = await request(ws, {"op": "subscribe", "ch": f"call:{uuid.uuid4()}"})
        assert missing["code"] == "not_found"
        for bad in (
            "nope",
            "call:xyz",
            "map:abc",
            "dispatch:1",
            "doctor:",
            "map:" + h3.latlng_to_cell(*MOSCOW, 9),
        ):
            reply = await request(ws, {"op": "subscribe", "ch": bad})
            assert reply["code"] == "bad_channel", (bad, reply)
        not_on = await request(ws, {"op": "unsubscribe", "ch": "sos"})
        assert not_on["code"] == "not_subscribed"
        ok = await request(ws, {"op": "subscribe", "ch": f"call:{world.call_id}"})
        assert ok["op"] == "subscribed"
        twice = await request(ws, {"op": "subscribe", "ch": f"call:{world.call_id}"})
        assert twice["code"] == "invalid_field"
        gone = await request(ws, {"op": "unsubscribe", "ch": f"call:{world.call_id}"})
        assert gone["op"] == "unsubscribed"
    finally:
        await ws.close()


# --- location ingest ------------------------------------------------------------------------------


async def _eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def test_location_ingest_reaches_the_live_index(world: World, engine_redis: aioredis.Redis) -> None:
    index = RedisLocationIndex(engine_redis, Keys(prefix=world.prefix))
    doctor = world.ids["doctor"]
    ws = await session(world, "doctor")
    try:
        now = int(time.time() * 1000)
        fix = {"op": "location", "lat": 55.75, "lon": 37.62, "acc": 6, "heading": 90, "speed": 8.1, "ts": now}
        ack = await request(ws, fix)
        assert (ack["op"], ack["ignored"]) == ("ack", False)

        async def stored() -> Any:
            position = await index.get(doctor)
            return position if position and position.ts_ms == now else None

        position = await _eventually(stored)
        assert position is not None and (position.lat, position.lon, position.accuracy_m) == (
            55.75,
            37.62,
            6.0,
        )
        older = await request(ws, {**fix, "lat": 10.0, "ts": now - 5000})
        assert older["ignored"] is True
        await asyncio.sleep(0.3)
        assert (await index.get(doctor)).lat == 55.75  # type: ignore[union-attr]
        far = await request(ws, {**fix, "ts": now - 3_600_000})
        assert (far["code"], far["field"]) == ("timestamp_out_of_window", "ts")
        for field_name, value in (("lat", 91), ("lat", 89.9), ("lon", "east"), ("acc", -1)):
            reply = await request(ws, {**fix, field_name: value, "ts": now + 1})
            assert reply["code"] == "invalid_field", (field_name, reply)
    finally:
        await ws.close()
    patient = await session(world, "patient")
    try:
        reply = await request(patient, {"op": "location", "lat": 55.7, "lon": 37.6, "acc": 5, "ts": now})
        assert reply["code"] == "forbidden"
    finally:
        await patient.close()


async def test_silent_doctor_goes_offline_and_leaves_the_pool(
    world: World, engine_redis: aioredis.Redis
) -> None:
    keys = Keys(prefix=world.prefix)
    states, index = RedisDoctorStates(engine_redis, keys), RedisLocationIndex(engine_redis, keys)
    doctor = world.ids["doctor2"]
    ws = await session(world, "doctor2")
    try:
        assert (await request(ws, {"op": "doctor.status", "status": "available"}))["status"] == "available"
        fix = {"op": "location", "lat": 55.70, "lon": 37.50, "acc": 5, "ts": int(time.time() * 1000)}
        await request(ws, fix)

        async def candidate() -> bool:
            found = await index.nearest_available(55.70, 37.50, radius_m=1000, k=5, specialty="therapist")
            return any(n.doctor_id == doctor for n in found)

        assert await _eventually(candidate)

        # Silence: only pings (they keep the socket, not the doctor's position, alive).
        async def offline() -> bool:
            await request(ws, {"op": "ping"})
            return (await states.get(doctor)).status is DoctorStatus.OFFLINE

        assert await _eventually(offline)
        assert not await candidate()
    finally:
        await ws.close()


async def test_unverified_doctor_cannot_go_available(world: World) -> None:
    body = {
        "email": f"new-{uuid.uuid4().hex[:6]}@gateway.test",
        "password": PASSWORD,
        "full_name": "New",
        "role": "doctor",
        "licence_number": f"LIC-{uuid.uuid4().hex[:8]}",
        "specialties": ["therapist"],
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{world.server.url}/v1/auth/register", json=body)
    token = response.json()["tokens"]["access_token"]
    async with connect(world.ws_url(token), compression=None) as ws:
        await recv(ws)
        reply = await request(ws, {"op": "doctor.status", "status": "available"})
        assert reply["code"] == "forbidden"
        bad = await request(ws, {"op": "doctor.status", "status": "busy"})
        assert (bad["code"], bad["field"]) == ("invalid_field", "status")


# --- recovery -------------------------------------------------------------------------------------


async def _toggle(ws: ClientConnection, times: int) -> None:
    for i in range(times):
        status = "paused" if i % 2 == 0 else "available"
        reply = await request(ws, {"op": "doctor.status", "status": status})
        assert reply["op"] == "ack", reply


async def _events(ws: ClientConnection, count: int, channel: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while len(events) < count:
        frame = await recv(ws)
        if frame["op"] == "event" and frame["ch"] == channel:
            events.append(frame)
    return events


async def test_recovery_after_a_dropped_connection_has_no_gap_and_no_duplicate(world: World) -> None:
    # doctor3 sends no fixes anywhere, so the silence sweeper never changes its state meanwhile.
    channel = f"doctor:{world.ids['doctor3']}"
    actor = await session(world, "doctor3")
    watcher = await session(world, "doctor3")
    try:
        subscribed = await request(watcher, {"op": "subscribe", "ch": channel})
        start = subscribed["position"]
        await _toggle(actor, 6)
        seen = await _events(watcher, 6, channel)
        watcher.transport.abort()  # the connection drops without a close handshake
        await _toggle(actor, 9)  # missed while away
        watcher = await session(world, "doctor3")
        last = seen[-1]
        resumed = await request(
            watcher,
            {"op": "subscribe", "ch": channel, "since": {"offset": last["offset"], "epoch": last["epoch"]}},
        )
        assert resumed["recovered"] is True
        await _toggle(actor, 3)  # live again after recovery
        seen += await _events(watcher, 12, channel)
        offsets = [e["offset"] for e in seen]
        assert offsets == list(range(start["offset"] + 1, start["offset"] + 19))
        assert {e["epoch"] for e in seen} == {start["epoch"]}
        assert [e["data"]["status"] for e in seen] == ["paused", "available"] * 3 + [
            "paused",
            "available",
        ] * 4 + ["paused"] + ["paused", "available", "paused"]
        with pytest.raises(TimeoutError):
            await recv(watcher, timeout=0.5)  # and nothing more: no duplicate
    finally:
        await actor.close()
        await watcher.close()


async def test_recovery_from_a_lost_epoch_says_so(world: World) -> None:
    ws = await session(world, "dispatcher")
    try:
        reply = await request(
            ws, {"op": "subscribe", "ch": "dispatch", "since": {"offset": 5, "epoch": "0badc0de"}}
        )
        assert reply["recovered"] is False
        assert reply["reason"] == "epoch_mismatch"
        assert set(reply["position"]) == {"offset", "epoch"}
    finally:
        await ws.close()


def _sample(text: str, name: str, default: float | None = None) -> float:
    """The value of the sample ``name`` (with its labels, e.g. ``x_total{code="1"}``) in a
    Prometheus text exposition; ``default`` when absent (None: absent is a failure)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    if default is None:
        raise AssertionError(f"{name} not in /metrics")
    return default


def _metric(server: RunningServer, name: str, default: float | None = None) -> float:
    return _sample(httpx.get(f"{server.url}/metrics").text, name, default)


# --- backpressure ---------------------------------------------------------------------------------


async def test_slow_consumer_is_closed_and_does_not_slow_the_others(
    world: World, engine_redis: aioredis.Redis
) -> None:
    broker = RedisBroker(engine_redis, Keys(prefix=world.prefix))
    # A phone on a bad network: a tiny receive window, and the app reads nothing.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", world.server.port))
    slow = await session(world, "dispatcher", max_queue=1, sock=raw)
    fast = await session(world, "admin")
    try:
        assert (await request(slow, {"op": "subscribe", "ch": "sos"}))["op"] == "subscribed"
        start = (await request(fast, {"op": "subscribe", "ch": "sos"}))["position"]["offset"]
        payload = {"note": "x" * 8000}
        total = 1500  # 12 MB: more than loopback's kernel buffers hold
        received: list[int] = []

        async def read_fast() -> None:
            while len(received) < total:
                frame = await recv(fast)
                if frame["op"] == "event":
                    received.append(frame["offset"])

        closes = 'tot_ws_closes_total{code="4499"}'
        closed_before = _metric(world.server, closes, default=0.0)

        async def slow_closed() -> tuple[int, str]:
            # The server gives the close frame 2 s to get through the full socket: the slow client
            # reads as soon as the server counts the close (on a loaded machine the fast reader
            # alone can take longer than that, and the frame would be dropped with the socket).
            async with httpx.AsyncClient(base_url=world.server.url) as http:
                for _ in range(1200):  # bounded: 60 s
                    if _sample((await http.get("/metrics")).text, closes, 0.0) > closed_before:
                        break
                    await asyncio.sleep(0.05)
            return await closed_with(slow, timeout=30)

        reader = asyncio.create_task(read_fast())
        closing = asyncio.create_task(slow_closed())
        for i in range(total):  # the slow client reads nothing meanwhile
            await broker.publish("sos", "test.load", {**payload, "i": i})
        await asyncio.wait_for(reader, 60)
        assert received == list(range(start + 1, start + total + 1))
        assert await asyncio.wait_for(closing, 60) == (4499, "slow_consumer")
    finally:
        await broker.aclose()
        await fast.close()


async def test_frame_limits_binary_frames_and_floods(world: World) -> None:
    ws = await session(world, "patient")
    try:
        await ws.send(orjson.dumps({"op": "ping", "ref": "big", "pad": "x" * 20_000}).decode())
        too_big = await recv_op(ws, "error")  # an oversized frame is not decoded: no ref to echo
        assert (too_big["code"], too_big.get("ref")) == ("frame_too_large", None)
        await ws.send(b"\x00\x01binary")
        assert (await recv_op(ws, "error"))["code"] == "bad_frame"
        assert (await request(ws, {"op": "ping"}))["op"] == "pong"
        for _ in range(300):  # far beyond 20/s with a burst of 40
            await ws.send('{"op":"ping"}')
        assert await closed_with(ws) == (4429, "flood")
    finally:
        await ws.close()
    huge = await session(world, "patient")
    await huge.send(orjson.dumps({"op": "ping", "pad": "x" * 70_000}).decode())
    code, _ = await closed_with(huge)
    assert code == 1009


async def test_idle_connections_are_closed(world: World) -> None:
    ws = await session(world, "patient", server=world.server2)  # server2 has a 3 s idle timeout
    assert await closed_with(ws, timeout=20) == (4408, "idle_timeout")


# --- many processes -------------------------------------------------------------------------------


async def test_events_cross_processes_through_redis(world: World, engine_redis: aioredis.Redis) -> None:
    # doctor2: `doctor` is on the fixture's assigned call, so the server holds them busy (the repair
    # sweep restores what the database says) and refuses their status changes.
    channel = f"doctor:{world.ids['doctor2']}"
    listener = await session(world, "doctor2", server=world.server)
    actor = await session(world, "doctor2", server=world.server2)
    try:
        await request(listener, {"op": "subscribe", "ch": channel})
        await _toggle(actor, 4)
        events = await _events(listener, 4, channel)
        assert [e["data"]["status"] for e in events] == ["paused", "available", "paused", "available"]
        offsets = [e["offset"] for e in events]
        assert offsets == list(range(offsets[0], offsets[0] + 4))
        # A fix sent to one process is in the index every process reads.
        now = int(time.time() * 1000)
        await request(actor, {"op": "location", "lat": 55.8, "lon": 37.7, "acc": 3, "ts": now})
        index = RedisLocationIndex(engine_redis, Keys(prefix=world.prefix))

        async def stored() -> bool:
            position = await index.get(world.ids["doctor2"])
            return position is not None and position.ts_ms == now

        assert await _eventually(stored)
    finally:
        await listener.close()
        await actor.close()


# --- the direct path and presence bookkeeping -------------------------------------------------------


async def test_location_frames_take_the_direct_path_in_order(world: World) -> None:
    """Fixes sent while the connection is idle skip the ASGI queue (server/ws/uvicorn_protocol.py); a fix
    sent right behind another op still waits its turn: replies come back in the order sent."""
    before = _metric(world.server, "tot_ws_direct_frames")
    ws = await session(world, "doctor")
    try:
        now = int(time.time() * 1000)
        for i in range(5):
            ack = await request(ws, {"op": "location", "lat": 55.75, "lon": 37.62, "acc": 5, "ts": now + i})
            assert (ack["op"], ack["ignored"]) == ("ack", False)
        assert _metric(world.server, "tot_ws_direct_frames") >= before + 5
        frames = [
            {"op": "ping", "ref": "p1"},
            {"op": "location", "lat": 55.75, "lon": 37.62, "acc": 5, "ts": now + 10, "ref": "l1"},
            {"op": "doctor.status", "status": "paused", "ref": "s1"},
            {"op": "location", "lat": 55.76, "lon": 37.62, "acc": 5, "ts": now + 11, "ref": "l2"},
            {"op": "ping", "ref": "p2"},
        ]
        for frame in frames:
            await ws.send(orjson.dumps(frame).decode())
        refs: list[str] = []
        while len(refs) < len(frames):
            reply = await recv(ws)
            if "ref" in reply:
                refs.append(reply["ref"])
        assert refs == ["p1", "l1", "s1", "l2", "p2"]
    finally:
        await ws.close()


async def test_presence_entries_follow_subscriptions_and_the_connection(
    world: World, engine_redis: aioredis.Redis
) -> None:
    presence = RedisPresence(engine_redis, Keys(prefix=world.prefix))
    doctor = world.ids["doctor2"]
    ws = await connect(world.ws_url(world.tokens["doctor2"]), compression=None)
    hello = await recv(ws)
    member = f"user:{doctor}:{hello['connection']}"
    try:
        assert member in await presence.members("online")
        reply = await request(ws, {"op": "subscribe", "ch": f"doctor:{doctor}"})
        assert reply["op"] == "subscribed"

        async def joined() -> bool:  # the entry is written right after the `subscribed` reply
            return member in await presence.members(f"doctor:{doctor}")

        assert await _eventually(joined)
        reply = await request(ws, {"op": "unsubscribe", "ch": f"doctor:{doctor}"})
        assert reply["op"] == "unsubscribed"
        assert member not in await presence.members(f"doctor:{doctor}")
        assert (await request(ws, {"op": "subscribe", "ch": f"doctor:{doctor}"}))["op"] == "subscribed"
    finally:
        await ws.close()

    async def gone() -> bool:
        online = await presence.members("online")
        channel = await presence.members(f"doctor:{doctor}")
        return member not in online and member not in channel

    assert await _eventually(gone)
