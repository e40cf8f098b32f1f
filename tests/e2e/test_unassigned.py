"""A doctor who loses a call loses its channel, end to end: two real server processes on Redis, the
doctors and the patient as real WebSocket clients, the dispatcher over REST.

Subscriptions to ``call:<id>`` are checked once, when made; when the call is reassigned by a
dispatcher or dropped by its doctor, the gateway ends the old doctor's subscription on every process
(``{"op":"unsubscribed","ch":"call:<id>","reason":"unassigned"}`` right behind ``call.unassigned``),
releases its presence entry and the process's broker interest, and nothing more published on the
call (chat included) reaches that doctor. Since ``call.unassigned`` only reaches a connection that
follows ``doctor:<id>``, a doctor may hold ``call:<id>`` only there: a subscribe without it is refused
(``doctor_channel_required``), and unsubscribing from ``doctor:<id>`` ends the connection's call
channels (``unsubscribed`` with reason ``doctor_channel_left``). The doctors read raw sockets: the
project's client drops events of channels it no longer holds, which would hide a server that kept
sending them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from models.enums import Role
from realtime.client import Event, SubscriptionLost, TotClient
from realtime.keys import Keys
from realtime.presence_redis import RedisPresence
from tests.conftest import redis_test_url
from tests.e2e.dispatch_world import CENTRE, City, Person, city, forget_engine_keys, offset

QUIET_S = 0.5
"""How long a doctor's socket is watched for frames of a channel it lost, after another party got
the frame that would have been sent to it (that receipt is the synchronisation point)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    prefix = ""
    try:
        with city(
            tmp_path_factory.mktemp("unassigned"),
            doctors=6,
            patients=4,
            servers=2,
            engine_url=redis_test_url(),
        ) as c:
            prefix = c.env["TOT_ENGINE_PREFIX"]
            yield c
    finally:
        if prefix:
            asyncio.run(forget_engine_keys(prefix))


@pytest.fixture
async def engine_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_test_url())
    yield client
    await client.aclose()


class Socket:
    """A raw WebSocket client that keeps every frame the server sends, in order (``frames``)."""

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, world: City, who: Person, server: int = 0) -> Socket:
        url = world.servers[server].url.replace("http://", "ws://") + f"/v1/ws?token={who.token}"
        ws = await connect(url, compression=None)
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["op"] == "hello", hello
        return cls(ws, hello)

    @property
    def member(self) -> str:
        """This connection's presence client id."""
        return f"user:{self.hello['user']}:{self.hello['connection']}"

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.ws:
                self.frames.append(orjson.loads(raw))
                self._changed.set()

    async def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> int:
        """The index in ``frames`` of the first frame that satisfies ``predicate`` (received or next)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, frame in enumerate(self.frames):
                if predicate(frame):
                    return i
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no such frame; got {self.frames}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` with a fresh ref; the reply with that ref (ack, subscribed, error...)."""
        ref = uuid.uuid4().hex[:10]
        await self.ws.send(orjson.dumps({**frame, "ref": ref}).decode())
        return self.frames[await self.wait(lambda f: f.get("ref") == ref)]

    async def subscribe(self, channel: str) -> None:
        reply = await self.request({"op": "subscribe", "ch": channel})
        assert reply["op"] == "subscribed", reply

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def event(channel: str, event_type: str, **data: Any) -> Callable[[dict[str, Any]], bool]:
    """Matches an ``event`` frame of ``event_type`` on ``channel`` whose data holds ``data``."""

    def match(frame: dict[str, Any]) -> bool:
        return (
            frame.get("op") == "event"
            and frame["ch"] == channel
            and frame["type"] == event_type
            and all(frame["data"].get(k) == v for k, v in data.items())
        )

    return match


def assigned(doctor: Person, call_id: str) -> Callable[[dict[str, Any]], bool]:
    """Matches ``call.assigned`` of ``call_id`` on the doctor's channel."""
    match = event(f"doctor:{doctor.id}", "call.assigned")
    return lambda frame: match(frame) and frame["data"]["call"]["id"] == call_id


