"""What the console reads, without a browser: the page, the map cells of a view, the ranked doctors for
a call, and the map channels' per-cell batches, on one process and on two processes sharing Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from geo.map_cells import cell_of
from models.enums import Role
from realtime.client import Event, TotClient
from tests.conftest import create_migrated_pg_database, drop_pg_database, redis_test_url
from tests.e2e.dispatch_world import CENTRE, City, Doctor, city, forget_engine_keys, offset

TILE_URL = "https://tiles.example.org/{z}/{x}/{y}.png"
SETTINGS = {"TOT_MAP_FEED_INTERVAL_MS": "200", "TOT_CONSOLE_TILE_URL": TILE_URL}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with city(tmp_path_factory.mktemp("console-api"), doctors=4, patients=1, settings=SETTINGS) as c:
        yield c


class MapWatcher:
    """A dispatcher's socket on map channels, keeping every ``map.doctors`` frame with its arrival."""

    def __init__(self, url: str, token: str) -> None:
        self.client = TotClient(url, token)
        self.frames: list[tuple[float, dict[str, object]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, *cells: str) -> None:
        await self.client.connect()
        for cell in cells:
            await self.client.subscribe(f"map:{cell}")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Event) and event.type == "map.doctors":
                self.frames.append((time.monotonic(), event.data))

    def doctors(self, cell: str) -> list[str] | None:
        """The doctor ids of the cell's latest frame (None before the first)."""
        for _, data in reversed(self.frames):
            if data["cell"] == cell:
                return [entry[0] for entry in data["doctors"]]  # type: ignore[attr-defined]
        return None

    async def until(self, cell: str, predicate: object, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            ids = self.doctors(cell)
            if ids is not None and predicate(ids):  # type: ignore[operator]
                return ids
            if time.monotonic() > deadline:
                raise TimeoutError(f"map:{cell} shows {ids}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        await self.client.close()


async def test_the_page_carries_its_settings_and_a_strict_policy(world: City) -> None:
    page = await world.http("GET", "/console", world.dispatcher)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    block = page.text.split('id="console-config">', 1)[1].split("</script>", 1)[0]
    config = orjson.loads(block)
    assert config["tileUrl"] == TILE_URL and config["mapResolution"] == 6
    script = await world.http("GET", "/console/static/js/main.js", world.dispatcher)
    assert script.status_code == 200 and "import" in script.text
    leaflet = await world.http("GET", "/static/vendor/leaflet/leaflet-src.esm.js", world.dispatcher)
    assert leaflet.status_code == 200


async def test_the_shared_translations_and_modules_are_served(world: City) -> None:
    for lang, word in (("en", "Work queue"), ("ru", "Очередь вызовов")):
        answer = await world.http("GET", f"/static/i18n/{lang}.json", world.dispatcher)
        assert answer.status_code == 200 and answer.json()["console.queue.title"] == word
    module = await world.http("GET", "/static/shared/i18n.js", world.dispatcher)
    assert module.status_code == 200 and "export function t(" in module.text
    assert module.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert (await world.http("GET", "/static/console/index.html", world.dispatcher)).status_code == 404


async def test_the_extent_of_the_live_doctors(world: City) -> None:
    """Before any doctor of this module is live (the tests run in file order): nothing; then the box
    around the live doctors, whatever their status."""
    empty = await world.http("GET", "/v1/map/extent", world.dispatcher)
    assert empty.status_code == 200 and empty.json() == {"doctors": 0, "bbox": None}
    people = world.of_role(Role.DOCTOR)[:2]
    places = [offset(*CENTRE, -1_000, -2_000), offset(*CENTRE, 3_000, 500)]
    apps = [world.doctor(p, *place) for p, place in zip(people, places, strict=True)]
    for app in apps:
        await app.start(available=False)
    try:
        extent = (await world.http("GET", "/v1/map/extent", world.dispatcher)).json()
        assert extent["doctors"] == 2
        west, south, east, north = extent["bbox"]
        assert (south, west) == pytest.approx(places[0], abs=1e-5)
        assert (north, east) == pytest.approx(places[1], abs=1e-5)
        patient = world.of_role(Role.PATIENT)[0]
        assert (await world.http("GET", "/v1/map/extent", patient)).status_code == 403
    finally:
        for app in apps:
            await app.stop()


async def test_map_cells_of_a_view(world: City) -> None:
    south, west = offset(*CENTRE, -2_000, -2_000)
    north, east = offset(*CENTRE, 2_000, 2_000)
    bbox = f"{west},{south},{east},{north}"
    answer = await world.http("GET", f"/v1/map/cells?bbox={bbox}", world.dispatcher)
    assert answer.status_code == 200
    assert answer.json()["resolution"] == 6 and cell_of(*CENTRE) in answer.json()["cells"]
    patient = world.of_role(Role.PATIENT)[0]
    assert (await world.http("GET", f"/v1/map/cells?bbox={bbox}", patient)).status_code == 403
    wide = await world.http("GET", "/v1/map/cells?bbox=20,40,50,60", world.dispatcher)
    assert wide.status_code == 422 and wide.json()["error"]["code"] == "too_many_cells"
    bad = await world.http("GET", "/v1/map/cells?bbox=1,2,3", world.dispatcher)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "bbox"


async def test_candidates_are_the_nearest_available_doctors(world: City) -> None:
    people = world.of_role(Role.DOCTOR)
    apps = [
        world.doctor(p, *offset(*CENTRE, 0, east))
        for p, east in zip(people, (3_000, 1_000, 2_000, 500), strict=True)
    ]
    for app in apps[:3]:
        await app.start()
    await apps[3].start(available=False)  # the nearest, but not available
    try:
        patient = world.of_role(Role.PATIENT)[0]
        call = (await world.create_call(patient, *CENTRE, specialty="pediatrician")).json()
        await world.wait_status(call["id"], {"escalated"})
        path = f"/v1/calls/{call['id']}/candidates"
        same = await world.http("GET", path, world.dispatcher)
        assert same.status_code == 200 and same.json()["items"] == []  # nobody is a pediatrician
        ranked = (await world.http("GET", f"{path}?any_specialty=true&limit=2", world.dispatcher)).json()
        assert [c["doctor_id"] for c in ranked["items"]] == [apps[1].id, apps[2].id]
        first = ranked["items"][0]
        assert 990 < first["distance_m"] < 1_010 and first["eta_s"] == round(
            first["distance_m"] * 1.4 / 8.333
        )
        assert first["name"] == "Doctor 1" and first["serves_zone"] and first["specialties"] == ["therapist"]
        assert (await world.http("GET", path, patient)).status_code == 403
        missing = await world.http(
            "GET", "/v1/calls/00000000-0000-0000-0000-000000000000/candidates", world.dispatcher
        )
        assert missing.status_code == 404
        assert (await world.http("GET", f"{path}?limit=0", world.dispatcher)).status_code == 422
    finally:
        for app in apps:
            await app.stop()


async def test_a_map_channel_gets_one_batch_per_tick_with_every_doctor_of_its_cell(world: City) -> None:
    here = cell_of(*CENTRE)
    people = world.of_role(Role.DOCTOR)[:2]
    apps = [world.doctor(p, *offset(*CENTRE, north, 0)) for p, north in zip(people, (0, 200), strict=True)]
    watcher = MapWatcher(world.url, world.dispatcher.token)
    for app in apps:
        await app.start()
    try:
        await watcher.start(here)
        # (doctors of the tests before may still be in the index: their positions live a while)
        await watcher.until(here, lambda ids: {a.id for a in apps} <= set(ids))
        # Two doctors streaming once a second each, five ticks a second: at most one frame per tick,
        # and only when something changed.
        watcher.frames.clear()
        await asyncio.sleep(2.0)
        assert 1 <= len(watcher.frames) <= 2.0 / 0.2 + 1
        # A doctor driving out of the cell disappears from its batch.
        away = next(d for d in range(2_000, 40_000, 1_000) if cell_of(*offset(*CENTRE, d, 0)) != here)
        apps[1].lat, apps[1].lon = offset(*CENTRE, away + 2_000, 0)
        await watcher.until(here, lambda ids: apps[0].id in ids and apps[1].id not in ids)
    finally:
        await watcher.stop()
        for app in apps:
            await app.stop()


def test_two_processes_on_redis_each_serve_their_own_map_subscribers(tmp_path: Path) -> None:
    database_url = asyncio.run(create_migrated_pg_database("tot_console"))
    prefix = ""
    try:
        with city(
            tmp_path,
            doctors=1,
            patients=0,
            servers=2,
            database_url=database_url,
            engine_url=redis_test_url(),
            settings={"TOT_MAP_FEED_INTERVAL_MS": "200"},
            hash_once=True,
        ) as world:
            prefix = world.env["TOT_ENGINE_PREFIX"]
            asyncio.run(_two_processes(world))
    finally:
        if prefix:
            asyncio.run(forget_engine_keys(prefix))
        asyncio.run(drop_pg_database(database_url))


async def _two_processes(world: City) -> None:
    here = cell_of(*CENTRE)
    doctor: Doctor = world.doctor(world.of_role(Role.DOCTOR)[0], *CENTRE, server=0)
    watchers = [MapWatcher(server.url, world.dispatcher.token) for server in world.servers]
    await doctor.start()
    try:
        for watcher in watchers:
            await watcher.start(here)
        for watcher in watchers:  # the doctor's fixes reach process 0; both processes show them
            assert await watcher.until(here, lambda ids: ids == [doctor.id])
        # The live doctors' extent is read from Redis, by either process (a box over the whole world).
        extent = (await world.http("GET", "/v1/map/extent", world.dispatcher, server=1)).json()
        assert extent["doctors"] == 1
        assert extent["bbox"] == pytest.approx([CENTRE[1], CENTRE[0], CENTRE[1], CENTRE[0]], abs=1e-5)
        doctor.lat, doctor.lon = offset(*CENTRE, 300, 0)
        for watcher in watchers:
            await watcher.until(here, lambda ids: True)
        # Each subscriber gets at most one frame per tick: no process forwards its batches to another.
        for watcher in watchers:
            watcher.frames.clear()
        await asyncio.sleep(2.0)
        for watcher in watchers:
            assert 1 <= len(watcher.frames) <= 2.0 / 0.2 + 1
    finally:
        for watcher in watchers:
            await watcher.stop()
        await doctor.stop()
