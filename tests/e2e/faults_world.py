"""The world of the fault tests (issue 16): a deployment that can be broken, and doctor apps that notice.

- :func:`deployment`: scale-out (``redis=`` a test's own :class:`~tests.e2e.redis_proc.RedisServer`, a
  scratch PostgreSQL database, N server processes sharing both) or embedded (``redis=None``: one server
  on an SQLite file and the memory engine). Servers are killed with ``kill -9`` and restarted on the same
  port (their clients reconnect by themselves) or started anew.
- :class:`DoctorApp`: a doctor's phone on a real WebSocket client: streams a position at 1 Hz, answers
  offers by its mode (``accept`` or ``ignore``), and re-announces its status and position when the
  server asks (the re-announce frame of the engine rebuild), recording when it did.
- Readers of the truth: REST for calls, offers and history; the engine's DoctorStates on the test's own
  Redis; ``doctor_profiles.chosen_status`` in the database.

**Settings.** :data:`FAULT_SETTINGS` is the one place naming the server settings these tests shorten;
several belong to features landing with issue 16 (a setting the server does not know is ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import sqlalchemy as sa
from websockets.asyncio.client import ClientConnection

from dispatch.doctor_states import DoctorState
from dispatch.doctor_states_redis import RedisDoctorStates
from models.db import make_engine
from models.doctors import DoctorProfile
from models.enums import Role
from realtime.client import (
    ClientError,
    ConnectionLost,
    Event,
    RecoveryFailed,
    SubscriptionLost,
    TotClient,
    ws_url,
)
from realtime.keys import Keys
from tests.conftest import create_migrated_pg_database, drop_pg_database, migrated_sqlite_url
from tests.e2e.dispatch_world import (
    SECRET,
    City,
    DoctorChannel,
    Person,
    cancel_tasks,
    come_online,
    create_people,
    now_ms,
    stream_fixes,
)
from tests.e2e.process import RunningServer, kill_hard, run_server
from tests.e2e.redis_proc import RedisServer

REPAIR_INTERVAL_S = 1.0
"""The repair sweep's period in these tests (``TOT_REPAIR_INTERVAL``; 5 s by default)."""
OUTBOX_COMMIT_LEASE_S = 1.0
"""How long a committing process keeps its own outbox rows before any relay may publish them."""
OUTBOX_RELAY_LEASE_S = 2.0
"""How long a dead process's relay lease keeps the survivor's relay waiting."""
OUTBOX_RELAY_INTERVAL_S = 0.2
"""How often the active relay looks for unpublished outbox rows."""
OFFER_TIMEOUT_S = 3.0

FAULT_SETTINGS: dict[str, str] = {
    "TOT_OFFER_TIMEOUT": f"{OFFER_TIMEOUT_S:g}",
    "TOT_SEARCH_RINGS_KM": "2,5",
    "TOT_MAX_OFFERS_PER_CALL": "6",
    "TOT_DISPATCH_STEP_RETRY": "2",
    "TOT_DB_POOL_TIMEOUT": "30",  # two cores shared with the clients: a slow pool is not the fault tested
    # The outbox (helper "outbox", server/settings.py).
    "TOT_OUTBOX_COMMIT_LEASE_MS": str(int(OUTBOX_COMMIT_LEASE_S * 1000)),
    "TOT_OUTBOX_RELAY_LEASE_MS": str(int(OUTBOX_RELAY_LEASE_S * 1000)),
    "TOT_OUTBOX_RELAY_INTERVAL_MS": str(int(OUTBOX_RELAY_INTERVAL_S * 1000)),
    # The engine watcher and repair sweep (helper "rebuild").
    "TOT_REPAIR_INTERVAL": f"{REPAIR_INTERVAL_S:g}",  # repair sweep period, s
    "TOT_ENGINE_WATCH_INTERVAL": "0.5",  # how often the engine's epoch key is read, s
}

REANNOUNCE_OP = "reannounce"
"""The server frame asking a doctor app to re-send its status and position after the engine lost them
(docs/protocol.md, helper "rebuild"); the Python client answers it itself."""


# --- the deployment -----------------------------------------------------------------------------------