def ended(channel: str) -> Callable[[dict[str, Any]], bool]:
    """Matches an ``unsubscribed`` frame for ``channel`` that answers no request."""
    return lambda frame: frame.get("op") == "unsubscribed" and frame["ch"] == channel and "ref" not in frame


_places = iter(range(100))


async def waiting_call(world: City, patient: Person) -> str:
    """A call far from every doctor (none sends a position here, so the loop offers it to nobody),
    searching or escalated: a dispatcher assigns it by hand."""
    place = offset(CENTRE[0] - 1.0 - 0.5 * next(_places), CENTRE[1], 0)
    created = await world.create_call(patient, *place)
    assert created.status_code == 201, created.text
    call_id: str = created.json()["id"]
    await world.wait_status(call_id, {"searching", "escalated"})
    return call_id


async def assign(world: City, call_id: str, doctor: Person) -> None:
    response = await world.http(
        "POST", f"/v1/calls/{call_id}/assign", world.dispatcher, server=1, json={"doctor_id": doctor.id}
    )
    assert response.status_code == 200, response.text


async def chat(world: City, who: Person, call_id: str, text: str) -> None:
    body = {"client_msg_id": uuid.uuid4().hex, "text": text}
    response = await world.http("POST", f"/v1/calls/{call_id}/messages", who, json=body)
    assert response.status_code == 201, response.text


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def assert_locked_out(world: City, sock: Socket, doctor: Person, call_id: str) -> None:
    """The doctor can no longer follow, read or write the call's chat: socket and REST."""
    again = await sock.request({"op": "subscribe", "ch": f"call:{call_id}"})
    assert (again["op"], again["code"]) == ("error", "forbidden"), again
    sent = await sock.request({"op": "chat.send", "call": call_id, "client_msg_id": "late", "text": "hi"})
    assert (sent["op"], sent["code"]) == ("error", "not_found"), sent
    read = await world.http("GET", f"/v1/calls/{call_id}/messages", doctor)
    write = await world.http(
        "POST", f"/v1/calls/{call_id}/messages", doctor, json={"client_msg_id": "late", "text": "hi"}
    )
    assert (read.status_code, write.status_code) == (404, 404), (read.text, write.text)


async def test_a_reassigned_doctor_stops_receiving_the_call_and_its_chat(
    world: City, engine_redis: aioredis.Redis
) -> None:
    patient = world.of_role(Role.PATIENT)[0]
    first, second = world.of_role(Role.DOCTOR)[0:2]
    a = await Socket.open(world, first, server=0)
    b = await Socket.open(world, second, server=1)
    try:
        await a.subscribe(f"doctor:{first.id}")
        await b.subscribe(f"doctor:{second.id}")
        call_id = await waiting_call(world, patient)
        ch = f"call:{call_id}"
        await assign(world, call_id, first)
        await a.wait(assigned(first, call_id))
        await a.subscribe(ch)
        presence = RedisPresence(engine_redis, Keys(prefix=world.env["TOT_ENGINE_PREFIX"]))
        live = Keys(prefix=world.env["TOT_ENGINE_PREFIX"]).broker_pubsub(ch)

        async def subscribers() -> int:  # processes whose broker holds the call's shard channel
            [(_, count)] = await engine_redis.pubsub_shardnumsub(live)
            return int(count)

        async def a_present() -> bool:
            return a.member in await presence.members(ch)

        await eventually(a_present)
        assert await subscribers() == 1  # process 0, for the first doctor; nobody follows it on 1
        await chat(world, patient, call_id, "before")
        await a.wait(event(ch, "chat.message", text="before"))  # the channel reaches the first doctor

        await assign(world, call_id, second)  # through process 1; the first doctor is on process 0
        end = await a.wait(ended(ch))
        assert a.frames[end] == {"op": "unsubscribed", "ch": ch, "reason": "unassigned"}
        assert event(f"doctor:{first.id}", "call.unassigned", call=call_id)(a.frames[end - 1])
        assert a.frames[end - 1]["data"]["reason"] == "reassigned by a dispatcher"

        async def a_gone() -> bool:
            return not await a_present()

        async def released() -> bool:
            return await subscribers() == 0

        await eventually(a_gone)
        await eventually(released)  # process 0 let go of the channel: nobody else held it there

        await b.wait(assigned(second, call_id))
        await b.subscribe(ch)
        await chat(world, patient, call_id, "after")
        await b.wait(event(ch, "chat.message", text="after"))
        await asyncio.sleep(QUIET_S)
        assert [f for f in a.frames[end + 1 :] if f.get("ch") == ch] == []

        await assert_locked_out(world, a, first, call_id)
        # The connection itself goes on: the doctor's own channel still reaches it.
        assert (await a.request({"op": "doctor.status", "status": "paused"}))["op"] == "ack"
        await a.wait(event(f"doctor:{first.id}", "doctor.status", status="paused"))
    finally:
        await a.close()
        await b.close()


