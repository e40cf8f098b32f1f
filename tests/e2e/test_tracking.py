"""Live tracking end to end: real server processes, the doctor and the patients as WebSocket clients.

Only the call's patient (and staff) may follow ``call:<id>``; the patient gets ``doctor.position``
with the distance and ETA to the call; nothing after the visit completes. The route comes from the
breadcrumbs that came through the socket, on SQLite with the memory engine and on PostgreSQL/PostGIS
with Redis, and its length is the geodesic length of the points streamed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from geo.distance import haversine_m
from geo.route import route_length_m
from models.enums import Role
from realtime.client import ClientError, Event, TotClient
from tests.conftest import create_migrated_pg_database, drop_pg_database, redis_test_url
from tests.e2e.dispatch_world import CENTRE, City, Person, city, forget_engine_keys, offset

ROAD_FACTOR, SPEED_KMH = 1.5, 36.0  # not the defaults: the positions must use the configured model
SETTINGS = {
    "TOT_ROAD_FACTOR": str(ROAD_FACTOR),
    "TOT_ETA_SPEED_KMH": str(SPEED_KMH),
    # Positions forwarded 5 times a second: any position the server would still forward after the
    # visit (from the doctor's state cached up to 2 s) shows within the 3.5 s watched after it.
    "TOT_POSITION_FORWARD_INTERVAL_MS": "200",
}


def now_ms() -> int:
    return int(time.time() * 1000)


class App:
    """A WebSocket client that keeps every event it receives, in order."""

    def __init__(self, world: City, person: Person) -> None:
        self.person = person
        self.client = TotClient(world.url, person.token, ping_interval_s=5)
        self.events: list[Event] = []
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self, *channels: str) -> None:
        await self.client.connect()
        for channel in channels:
            await self.client.subscribe(channel)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Event):
                self.events.append(event)
                self._changed.set()

    async def wait_for(
        self,
        event_type: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda d: True,
        timeout: float = 15,
    ) -> dict[str, Any]:
        """The first ``event_type`` event whose data satisfies ``predicate`` (received or next)."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event.type == event_type and predicate(event.data):
                        return dict(event.data)
                self._changed.clear()
                await self._changed.wait()

    async def fix(self, lat: float, lon: float, ts: int | None = None) -> None:
        """One location frame, acknowledged (so the server has taken it)."""
        await self.client.request("location", lat=lat, lon=lon, acc=5, ts=now_ms() if ts is None else ts)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        await self.client.close()


async def assigned_call(world: City, doctor: App, patient: Person, place: tuple[float, float]) -> str:
    """``patient`` calls at ``place``; ``doctor`` (started on its channel, with a fix sent) accepts."""
    await doctor.client.request("doctor.status", status="available")
    await asyncio.sleep(0.3)
    call_id: str = (await world.create_call(patient, *place)).json()["id"]
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    await doctor.client.request("offer.accept", offer=offer["offer"])
    return call_id


async def move(world: City, who: Person, call_id: str, status: str) -> None:
    response = await world.http("POST", f"/v1/calls/{call_id}/status", who, json={"status": status})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("tracking"), doctors=2, patients=2, settings=SETTINGS) as c:
        yield c


async def test_only_the_calls_patient_sees_the_doctor_with_an_eta_until_completion(world: City) -> None:
    doctor_person, stranger_doctor = world.of_role(Role.DOCTOR)
    patient, other_patient = world.of_role(Role.PATIENT)
    doctor = App(world, doctor_person)
    await doctor.start(f"doctor:{doctor_person.id}")
    start = offset(*CENTRE, -1_200)
    await doctor.fix(*start)
    watcher = App(world, patient)
    streaming = asyncio.Event()
    here = [start]  # where the doctor is now

    async def stream() -> None:  # the doctor's app: a fix every 0.15 s while ``streaming`` is set
        while True:
            await streaming.wait()
            await doctor.fix(*here[0])
            await asyncio.sleep(0.15)

    streamer = asyncio.create_task(stream())
    try:
        call_id = await assigned_call(world, doctor, patient, CENTRE)
        channel = f"call:{call_id}"
        for outsider in (other_patient, stranger_doctor):
            app = TotClient(world.url, outsider.token)
            await app.connect()
            try:
                with pytest.raises(ClientError) as refused:
                    await app.subscribe(channel)
                assert refused.value.code == "forbidden"
            finally:
                await app.close()
        await watcher.start(channel)
        streaming.set()

        far = await watcher.wait_for("doctor.position", lambda d: d["doctor"] == doctor_person.id)
        distance = haversine_m(*start, *CENTRE)
        assert math.isclose(far["distance_m"], distance, abs_tol=0.1), far
        assert far["eta_s"] == round(distance * ROAD_FACTOR / (SPEED_KMH / 3.6))  # 180 s for 1.2 km
        assert (far["lat"], far["lon"], far["acc"]) == (*start, 5)
        await move(world, doctor_person, call_id, "en_route")
        here[0] = offset(*CENTRE, -300)
        near = await watcher.wait_for("doctor.position", lambda d: d["distance_m"] < 400)
        assert near["eta_s"] == round(near["distance_m"] * ROAD_FACTOR / (SPEED_KMH / 3.6)) < far["eta_s"]
        for status in ("arrived", "in_progress"):
            await move(world, doctor_person, call_id, status)
        with pytest.raises(ClientError) as busy:
            await doctor.client.request("doctor.status", status="paused")
        assert busy.value.code == "forbidden"  # on a call

        # Quiet for a moment, so that no position is on its way (positions go out within a 25 ms
        # tick), then the visit completes. Short: the doctor's cached state (read every 2 s) must
        # still say "busy", so it is the call's end event that stops the tracking.
        streaming.clear()
        await asyncio.sleep(0.4)
        await move(world, doctor_person, call_id, "completed")
        await watcher.wait_for("call.status", lambda d: d["status"] == "completed")
        streaming.set()  # the app keeps streaming after the visit: nothing of it reaches the patient
        await asyncio.sleep(3.5)  # more than the forwarding interval and the state cache (0.2 s, 2 s)
        events = [e for e in watcher.events if e.channel == channel]
        done = next(
            i for i, e in enumerate(events) if e.type == "call.status" and e.data["status"] == "completed"
        )
        assert "doctor.position" in [e.type for e in events[:done]]
        assert "doctor.position" not in [e.type for e in events[done:]], [e.type for e in events]
        # The doctor is free again: a pause is allowed now (it was refused while busy).
        assert (await doctor.client.request("doctor.status", status="paused"))["status"] == "paused"
    finally:
        streamer.cancel()
        with contextlib.suppress(BaseException):
            await streamer
        await watcher.stop()
        await doctor.stop()