@dataclass
class Deployment:
    """Servers over one database (and one Redis when scale-out), the people, REST helpers (``city``)."""

    cwd: Path
    env: dict[str, str]
    database_url: str
    people: list[Person]
    redis: RedisServer | None
    city: City
    stack: contextlib.ExitStack

    @property
    def servers(self) -> list[RunningServer]:
        return self.city.servers

    @property
    def prefix(self) -> str:
        return self.env["TOT_ENGINE_PREFIX"]

    def of_role(self, role: Role) -> list[Person]:
        return self.city.of_role(role)

    def start_server(self, *, port: int | None = None, env: dict[str, str] | None = None) -> RunningServer:
        """One more server process (on ``port`` when given, with ``env`` added to the deployment's);
        stopped at the end of the deployment."""
        environ = {**self.env, **(env or {})}
        server = self.stack.enter_context(run_server(["serve"], environ, self.cwd, port=port))
        return server

    def kill9(self, index: int) -> RunningServer:
        """``kill -9`` server ``index``; it stays in ``servers`` (dead) until restarted."""
        server = self.servers[index]
        kill_hard(server)
        return server

    def restart_server(self, index: int, env: dict[str, str] | None = None) -> RunningServer:
        """Start server ``index`` again on its port (its clients reconnect to the same URL)."""
        old = self.servers[index]
        assert old.process.poll() is not None, "restart_server: kill or stop it first"
        self.servers[index] = self.start_server(port=old.port, env=env)
        return self.servers[index]

    def doctor_app(self, person: Person, lat: float, lon: float, server: int, seed: int = 0) -> DoctorApp:
        return DoctorApp(person, self.servers[server].url, lat, lon, random.Random(seed))

    # --- the truth --------------------------------------------------------------------------------------

    async def engine_states(self, doctor_ids: list[str]) -> dict[str, DoctorState]:
        """The doctors' live states in the test's Redis (scale-out only)."""
        assert self.redis is not None, "engine_states reads the test's own Redis"
        client = aioredis.Redis.from_url(self.redis.url)
        async with contextlib.aclosing(client):
            return await RedisDoctorStates(client, Keys(prefix=self.prefix)).get_many(doctor_ids)

    async def chosen_statuses(self, doctor_ids: list[str]) -> dict[str, str]:
        """``doctor_profiles.chosen_status`` by doctor (user) id: the availability each last chose."""
        engine = make_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                ids = [uuid.UUID(i) for i in doctor_ids]
                query = sa.select(DoctorProfile.user_id, DoctorProfile.chosen_status).where(
                    DoctorProfile.user_id.in_(ids)
                )
                rows = (await conn.execute(query)).all()
        finally:
            await engine.dispose()
        return {str(user_id): str(status) for user_id, status in rows}

    async def rest(
        self, method: str, path: str, who: Person, server: int = 0, **kwargs: Any
    ) -> httpx.Response:
        return await self.city.http(method, path, who, server=server, **kwargs)

    async def all_calls(self, server: int = 0) -> list[dict[str, Any]]:
        response = await self.rest("GET", "/v1/calls", self.city.dispatcher, server, params={"limit": 200})
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def offers(self, call_id: str, server: int = 0) -> list[dict[str, Any]]:
        response = await self.rest("GET", f"/v1/calls/{call_id}/offers", self.city.dispatcher, server)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def history(self, call_id: str, server: int = 0) -> list[dict[str, Any]]:
        response = await self.rest("GET", f"/v1/calls/{call_id}/events", self.city.dispatcher, server)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@contextlib.contextmanager
def deployment(
    cwd: Path,
    *,
    redis: RedisServer | None,
    servers: int = 2,
    doctors: int = 10,
    patients: int = 3,
    settings: dict[str, str] | None = None,
) -> Iterator[Deployment]:
    """Copy a database migrated to head (tests/conftest.py's templates), create the people (verified
    therapists, patients, a dispatcher, an admin), start ``servers`` processes. Scale-out when ``redis``
    is given (a scratch PostgreSQL database, dropped at the end), else embedded (SQLite file
    ``cwd/tot.db``, memory engine, one server)."""
    if redis is None and servers != 1:
        raise ValueError("the embedded deployment is one process")
    database_url = (
        asyncio.run(create_migrated_pg_database("tot_faults"))
        if redis
        else migrated_sqlite_url(cwd / "tot.db")
    )
    env = {
        "TOT_SECRET_KEY": SECRET,
        "TOT_DATABASE_URL": database_url,
        "TOT_ENGINE_URL": redis.url if redis else "memory://",
        "TOT_ENGINE_PREFIX": f"flt{uuid.uuid4().hex[:8]}:",
        "TOT_LOG_LEVEL": "warning",
        **FAULT_SETTINGS,
        **(settings or {}),
    }
    try:
        people = asyncio.run(create_people(database_url, doctors, patients, hash_once=True))
        with contextlib.ExitStack() as stack:
            city = City([], database_url, people, env, cwd)
            world = Deployment(cwd, env, database_url, people, redis, city, stack)
            for _ in range(servers):
                city.servers.append(world.start_server())
            yield world
    finally:
        if redis is not None:
            asyncio.run(drop_pg_database(database_url))


