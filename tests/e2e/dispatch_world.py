"""A city for dispatch tests: real server processes, verified doctors as WebSocket clients streaming
positions, patients and a dispatcher over REST."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from migrations import runner as migrate
from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.repositories import doctors as doctor_repo
from realtime.client import Event, TotClient
from server.accounts import add_account
from server.auth.passwords import hash_password
from server.auth.tokens import TokenService
from tests.conftest import create_migrated_pg_database, drop_pg_database, migrated_sqlite_url, redis_test_url
from tests.e2e.process import RunningServer, run_server

SECRET = "dispatch-e2e-secret-" + "d" * 32
PASSWORD = "dispatch-pass-1"
CENTRE = (55.7558, 37.6173)  # Moscow, Red Square
EARTH_M_PER_DEG_LAT = 111_195.0  # mean metres per degree of latitude (R = 6,371,008.8 m)


def offset(lat: float, lon: float, north_m: float, east_m: float = 0.0) -> tuple[float, float]:
    """A point ``north_m`` metres north and ``east_m`` east of (lat, lon), on a local flat approximation."""
    return (
        lat + north_m / EARTH_M_PER_DEG_LAT,
        lon + east_m / (EARTH_M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


FIX_INTERVAL_S = 1.0
"""How often a doctor app sends its position, seconds (1 Hz, like the app)."""


def now_ms() -> int:
    """Wall-clock epoch milliseconds: a location fix's ``ts``."""
    return int(time.time() * 1000)


async def stream_fixes(
    client: TotClient,
    where: Callable[[], tuple[float, float]],
    ignore: tuple[type[Exception], ...] = (Exception,),
) -> None:
    """Send the position ``where()`` returns (lat, lon, read at each send: a test may move the doctor)
    every :data:`FIX_INTERVAL_S`, unacknowledged, until cancelled. A send raising one of ``ignore`` is
    skipped; any other error ends the stream."""
    while True:
        await asyncio.sleep(FIX_INTERVAL_S)
        with contextlib.suppress(*ignore):
            lat, lon = where()
            await client.send("location", lat=lat, lon=lon, acc=5, ts=now_ms())


async def come_online(client: TotClient, doctor_id: str, lat: float, lon: float, status: str | None) -> None:
    """What a doctor app does first: connect, follow ``doctor:<id>``, send its position (acknowledged:
    the server has it), then choose ``status`` (None: none, the doctor stays offline)."""
    await client.connect()
    await client.subscribe(f"doctor:{doctor_id}")
    await client.request("location", lat=lat, lon=lon, acc=5, ts=now_ms())
    if status is not None:
        await client.request("doctor.status", status=status)