async def test_a_doctor_who_drops_the_call_loses_it_on_every_connection(world: City) -> None:
    patient = world.of_role(Role.PATIENT)[1]
    doctor = world.of_role(Role.DOCTOR)[2]
    phone = await Socket.open(world, doctor, server=0)
    tablet = TotClient(world.servers[1].url, doctor.token)  # the project's client, on the other process
    watcher = await Socket.open(world, patient, server=1)
    await tablet.connect()
    try:
        await phone.subscribe(f"doctor:{doctor.id}")
        await tablet.subscribe(f"doctor:{doctor.id}")
        call_id = await waiting_call(world, patient)
        ch = f"call:{call_id}"
        await assign(world, call_id, doctor)
        await phone.wait(assigned(doctor, call_id))
        await phone.subscribe(ch)
        await tablet.subscribe(ch)
        await watcher.subscribe(ch)
        await chat(world, patient, call_id, "hello doctor")
        await phone.wait(event(ch, "chat.message", text="hello doctor"))

        dropped = await world.http("POST", f"/v1/calls/{call_id}/drop", doctor, json={"reason": "flat tyre"})
        assert dropped.status_code == 200, dropped.text
        end = await phone.wait(ended(ch))
        assert phone.frames[end] == {"op": "unsubscribed", "ch": ch, "reason": "unassigned"}
        assert event(f"doctor:{doctor.id}", "call.unassigned", call=call_id, reason="flat tyre")(
            phone.frames[end - 1]
        )
        lost: list[SubscriptionLost] = []
        async with asyncio.timeout(10):
            async for item in tablet.events():
                if isinstance(item, SubscriptionLost):
                    lost.append(item)
                    break
        assert [(item.channel, item.code) for item in lost] == [(ch, "unassigned")]
        assert ch not in tablet.channels  # not resubscribed after a reconnect either

        await chat(world, patient, call_id, "anyone?")
        await watcher.wait(event(ch, "chat.message", text="anyone?"))
        await asyncio.sleep(QUIET_S)
        assert [f for f in phone.frames[end + 1 :] if f.get("ch") == ch] == []
        await assert_locked_out(world, phone, doctor, call_id)
    finally:
        await phone.close()
        await watcher.close()
        await tablet.close()


async def test_a_doctor_follows_a_call_only_on_a_connection_that_follows_their_own_channel(
    world: City,
) -> None:
    patient = world.of_role(Role.PATIENT)[2]
    doctor, stranger = world.of_role(Role.DOCTOR)[3:5]
    own = f"doctor:{doctor.id}"
    sock = await Socket.open(world, doctor, server=0)
    other = await Socket.open(world, stranger, server=0)
    tablet = TotClient(world.servers[1].url, doctor.token, backoff_s=(0.05, 0.5))  # the project's client
    await tablet.connect()
    try:
        call_id = await waiting_call(world, patient)
        ch = f"call:{call_id}"
        await assign(world, call_id, doctor)  # committed when answered

        refused = await sock.request({"op": "subscribe", "ch": ch})
        assert (refused["op"], refused["code"]) == ("error", "doctor_channel_required"), refused
        assert refused["field"] == "ch", refused
        assert f"subscribe to {own} first" in refused["message"], refused
        # A doctor who is not the call's learns nothing more than before: forbidden comes first.
        not_theirs = await other.request({"op": "subscribe", "ch": ch})
        assert (not_theirs["op"], not_theirs["code"]) == ("error", "forbidden"), not_theirs

        await sock.subscribe(own)
        await sock.subscribe(ch)
        await chat(world, patient, call_id, "now you hear me")
        await sock.wait(event(ch, "chat.message", text="now you hear me"))

        # The project's client, in order; after a drop it resubscribes doctor:<id> before the call.
        await tablet.subscribe(own)
        await tablet.subscribe(ch)
        assert tablet.hello is not None
        first_connection = tablet.hello["connection"]
        tablet.drop_connection_for_test()
        async with asyncio.timeout(10):
            # Polling the client's public state: there is no event to wait on.
            while not (tablet.connected and tablet.hello and tablet.hello["connection"] != first_connection):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await chat(world, patient, call_id, "still there?")
        seen: list[object] = []
        async with asyncio.timeout(10):
            async for item in tablet.events():
                seen.append(item)
                if isinstance(item, Event) and item.channel == ch and item.data.get("text") == "still there?":
                    break
        assert not [item for item in seen if isinstance(item, SubscriptionLost)], seen
        assert tablet.channels == [own, ch]
    finally:
        await sock.close()
        await other.close()
        await tablet.close()