# --- doctor apps --------------------------------------------------------------------------------------


class RecordingClient(TotClient):
    """A :class:`TotClient` that also records, with their ``time.time()``, the ``reannounce`` frames it
    receives, the ``hello`` of every connection and every op it sends (``send`` and ``request``, the
    client's own answers to ``reannounce`` included)."""

    def __init__(self, *args: Any, on_reconnect: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_reconnect = on_reconnect
        self.hellos: list[float] = []
        self.reannounce_frames: list[float] = []
        self.sent: list[tuple[float, str]] = []

    async def _open(self) -> ClientConnection:
        ws = await super()._open()  # reads ``hello`` itself, before any frame reaches ``_dispatch``
        self.hellos.append(time.time())
        if len(self.hellos) > 1 and self.on_reconnect is not None:
            self.on_reconnect()
        return ws

    async def _dispatch(self, op: str, frame: dict[str, Any]) -> None:
        if op == REANNOUNCE_OP:
            self.reannounce_frames.append(time.time())
        await super()._dispatch(op, frame)

    async def send(self, op: str, /, **fields: Any) -> None:
        self.sent.append((time.time(), op))
        await super().send(op, **fields)

    async def request(self, op: str, /, *, timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        self.sent.append((time.time(), op))
        return await super().request(op, timeout_s=timeout_s, **fields)

    def sent_since(self, op: str, since: float) -> list[float]:
        """When ``op`` was sent at or after ``since`` (``time.time()``)."""
        return [t for t, sent in self.sent if sent == op and t >= since]


@dataclass
class DoctorApp(DoctorChannel):
    """A doctor's phone. ``mode``: ``accept`` (accepts an offer after 0.05-0.3 s when free) or ``ignore``
    (lets offers expire). ``chosen``: the availability the doctor chose. A ``reannounce`` frame is
    answered by the client library itself (recorded by :class:`RecordingClient`); on every new
    connection the app sends its position at once, as a phone app does."""

    person: Person
    url: str
    lat: float
    lon: float
    rng: random.Random
    mode: str = "accept"
    chosen: str = "available"
    client: RecordingClient = field(init=False)
    busy_with: str | None = None
    offers: dict[str, str] = field(default_factory=dict)  # offer id -> call id, every offer received
    offer_times: dict[str, float] = field(default_factory=dict)  # offer id -> time.time() received
    accepted: list[str] = field(default_factory=list)  # call ids
    events: list[Event] = field(default_factory=list)
    recovery_failures: list[RecoveryFailed] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _background: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.client = RecordingClient(
            self.url,
            self.person.token,
            ping_interval_s=5,
            request_timeout_s=15,
            on_reconnect=self._reconnected,
        )

    async def start(self) -> None:
        status = None if self.chosen == "offline" else self.chosen
        await come_online(self.client, self.id, self.lat, self.lon, status)
        self._background = [asyncio.create_task(self._read()), asyncio.create_task(self._stream())]

    async def stop(self) -> None:
        await cancel_tasks([*self._background, *self._tasks])
        await self.client.close()

    # --- the app ------------------------------------------------------------------------------------------

    async def _stream(self) -> None:
        # 1 Hz, like the app; nothing is sent while reconnecting
        await stream_fixes(self.client, lambda: (self.lat, self.lon), (ConnectionLost,))

    async def _read(self) -> None:
        try:
            async for item in self.client.events():
                if isinstance(item, Event):
                    if item.channel == f"doctor:{self.id}":
                        self.events.append(item)
                        self._on_event(item)
                        self._changed.set()
                elif isinstance(item, RecoveryFailed):
                    self.recovery_failures.append(item)
                elif isinstance(item, SubscriptionLost):
                    self.problems.append(f"lost {item.channel}: {item.code}")
        except Exception as exc:  # the client stopped for good: a failure of the test's world
            self.problems.append(f"client stopped: {exc!r}")

    def _on_event(self, event: Event) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "offer.created":
            offer_id, call_id = str(data["offer"]), str(data["call"]["id"])
            self.offers[offer_id] = call_id
            self.offer_times[offer_id] = time.time()
            if self.mode == "accept" and self.busy_with is None:
                self._spawn(self._accept(offer_id, call_id))
        elif event.type == "call.assigned":
            self.busy_with = str(data["call"]["id"])
        elif event.type in ("call.cancelled", "call.unassigned") and self.busy_with == _call_id(data):
            self.busy_with = None

    def _reconnected(self) -> None:
        """A phone on a new connection says where it is at once (not at its next 1 Hz tick): a server
        that restarted knows no position until then."""

        async def fix() -> None:
            with contextlib.suppress(ConnectionLost):
                await self.client.send("location", lat=self.lat, lon=self.lon, acc=5, ts=now_ms())

        self._spawn(fix())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, offer_id: str, call_id: str) -> None:
        await asyncio.sleep(self.rng.uniform(0.05, 0.3))
        if self.busy_with is not None or self.mode != "accept":
            return
        try:
            await self.client.request("offer.accept", offer=offer_id)
        except ClientError as exc:
            if exc.code not in ("offer_expired", "offer_withdrawn", "offer_declined"):
                self.problems.append(f"accept of {offer_id} refused with {exc.code}")
            return
        except (ConnectionLost, TimeoutError) as exc:
            self.problems.append(f"accept of {offer_id} not answered: {exc!r}")
            return
        self.busy_with = call_id
        self.accepted.append(call_id)

    async def set_status(self, status: str) -> str:
        """``doctor.status``; returns ``ok`` or the error code (never raises for a refusal)."""
        try:
            await self.client.request("doctor.status", status=status)
        except ClientError as exc:
            return exc.code
        except (ConnectionLost, TimeoutError) as exc:
            return f"no answer ({type(exc).__name__})"
        self.chosen = status
        return "ok"


def _call_id(data: dict[str, Any]) -> str:
    """An event's call id: ``call`` is the call (a dict) in most events, its bare id in some."""
    call = data.get("call")
    return str(call["id"] if isinstance(call, dict) else call)


def summary(tag: str, what: str, items: list[str], of: int | None = None, show: int = 3) -> list[str]:
    """One problem line for many alike: ``[tag] 24 of 24 <what>: a; b; c; ...`` (no line when none)."""
    if not items:
        return []
    count = f"{len(items)} of {of}" if of is not None else str(len(items))
    more = "; ..." if len(items) > show else ""
    return [f"{tag} {count} {what}: " + "; ".join(items[:show]) + more]


@dataclass
class Listener:
    """A client that follows channels (a patient's ``call:<id>``, a dispatcher's ``dispatch``) and keeps
    everything it is handed: events, failed recoveries, lost subscriptions, in order."""

    url: str
    token: str
    client: TotClient = field(init=False)
    events: list[Event] = field(default_factory=list)
    failures: list[RecoveryFailed] = field(default_factory=list)
    lost: list[SubscriptionLost] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.client = TotClient(
            self.url, self.token, ping_interval_s=5, request_timeout_s=15, backoff_s=(0.1, 1)
        )

    async def start(self) -> None:
        await self.client.connect()
        self._reader = asyncio.create_task(self._read())

    def move_to(self, url: str) -> None:
        """Reconnect to ``url`` from the next (re)connection on, as a load balancer would route."""
        self.url = url
        self.client.url = ws_url(url)

    async def _read(self) -> None:
        async for item in self.client.events():
            if isinstance(item, Event):
                self.events.append(item)
            elif isinstance(item, RecoveryFailed):
                self.failures.append(item)
            elif isinstance(item, SubscriptionLost):
                self.lost.append(item)
            self._changed.set()

    def of(self, channel: str, event_type: str, **match: Any) -> list[Event]:
        """The events of ``event_type`` on ``channel`` whose data has every ``match`` item."""
        return [
            e
            for e in self.events
            if e.channel == channel
            and e.type == event_type
            and isinstance(e.data, dict)
            and all(e.data.get(k) == v for k, v in match.items())
        ]

    async def wait_for(self, channel: str, event_type: str, timeout: float, **match: Any) -> Event:
        """The first such event (already received or next). Raises ``AssertionError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (found := self.of(channel, event_type, **match)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = [(e.channel, e.type, e.offset) for e in self.events if e.offset is not None]
                raise AssertionError(f"no {event_type} {match} on {channel} after {timeout:g} s; got {got}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return found[0]

    async def stop(self) -> None:
        await cancel_tasks([self._reader])
        await self.client.close()


# --- waiting ------------------------------------------------------------------------------------------


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` until it is true; returns the seconds it took. Raises ``AssertionError`` naming
    ``what`` after ``timeout`` seconds."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no {what} after {timeout:g} s")
        await asyncio.sleep(every)
    return time.monotonic() - started


async def start_apps(apps: list[DoctorApp], at_once: int = 10) -> None:
    gate = asyncio.Semaphore(at_once)

    async def one(app: DoctorApp) -> None:
        async with gate:
            await app.start()

    await asyncio.gather(*(one(app) for app in apps))


async def stop_apps(apps: list[DoctorApp]) -> None:
    await asyncio.gather(*(app.stop() for app in apps), return_exceptions=True)
