"""The map feed on the real memory engine: one batch per watched cell per tick, complete lists,
nothing for unchanged cells, a frame for a new subscriber, scattered cells read one by one; and the
cells that cover a view."""

from __future__ import annotations

from typing import Any

import h3
import orjson
import pytest

from geo.location_index import DoctorPosition
from geo.location_index_memory import MemoryLocationIndex
from geo.map_cells import TooManyCells, cell_box, cell_of, cells_covering
from realtime.broker_memory import MemoryBroker
from realtime.hub import Hub
from realtime.map_feed import KEYFRAME_TICKS, MapFeed
from realtime.send_queue import SendQueue
from realtime.session import Session

CENTRE = (55.7558, 37.6173)
NOW = 1_732_200_000_000


def fix(doctor: str, lat: float, lon: float) -> DoctorPosition:
    return DoctorPosition(doctor, lat, lon, 5.0, NOW)


async def drain(send_queue: SendQueue) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while len(send_queue):
        items.extend(orjson.loads(f) for f in await send_queue.get())
    return [i for i in items if i.get("op") == "event"]


async def watch(hub: Hub, broker: MemoryBroker, cell: str, name: str = "s") -> tuple[Session, SendQueue]:
    send_queue = SendQueue()
    session = Session(name, broker, send_queue, lambda: None)
    channel = f"map:{cell}"
    session.begin(channel)
    await hub.add(channel, session)
    await session.start(channel, None, ref=None)
    await drain(send_queue)  # the "subscribed" answer
    return session, send_queue


@pytest.fixture
def engine() -> tuple[MemoryLocationIndex, MemoryBroker, Hub, MapFeed]:
    index = MemoryLocationIndex(clock=lambda: NOW)
    broker = MemoryBroker(clock=lambda: NOW)
    hub = Hub(broker)
    return index, broker, hub, MapFeed(index, hub, clock=lambda: NOW)


async def test_one_complete_batch_per_watched_cell_and_none_when_nothing_changed(
    engine: tuple[MemoryLocationIndex, MemoryBroker, Hub, MapFeed],
) -> None:
    index, broker, hub, feed = engine
    here = cell_of(*CENTRE)
    neighbour = next(c for c in h3.grid_ring(here, 2))
    nlat, nlon = h3.cell_to_latlng(neighbour)
    near = (CENTRE[0] + 0.001, CENTRE[1])
    await index.upsert_many([fix("a", *CENTRE), fix("b", *near), fix("far", nlat, nlon)])
    assert cell_of(*near) == here
    _, send_queue = await watch(hub, broker, here)
    assert await feed.tick() == 1
    [frame] = await drain(send_queue)
    assert frame["ch"] == f"map:{here}" and frame["type"] == "map.doctors" and "offset" not in frame
    assert frame["data"]["cell"] == here and frame["data"]["t"] == NOW
    assert [d[0] for d in frame["data"]["doctors"]] == ["a", "b"]  # the unwatched cell's doctor is not sent
    assert frame["data"]["doctors"][0] == ["a", 55.7558, 37.6173, "offline", NOW]

    assert await feed.tick() == 0  # nothing moved
    assert await drain(send_queue) == []

    await index.upsert(DoctorPosition("b", nlat, nlon, 5.0, NOW + 1))  # b leaves the cell
    assert await feed.tick() == 1
    [frame] = await drain(send_queue)
    assert [d[0] for d in frame["data"]["doctors"]] == ["a"]


async def test_a_new_subscriber_gets_the_cell_at_the_next_tick_and_unchanged_cells_repeat_now_and_then(
    engine: tuple[MemoryLocationIndex, MemoryBroker, Hub, MapFeed],
) -> None:
    index, broker, hub, feed = engine
    here = cell_of(*CENTRE)
    await index.upsert(fix("a", *CENTRE))
    _, first = await watch(hub, broker, here, "first")
    await feed.tick()
    assert len(await drain(first)) == 1
    _, second = await watch(hub, broker, here, "second")
    assert await feed.tick() == 1
    assert len(await drain(second)) == 1
    for _ in range(KEYFRAME_TICKS - 1):
        assert await feed.tick() == 0
    assert await feed.tick() == 1  # the keyframe: a lost frame is repaired


async def test_scattered_cells_are_read_one_by_one_and_an_empty_cell_gets_an_empty_list(
    engine: tuple[MemoryLocationIndex, MemoryBroker, Hub, MapFeed],
) -> None:
    index, broker, hub, feed = engine
    moscow, paris = cell_of(*CENTRE), cell_of(48.8566, 2.3522)
    await index.upsert_many([fix("m", *CENTRE), fix("p", 48.8566, 2.3522)])
    calls: list[tuple[float, ...]] = []
    within_box = index.within_box

    async def spy(*box: float, **kwargs: Any) -> Any:
        calls.append(box)
        return await within_box(*box, **kwargs)

    index.within_box = spy  # type: ignore[method-assign]
    _, m_out = await watch(hub, broker, moscow, "m")
    _, p_out = await watch(hub, broker, paris, "p")
    assert await feed.tick() == 2
    assert sorted(calls) == sorted([cell_box(moscow), cell_box(paris)])
    assert [d[0] for d in (await drain(m_out))[0]["data"]["doctors"]] == ["m"]
    assert [d[0] for d in (await drain(p_out))[0]["data"]["doctors"]] == ["p"]

    empty = next(c for c in h3.grid_ring(moscow, 3))
    _, e_out = await watch(hub, broker, empty, "e")
    calls.clear()
    await feed.tick()
    assert len(calls) == 3  # still scattered: each cell's own box
    assert (await drain(e_out))[0]["data"]["doctors"] == []


def test_the_cells_covering_a_view() -> None:
    box = (55.70, 37.50, 55.80, 37.70)  # south, west, north, east
    cells = cells_covering(box, 300)
    assert cell_of(*CENTRE) in cells and cells == sorted(cells)
    for cell in cells:  # every cell touches the box ...
        s, w, n, e = cell_box(cell)
        assert s <= box[2] and box[0] <= n and w <= box[3] and box[1] <= e
    for lat in (55.70, 55.75, 55.80):  # ... and every point of the box is in one of them
        for lon in (37.50, 37.55, 37.6, 37.65, 37.70):
            assert cell_of(lat, lon) in cells
    point = cells_covering((55.7558, 37.6173, 55.7558, 37.6173), 300)  # a box smaller than a cell
    assert cell_of(*CENTRE) in point and len(point) <= 7
    with pytest.raises(TooManyCells):
        cells_covering((40.0, 20.0, 60.0, 50.0), 300)
    with pytest.raises(TooManyCells):
        cells_covering(box, 5)
    with pytest.raises(ValueError):
        cells_covering((56.0, 37.0, 55.0, 38.0), 300)