async def test_a_doctor_who_leaves_their_own_channel_leaves_the_call(
    world: City, engine_redis: aioredis.Redis
) -> None:
    patient = world.of_role(Role.PATIENT)[3]
    doctor = world.of_role(Role.DOCTOR)[5]
    own = f"doctor:{doctor.id}"
    sock = await Socket.open(world, doctor, server=0)
    watcher = await Socket.open(world, patient, server=1)
    tablet = TotClient(world.servers[1].url, doctor.token)  # the project's client, on the other process
    await tablet.connect()
    try:
        await sock.subscribe(own)
        await tablet.subscribe(own)
        call_id = await waiting_call(world, patient)
        ch = f"call:{call_id}"
        await assign(world, call_id, doctor)
        await sock.wait(assigned(doctor, call_id))
        await sock.subscribe(ch)
        await tablet.subscribe(ch)
        await watcher.subscribe(ch)
        keys = Keys(prefix=world.env["TOT_ENGINE_PREFIX"])
        presence = RedisPresence(engine_redis, keys)

        async def present() -> bool:
            return sock.member in await presence.members(ch)

        await eventually(present)
        await chat(world, patient, call_id, "before")
        await sock.wait(event(ch, "chat.message", text="before"))

        reply = await sock.request({"op": "unsubscribe", "ch": own})
        assert reply["op"] == "unsubscribed" and reply["ch"] == own, reply
        end = await sock.wait(ended(ch))
        assert sock.frames[end] == {"op": "unsubscribed", "ch": ch, "reason": "doctor_channel_left"}
        assert end < sock.frames.index(reply)  # the call first: at the reply, no call channel is left
        assert not await present()  # released before the reply
        # Process 0 let go of the channel: only this doctor followed it there.
        [(_, count)] = await engine_redis.pubsub_shardnumsub(keys.broker_pubsub(ch))
        assert int(count) == 1  # process 1 (the patient, the tablet)

        await chat(world, patient, call_id, "after")
        await watcher.wait(event(ch, "chat.message", text="after"))
        await asyncio.sleep(QUIET_S)
        assert [f for f in sock.frames[end + 1 :] if f.get("ch") == ch] == []

        # Back only through the doctor's own channel: the call is still theirs.
        again = await sock.request({"op": "subscribe", "ch": ch})
        assert (again["op"], again["code"]) == ("error", "doctor_channel_required"), again
        await sock.subscribe(own)
        await sock.subscribe(ch)

        # The project's client yields the loss before unsubscribe() returns, and forgets the channel.
        await tablet.unsubscribe(own)
        lost: list[SubscriptionLost] = []
        async with asyncio.timeout(10):
            async for item in tablet.events():
                if isinstance(item, SubscriptionLost):
                    lost.append(item)
                    break
        assert [(item.channel, item.code) for item in lost] == [(ch, "doctor_channel_left")]
        assert tablet.channels == []
    finally:
        await sock.close()
        await watcher.close()
        await tablet.close()