# --- the route from streamed breadcrumbs, on both databases -----------------------------------------


def drive(begin: tuple[float, float], n: int) -> list[tuple[float, float]]:
    """A drive of ``n`` points, ~30 m apart: north, with a swerve east and back every few points."""
    points = []
    for i in range(n):
        east = (0, 12, 20, 12)[i % 4]
        points.append(offset(*begin, 30.0 * i, east))
    return points


async def streamed_route(world: City) -> None:
    doctor_person = world.of_role(Role.DOCTOR)[0]
    patient = world.of_role(Role.PATIENT)[0]
    begin = offset(*CENTRE, -900)
    points = drive(begin, 25)
    t0 = now_ms() - 40_000  # fix times 1 s apart, in the past, the first still fresh for the search
    doctor = App(world, doctor_person)
    watcher = App(world, patient)
    await doctor.start(f"doctor:{doctor_person.id}")
    await doctor.fix(*begin, ts=t0)
    try:
        call_id = await assigned_call(world, doctor, patient, CENTRE)
        await watcher.start(f"call:{call_id}")
        # The route starts with the first position the patient sees (the server then knows the call);
        # from there every fix, one second apart in fix time, is a breadcrumb.
        first = None
        for i, point in enumerate(points):
            await doctor.fix(*point, ts=t0 + 1_000 * (i + 1))
            await asyncio.sleep(0.15)  # under the server's location rate limit (10 a second)
            if first is None:
                try:
                    seen = await watcher.wait_for("doctor.position", timeout=0.3)
                except TimeoutError:
                    continue
                first = (seen["ts"] - t0) // 1_000 - 1
                assert first >= 0 and (seen["lat"], seen["lon"]) == points[first]
        assert first is not None and first < 15, "tracking did not start"
        expected = points[first:]
        for status in ("en_route", "arrived", "in_progress", "completed"):
            await move(world, doctor_person, call_id, status)
        await watcher.wait_for("call.status", lambda d: d["status"] == "completed")
        for i in range(3):  # after the visit: not part of the route
            await doctor.fix(*offset(*CENTRE, 100.0 * i), ts=t0 + 1_000 * (len(points) + 1 + i))

        route: dict[str, Any] = {}
        async with asyncio.timeout(15):
            while True:  # breadcrumbs are written within a second, in batches
                response = await world.http("GET", f"/v1/calls/{call_id}/route", patient)
                assert response.status_code == 200, response.text
                route = response.json()
                if route["properties"]["points"] >= len(expected):
                    break
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.5)  # would the fixes after the visit come in too?
        route = (await world.http("GET", f"/v1/calls/{call_id}/route", patient)).json()
        assert route["geometry"]["coordinates"] == [[lon, lat] for lat, lon in expected]
        length = route["properties"]["length_m"]
        assert math.isclose(length, route_length_m(expected), abs_tol=0.01), (route["properties"], expected)
        assert 600 < length < 1_000  # 24 legs of ~30 m and the swerves
        postgres = world.database_url.startswith("postgresql")
        assert route["properties"]["measured_by"] == ("postgis" if postgres else "geographiclib")
        assert route["properties"]["started_at"] == t0 + 1_000 * (first + 1)
        other = world.of_role(Role.DOCTOR)[1]
        assert (await world.http("GET", f"/v1/calls/{call_id}/route", other)).status_code == 404
    finally:
        await watcher.stop()
        await doctor.stop()


@pytest.mark.parametrize("backend", ["sqlite+memory", "postgresql+redis"])
def test_route_length_from_streamed_breadcrumbs(backend: str, tmp_path: Path) -> None:
    postgres = backend == "postgresql+redis"
    database_url = asyncio.run(create_migrated_pg_database("tot_track")) if postgres else None
    prefix = ""
    try:
        with city(
            tmp_path,
            doctors=2,
            patients=1,
            database_url=database_url,
            engine_url=redis_test_url() if postgres else "memory://",
        ) as world:
            prefix = world.env["TOT_ENGINE_PREFIX"]
            asyncio.run(streamed_route(world))
    finally:
        if postgres:
            if prefix:
                asyncio.run(forget_engine_keys(prefix))
            assert database_url is not None
            asyncio.run(drop_pg_database(database_url))
