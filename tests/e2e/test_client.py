"""``realtime/client.py`` against real server processes (``tot-dispatch demo``, embedded engine).

The event source is ``doctor.status``: each accepted change publishes a ``doctor.status`` event on the
doctor's own channel ``doctor:<id>``, so a doctor's second connection sees every change with offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from realtime.client import (
    AuthError,
    ClientError,
    ClientEvent,
    ConnectionLost,
    Event,
    Position,
    RecoveryFailed,
    TotClient,
)
from tests.e2e.process import RunningServer, run_server

PASSWORD = "doctor-password-1"
WAIT_S = 30.0  # generous: only bounds how long a broken client can hang a test


@dataclass(frozen=True)
class Doctor:
    id: str
    email: str
    token: str
    channel: str


def _login(url: str, login: str, password: str) -> str:
    response = httpx.post(f"{url}/v1/auth/login", json={"login": login, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["tokens"]["access_token"])


def new_doctor(url: str) -> Doctor:
    """Register a doctor over REST and have the demo admin verify it."""
    tag = uuid.uuid4().hex[:12]
    email = f"dr-{tag}@example.org"
    registered = httpx.post(
        f"{url}/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": f"Dr {tag}",
            "role": "doctor",
            "licence_number": f"LIC-{tag}",
            "specialties": ["therapist"],
        },
    )
    assert registered.status_code == 201, registered.text
    body = registered.json()
    doctor_id = str(body["user"]["id"])
    admin = _login(url, "admin@demo.tot", "demo-admin-pass")
    verified = httpx.post(
        f"{url}/v1/doctors/{doctor_id}/verify",
        json={"verified": True},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert verified.status_code == 200, verified.text
    return Doctor(doctor_id, email, str(body["tokens"]["access_token"]), f"doctor:{doctor_id}")


def fresh_token(url: str, doctor: Doctor, calls: list[str]) -> Callable[[], Awaitable[str]]:
    """A token callable that logs in again on every call and records the call."""

    async def token() -> str:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{url}/v1/auth/login", json={"login": doctor.email, "password": PASSWORD}
            )
        response.raise_for_status()
        calls.append("called")
        return str(response.json()["tokens"]["access_token"])

    return token


def closes(url: str, code: int) -> float:
    """How many connections the server closed with ``code`` (its Prometheus counter)."""
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf'^tot_ws_closes_total\{{code="{code}"\}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def take(client: TotClient, count: int) -> list[ClientEvent]:
    """The next ``count`` items of ``client.events()``."""
    items: list[ClientEvent] = []
    async with asyncio.timeout(WAIT_S):
        async with contextlib.aclosing(client.events()) as events:
            async for item in events:
                items.append(item)
                if len(items) == count:
                    break
    return items


async def change(actor: TotClient, status: str) -> None:
    """One accepted ``doctor.status`` change (waits out rate limiting)."""
    while True:
        try:
            assert await actor.request("doctor.status", status=status) == {"status": status}
            return
        except ClientError as exc:
            if exc.code != "rate_limited":
                raise
            await asyncio.sleep(0.2)


def statuses(count: int) -> list[str]:
    return ["paused" if i % 2 == 0 else "available" for i in range(count)]


def assert_contiguous(items: list[ClientEvent], after: Position, expected: list[str]) -> None:
    """Exactly the ``doctor.status`` events after ``after``: every offset once, in order."""
    assert all(isinstance(item, Event) for item in items), items
    events = [item for item in items if isinstance(item, Event)]
    assert [e.offset for e in events] == list(range(after.offset + 1, after.offset + 1 + len(expected)))
    assert {e.epoch for e in events} == {after.epoch}
    assert [e.type for e in events] == ["doctor.status"] * len(expected)
    assert [e.data["status"] for e in events] == expected


async def wait_reconnected(client: TotClient, old_connection: str) -> None:
    """Until the client is connected again, on a connection other than ``old_connection``."""
    async with asyncio.timeout(WAIT_S):
        # Polling the client's public state is the point here (no event to wait on).
        while not (client.connected and client.hello and client.hello["connection"] != old_connection):  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(
        ["demo", "--no-replay"], {"TOT_SECRET_KEY": ""}, tmp_path_factory.mktemp("client")
    ) as running:
        yield running


async def test_hello_subscribe_request_and_errors(server: RunningServer) -> None:
    doctor = new_doctor(server.url)
    client = TotClient(server.url, doctor.token)
    async with client:
        assert client.connected
        assert client.url.endswith("/v1/ws") and client.url.startswith("ws://")
        assert client.hello is not None
        assert client.hello["op"] == "hello"
        assert client.hello["user"] == doctor.id
        assert client.hello["role"] == "doctor"
        assert client.hello["limits"]["idle_timeout_s"] > 0

        subscribed = await client.subscribe(doctor.channel)
        assert subscribed.channel == doctor.channel
        assert subscribed.recovered is False  # no ``since``: from the current position
        assert client.channels == [doctor.channel]
        assert client.position(doctor.channel) == subscribed.position

        assert await client.request("doctor.status", status="available") == {"status": "available"}
        assert await client.request("ping") == {}

        with pytest.raises(ClientError) as invalid:
            await client.request("doctor.status", status="flying")
        assert (invalid.value.code, invalid.value.field) == ("invalid_field", "status")
        with pytest.raises(ClientError) as forbidden:
            await client.subscribe(f"doctor:{uuid.uuid4()}")
        assert forbidden.value.code == "forbidden"
        with pytest.raises(ClientError) as bad_channel:
            await client.subscribe("nowhere:1")
        assert bad_channel.value.code == "bad_channel"
        with pytest.raises(ClientError) as unknown:
            await client.request("no.such.op")
        assert unknown.value.code == "unknown_op"
        with pytest.raises(ClientError) as twice:
            await client.subscribe(doctor.channel)
        assert twice.value.code == "invalid_field"

        [event] = await take(client, 1)
        start = subscribed.position
        assert isinstance(event, Event)
        assert (event.channel, event.type, event.offset, event.epoch) == (
            doctor.channel,
            "doctor.status",
            start.offset + 1,
            start.epoch,
        )
        assert event.data["status"] == "available"
        seen = client.position(doctor.channel)
        assert seen == Position(start.offset + 1, start.epoch)

        # Unsubscribed: the change is not delivered; subscribing with ``since`` recovers it.
        await client.unsubscribe(doctor.channel)
        assert client.channels == []
        await client.request("doctor.status", status="paused")
        again = await client.subscribe(doctor.channel, since=seen)
        assert again.recovered is True
        assert again.position == Position(start.offset + 2, start.epoch)
        [missed] = await take(client, 1)
        assert isinstance(missed, Event)
        assert (missed.offset, missed.data["status"]) == (start.offset + 2, "paused")

        # A ``since`` from another epoch cannot be recovered: the app is told, events go on after it.
        await client.unsubscribe(doctor.channel)
        lost = await client.subscribe(doctor.channel, since=Position(1, "deadbeef"))
        assert (lost.recovered, lost.reason) == (False, "epoch_mismatch")
        assert lost.position == Position(start.offset + 2, start.epoch)

    assert not client.connected
    assert client.closed_code == 1000
    with pytest.raises(ConnectionLost):
        await client.request("ping")
    async with asyncio.timeout(WAIT_S):  # ``events()`` simply ends after close()
        assert [item async for item in client.events()] == []


async def test_events_arrive_in_order_from_another_connection(server: RunningServer) -> None:
    doctor = new_doctor(server.url)
    expected = statuses(30)
    async with TotClient(server.url, doctor.token) as watcher, TotClient(server.url, doctor.token) as actor:
        start = (await watcher.subscribe(doctor.channel)).position
        for status in expected:
            await change(actor, status)
        assert_contiguous(await take(watcher, len(expected)), start, expected)


async def test_a_full_queue_holds_events_back_and_a_drop_meanwhile_loses_nothing(
    server: RunningServer,
) -> None:
    doctor = new_doctor(server.url)
    expected = statuses(40)
    async with (
        TotClient(server.url, doctor.token, max_queued_events=3, backoff_s=(0.01, 0.1)) as watcher,
        TotClient(server.url, doctor.token) as actor,
    ):
        start = (await watcher.subscribe(doctor.channel)).position
        assert watcher.hello is not None
        first_connection = watcher.hello["connection"]
        for status in expected[:30]:  # nobody consumes the watcher's events meanwhile
            await change(actor, status)
        # The watcher stopped reading at 3 queued events; frames received but not queued die with
        # the connection, and the reconnect recovers them from the last queued offset.
        watcher.drop_connection_for_test()
        for status in expected[30:]:
            await change(actor, status)
        assert_contiguous(await take(watcher, len(expected)), start, expected)
        assert watcher.hello["connection"] != first_connection


async def test_reconnect_recovers_what_was_published_while_disconnected(server: RunningServer) -> None:
    doctor = new_doctor(server.url)
    calls: list[str] = []
    login = fresh_token(server.url, doctor, calls)
    gate = asyncio.Event()
    gate.set()

    async def gated_token() -> str:
        await gate.wait()  # holds the reconnect until the test has published more
        return await login()

    async with (
        TotClient(server.url, gated_token, backoff_s=(0.05, 0.5)) as watcher,
        TotClient(server.url, doctor.token) as actor,
    ):
        start = (await watcher.subscribe(doctor.channel)).position
        before, during, after = statuses(3), statuses(7)[3:], statuses(9)[7:]
        for status in before:
            await change(actor, status)
        assert_contiguous(await take(watcher, 3), start, before)
        assert watcher.hello is not None
        first_connection = watcher.hello["connection"]

        gate.clear()
        watcher.drop_connection_for_test()
        for status in during:  # acknowledged, hence published, while the watcher is away
            await change(actor, status)
        assert not watcher.connected
        assert watcher.closed_code == 1006
        gate.set()
        await wait_reconnected(watcher, first_connection)
        for status in after:
            await change(actor, status)

        assert_contiguous(await take(watcher, 6), Position(start.offset + 3, start.epoch), during + after)
        assert calls == ["called", "called"]  # the token callable ran again for the reconnect
        assert watcher.channels == [doctor.channel]


async def test_drops_during_a_stream_of_changes_lose_and_repeat_nothing(server: RunningServer) -> None:
    doctor = new_doctor(server.url)
    calls: list[str] = []
    expected = statuses(60)
    async with (
        TotClient(server.url, fresh_token(server.url, doctor, calls), backoff_s=(0.01, 0.2)) as watcher,
        TotClient(server.url, doctor.token) as actor,
    ):
        start = (await watcher.subscribe(doctor.channel)).position

        async def keep_changing() -> None:
            for status in expected:
                await change(actor, status)
                await asyncio.sleep(0.01)

        changer = asyncio.create_task(keep_changing())
        items: list[ClientEvent] = []
        for chunk in (10, 20, 30):
            items += await take(watcher, chunk)
            if len(items) < len(expected):
                await wait_reconnected(watcher, "")  # connected: the drop below is a real one
                watcher.drop_connection_for_test()
        await changer
        assert_contiguous(items, start, expected)
        assert len(calls) == 3  # the first connection and two reconnects


async def test_recovery_failure_is_reported_and_events_go_on(server: RunningServer) -> None:
    doctor = new_doctor(server.url)
    gate = asyncio.Event()
    gate.set()

    async def gated_token() -> str:
        await gate.wait()
        return doctor.token

    async with TotClient(server.url, gated_token, backoff_s=(0.05, 0.5)) as watcher:
        start = (await watcher.subscribe(doctor.channel)).position
        assert watcher.hello is not None
        first_connection = watcher.hello["connection"]
        gate.clear()
        watcher.drop_connection_for_test()
        # More changes than the channel's history keeps (100), from several connections (rate limits).
        actors = [TotClient(server.url, doctor.token) for _ in range(4)]
        for actor in actors:
            await actor.connect()
        try:
            for actor in actors:
                for status in statuses(30):
                    await change(actor, status)
            gate.set()
            await wait_reconnected(watcher, first_connection)
            [failed] = await take(watcher, 1)
            assert failed == RecoveryFailed(
                doctor.channel, "offset_too_old", Position(start.offset + 120, start.epoch)
            )
            await change(actors[0], "available")
            [event] = await take(watcher, 1)
            assert isinstance(event, Event)
            assert (event.offset, event.data["status"]) == (start.offset + 121, "available")
        finally:
            for actor in actors:
                await actor.close()


async def test_without_reconnect_a_drop_ends_the_client(server: RunningServer) -> None:
    doctor = new_doctor(server.url)
    async with TotClient(server.url, doctor.token, reconnect=False) as client:
        await client.subscribe(doctor.channel)
        client.drop_connection_for_test()
        with pytest.raises(ConnectionLost) as lost:
            await take(client, 1)
        assert lost.value.code == 1006
        with pytest.raises(ConnectionLost):
            await client.request("ping")
        assert not client.connected


async def test_a_bad_token_raises_auth_error_without_retrying(server: RunningServer) -> None:
    refused = closes(server.url, 4401)
    client = TotClient(server.url, "not-a-token", backoff_s=(0.01, 0.01))
    with pytest.raises(AuthError) as bad:
        await client.connect()
    assert (bad.value.code, bad.value.reason) == (4401, "token_invalid")
    assert (client.closed_code, client.closed_reason) == (4401, "token_invalid")
    assert not client.connected

    calls: list[str] = []

    async def bad_callable() -> str:
        calls.append("called")
        return "still-not-a-token"

    with pytest.raises(AuthError):
        await TotClient(server.url, bad_callable, backoff_s=(0.01, 0.01)).connect()
    assert calls == ["called"]
    assert closes(server.url, 4401) == refused + 2  # one attempt each


@pytest.fixture(scope="module")
def short_lived_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Access tokens valid 1 s (+ the server's 5 s leeway); idle connections closed after 3 s."""
    env = {"TOT_SECRET_KEY": "", "TOT_ACCESS_TOKEN_TTL": "1", "TOT_WS_IDLE_TIMEOUT": "3"}
    with run_server(["demo", "--no-replay"], env, tmp_path_factory.mktemp("short")) as running:
        yield running