async def cancel_tasks(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every task given (None: none) and wait for each to end, whatever it raises."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(BaseException):
            await task


@dataclass
class Person:
    """An account: id, role, access token."""

    id: str
    role: Role
    token: str
    email: str


class DoctorChannel:
    """What a doctor app keeps of its private channel ``doctor:<id>``: ``events``, appended by the
    app's reader, which sets ``_changed`` after each (a mixin of the apps' dataclasses)."""

    person: Person
    events: list[Event]
    _changed: asyncio.Event

    @property
    def id(self) -> str:
        return self.person.id

    async def wait_for(
        self,
        event_type: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda d: True,
        timeout: float = 15.0,
    ) -> dict[str, Any]:
        """The data of the first event of ``event_type`` on ``doctor:<id>`` whose data satisfies
        ``predicate`` (already received or next). Raises ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.type == event_type and predicate(event.data):
                    data: dict[str, Any] = event.data  # the client types ``data`` as Any (any JSON)
                    return data
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"doctor {self.id} got no {event_type}; got {[e.type for e in self.events]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


@functools.cache
def shared_password_hash() -> str:
    """One argon2 hash of ``PASSWORD``, made once per test process and given to every account that
    ``hash_once`` creates."""
    return hash_password(PASSWORD)


async def create_people(
    database_url: str, doctors: int, patients: int, *, hash_once: bool = True
) -> list[Person]:
    """Verified doctors (specialty therapist), patients, one dispatcher, one admin, written directly
    through the account code the CLI uses; tokens minted with the test secret.

    ``hash_once`` (the default): every account gets the same argon2 hash of ``PASSWORD``, made once per
    process (one hash costs 0.2 s on a quiet core and up to a second on the loaded CI machine: fifty
    doctors took half a minute of a module's set-up); logging in works the same, only the salts are
    shared. ``False``: a hash of its own for each account."""
    tokens = TokenService(SECRET, 3600, 7200)
    people: list[Person] = []
    engine = make_engine(database_url)
    digest = shared_password_hash() if hash_once else None
    try:
        async with make_sessionmaker(engine).begin() as session:
            plan = [(Role.DOCTOR, i) for i in range(doctors)] + [(Role.PATIENT, i) for i in range(patients)]
            plan += [(Role.DISPATCHER, 0), (Role.ADMIN, 0)]
            for role, i in plan:
                email = f"{role.value}{i}-{uuid.uuid4().hex[:6]}@dispatch.test"
                user, profile = await add_account(
                    session,
                    role=role,
                    full_name=f"{role.value.title()} {i}",
                    password_hash=digest or hash_password(PASSWORD),
                    email=email,
                    licence_number=f"LIC-{uuid.uuid4().hex[:10]}" if role is Role.DOCTOR else None,
                    specialties=["therapist"] if role is Role.DOCTOR else (),
                )
                if profile is not None:
                    await doctor_repo.set_verified(session, profile, True, user.id)
                people.append(Person(str(user.id), role, tokens.issue(user.id, role).access_token, email))
    finally:
        await engine.dispose()
    return people


@dataclass
class Doctor(DoctorChannel):
    """A doctor app: streams a position, keeps every event of its private channel."""

    person: Person
    client: TotClient
    lat: float
    lon: float
    events: list[Event] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _streamer: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, available: bool = True) -> None:
        await come_online(self.client, self.id, self.lat, self.lon, "available" if available else None)
        self._reader = asyncio.create_task(self._read())
        self._streamer = asyncio.create_task(self._stream())

    async def fix(self) -> None:
        """Send the current position now (acknowledged, so it is in the server's pipeline)."""
        await self.client.request("location", lat=self.lat, lon=self.lon, acc=5, ts=now_ms())

    async def _stream(self) -> None:
        await stream_fixes(self.client, lambda: (self.lat, self.lon))

    async def _read(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Event) and event.channel == f"doctor:{self.id}":
                self.events.append(event)
                self._changed.set()

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type == event_type]

    async def stop(self) -> None:
        await cancel_tasks((self._streamer, self._reader))
        await self.client.close()


@dataclass
class City:
    """One or more servers over one database, and the people."""

    servers: list[RunningServer]
    database_url: str
    people: list[Person]
    env: dict[str, str]
    cwd: Path

    @property
    def url(self) -> str:
        return self.servers[0].url

    def of_role(self, role: Role) -> list[Person]:
        return [p for p in self.people if p.role is role]

    @property
    def dispatcher(self) -> Person:
        return self.of_role(Role.DISPATCHER)[0]

    def doctor(self, person: Person, lat: float, lon: float, server: int = 0) -> Doctor:
        return Doctor(person, TotClient(self.servers[server].url, person.token, ping_interval_s=5), lat, lon)

    async def http(
        self, method: str, path: str, who: Person, server: int = 0, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {who.token}", **kwargs.pop("headers", {})}
        async with httpx.AsyncClient(base_url=self.servers[server].url, timeout=30) as client:
            return await client.request(method, path, headers=headers, **kwargs)

    async def create_call(
        self,
        patient: Person,
        lat: float,
        lon: float,
        urgency: str = "urgent",
        key: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "address": "Test street 1",
            "lat": lat,
            "lon": lon,
            "urgency": urgency,
            "specialty": "therapist",
            **extra,
        }
        headers = {"Idempotency-Key": key} if key else {}
        return await self.http("POST", "/v1/calls", patient, json=body, headers=headers)

    async def call(self, call_id: str) -> dict[str, Any]:
        response = await self.http("GET", f"/v1/calls/{call_id}", self.dispatcher)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def wait_status(self, call_id: str, statuses: set[str], timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            call = await self.call(call_id)
            if call["status"] in statuses:
                return call
            if time.monotonic() > deadline:
                raise TimeoutError(f"call {call_id} is {call['status']}, not {statuses}")
            await asyncio.sleep(0.1)


@contextlib.contextmanager
def city(
    cwd: Path,
    *,
    doctors: int,
    patients: int = 3,
    servers: int = 1,
    database_url: str | None = None,
    engine_url: str = "memory://",
    settings: dict[str, str] | None = None,
    hash_once: bool = True,
) -> Iterator[City]:
    """Create the people in a database migrated to head, start ``servers`` processes sharing it.

    ``database_url``: a database the caller made, migrated here to head (in this process: a no-op on a
    copy of :func:`~tests.conftest.create_migrated_pg_database`'s template); by default a copy of the
    process's migrated SQLite template at ``cwd/tot.db``. ``hash_once``: see :func:`create_people`."""
    if database_url is None:
        database_url = migrated_sqlite_url(cwd / "tot.db")
    else:
        migrate.upgrade(database_url)
    env = {
        "TOT_SECRET_KEY": SECRET,
        "TOT_DATABASE_URL": database_url,
        "TOT_ENGINE_URL": engine_url,
        "TOT_ENGINE_PREFIX": f"disp{uuid.uuid4().hex[:8]}:",
        "TOT_LOG_LEVEL": "warning",
        **(settings or {}),
    }
    people = asyncio.run(create_people(database_url, doctors, patients, hash_once=hash_once))
    with contextlib.ExitStack() as stack:
        running = [stack.enter_context(run_server(["serve"], env, cwd)) for _ in range(servers)]
        yield City(running, database_url, people, env, cwd)


async def forget_engine_keys(prefix: str) -> None:
    """Delete the run's keys from the shared test Redis (doctor records carry no TTL)."""
    client = aioredis.Redis.from_url(redis_test_url())
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
    finally:
        await client.aclose()


DEPLOYMENTS = ("embedded", "scale-out")
"""The two deployments a module-scoped ``world`` fixture is parametrized over (:func:`deployed_city`)."""


@contextlib.contextmanager
def deployed_city(
    deployment: str,
    cwd: Path,
    *,
    doctors: int,
    patients: int,
    settings: dict[str, str],
    prefix: str,
) -> Iterator[City]:
    """A :func:`city` on ``deployment``: ``embedded`` (one server, the memory engine, SQLite) or
    ``scale-out`` (two servers sharing Redis and a fresh PostgreSQL database named after ``prefix``,
    dropped afterwards with the engine's keys). Raises ``ValueError`` for another name."""
    if deployment == "embedded":
        with city(cwd, doctors=doctors, patients=patients, settings=settings) as c:
            yield c
        return
    if deployment != "scale-out":
        raise ValueError(f"unknown deployment {deployment!r}")
    database_url = asyncio.run(create_migrated_pg_database(prefix))
    try:
        with city(
            cwd,
            doctors=doctors,
            patients=patients,
            servers=2,
            database_url=database_url,
            engine_url=redis_test_url(),
            settings=settings,
        ) as c:
            try:
                yield c
            finally:
                asyncio.run(forget_engine_keys(c.env["TOT_ENGINE_PREFIX"]))
    finally:
        asyncio.run(drop_pg_database(database_url))