async def test_expired_token_stops_a_static_client_and_a_callable_refreshes(
    short_lived_tokens: RunningServer,
) -> None:
    url = short_lived_tokens.url
    doctor = new_doctor(url)
    token = _login(url, doctor.email, PASSWORD)  # fresh: valid for 1 s + 5 s leeway
    calls: list[str] = []
    static = TotClient(url, token, backoff_s=(0.01, 0.05))
    refreshing = TotClient(url, fresh_token(url, doctor, calls), backoff_s=(0.01, 0.05))
    async with static, refreshing:
        await static.subscribe(doctor.channel)
        start = (await refreshing.subscribe(doctor.channel)).position
        assert static.hello is not None and refreshing.hello is not None
        connections = (static.hello["connection"], refreshing.hello["connection"])

        async with asyncio.timeout(WAIT_S), httpx.AsyncClient() as http:
            while True:  # until the server calls the static token expired
                me = await http.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"})
                if me.status_code == 401:
                    assert me.json()["error"]["code"] == "token_expired"
                    break
                await asyncio.sleep(0.25)
        # Several idle timeouts went by: the clients' pings kept both connections.
        assert static.connected and refreshing.connected
        assert (static.hello["connection"], refreshing.hello["connection"]) == connections

        static.drop_connection_for_test()
        refreshing.drop_connection_for_test()
        with pytest.raises(AuthError) as expired:
            await take(static, 1)
        assert (expired.value.code, expired.value.reason) == (4401, "token_expired")
        assert not static.connected
        assert (static.closed_code, static.closed_reason) == (4401, "token_expired")
        with pytest.raises(AuthError):
            await static.request("ping")

        await wait_reconnected(refreshing, connections[1])
        assert calls == ["called", "called"]
        await change(refreshing, "paused")
        [event] = await take(refreshing, 1)
        assert isinstance(event, Event)
        assert (event.offset, event.data["status"]) == (start.offset + 1, "paused")
        assert closes(url, 4401) == 1  # the static client tried once and gave up
