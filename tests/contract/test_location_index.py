"""Contract of LocationIndex, run against the memory and the Redis implementation.

The nearest search is checked against a brute-force haversine scan over random doctors (ids and order
exactly, distances to 1e-6 relative), before and after moves, state and specialty changes and removals.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass

import pytest
from redis.crc import key_slot

from geo.cells import cell_hex, index_cells
from geo.distance import haversine_m
from geo.location_index import DoctorPosition, NearbyDoctor
from models.enums import DoctorStatus
from tests.contract.live_engine import (  # noqa: F401 - fixtures register by import
    Live,
    LiveFactory,
    live_fixture,
    make_live_fixture,
    redis_pair_fixture,
)

S = DoctorStatus
CENTRE = (55.7539, 37.6208)  # Moscow, Red Square
SPECIALTIES = ["therapist", "pediatrician", "neurologist", "cardiologist", "surgeon"]


def pos(doctor_id: str, lat: float, lon: float, ts: int, **extra: float) -> DoctorPosition:
    return DoctorPosition(doctor_id, lat, lon, 5.0, ts, **extra)


async def put(
    live: Live,
    doctor_id: str,
    lat: float,
    lon: float,
    *,
    status: DoctorStatus = S.AVAILABLE,
    specialties: tuple[str, ...] = ("therapist",),
    ts: int | None = None,
) -> None:
    """Position, specialties and status of one doctor (status reached through DoctorStates)."""
    await live.index.upsert(pos(doctor_id, lat, lon, live.clock() if ts is None else ts))
    await live.index.set_specialties(doctor_id, specialties)
    await set_status(live, doctor_id, status)


async def set_status(live: Live, doctor_id: str, status: DoctorStatus) -> None:
    current = await live.states.get(doctor_id)
    if current.status == status:
        return
    if status == S.OFFERED and current.status != S.AVAILABLE:
        await set_status(live, doctor_id, S.AVAILABLE)
    ref = f"ref-{doctor_id}" if status in (S.OFFERED, S.BUSY) else None
    expected = S.AVAILABLE if status == S.OFFERED else list(S)
    result = await live.states.compare_and_set(doctor_id, expected=expected, new=status, ref=ref)
    assert result.ok


def ids(hits: list[NearbyDoctor]) -> list[str]:
    return [h.doctor_id for h in hits]


# --- positions --------------------------------------------------------------------------------------


async def test_get_unknown_is_none(live: Live) -> None:
    assert await live.index.get("nobody") is None


async def test_upsert_get_round_trip_keeps_every_field(live: Live) -> None:
    full = DoctorPosition("d1", 55.123456789012, 37.987654321098, 7.5, 1_750_000_000_123, 359.5, 12.25)
    bare = DoctorPosition("d2", -33.9, 151.2, 0.0, 1_750_000_000_000)
    assert await live.index.upsert(full)
    assert await live.index.upsert(bare)
    assert await live.index.get("d1") == full
    assert await live.index.get("d2") == bare


async def test_int_coordinates_are_normalized(live: Live) -> None:
    await live.index.upsert(DoctorPosition("d1", 55, 37, 5, 10))
    got = await live.index.get("d1")
    assert got == DoctorPosition("d1", 55.0, 37.0, 5.0, 10)
    assert got is not None and isinstance(got.lat, float) and isinstance(got.accuracy_m, float)


async def test_older_fix_is_ignored_newer_or_equal_replaces(live: Live) -> None:
    now = live.clock()
    assert await live.index.upsert(pos("d1", 55.70, 37.60, now))
    assert not await live.index.upsert(pos("d1", 55.80, 37.70, now - 1))
    assert (await live.index.get("d1")) == pos("d1", 55.70, 37.60, now)
    assert await live.index.upsert(pos("d1", 55.71, 37.61, now))
    assert await live.index.upsert(pos("d1", 55.72, 37.62, now + 5))
    assert (await live.index.get("d1")) == pos("d1", 55.72, 37.62, now + 5)


async def test_upsert_many_applies_in_order_and_counts(live: Live) -> None:
    now = live.clock()
    batch = [
        pos("a", 55.70, 37.60, now),
        pos("b", 55.71, 37.61, now),
        pos("a", 55.75, 37.65, now + 10),  # newer: wins
        pos("b", 55.79, 37.69, now - 10),  # older than the first b: ignored
    ]
    assert await live.index.upsert_many(batch) == 3
    assert await live.index.get("a") == batch[2]
    assert await live.index.get("b") == batch[1]
    assert await live.index.upsert_many([]) == 0


async def test_upsert_many_validates_the_whole_batch_first(live: Live) -> None:
    now = live.clock()
    with pytest.raises(ValueError):
        await live.index.upsert_many([pos("a", 55.7, 37.6, now), pos("b", 91.0, 37.6, now)])
    assert await live.index.get("a") is None


async def test_large_batch(live: Live) -> None:
    rnd = random.Random(3)
    now = live.clock()
    batch = [pos(f"d{i}", 55.6 + rnd.random() * 0.3, 37.4 + rnd.random() * 0.4, now) for i in range(2_500)]
    assert await live.index.upsert_many(batch) == 2_500
    assert await live.index.get("d2499") == batch[-1]
    assert await live.index.get("d0") == batch[0]


async def test_remove(live: Live) -> None:
    await put(live, "d1", 55.75, 37.62)
    assert ids(await live.index.nearest_available(55.75, 37.62, radius_m=100)) == ["d1"]
    assert await live.index.remove("d1")
    assert await live.index.get("d1") is None
    assert await live.index.nearest_available(55.75, 37.62, radius_m=100) == []
    assert await live.index.within_box(55.0, 37.0, 56.0, 38.0) == []
    assert not await live.index.remove("d1")
    # Status and specialties survive; a new position makes the doctor a candidate again.
    assert (await live.states.get("d1")).status == S.AVAILABLE
    await live.index.upsert(pos("d1", 55.75, 37.62, live.clock()))
    assert ids(await live.index.nearest_available(55.75, 37.62, radius_m=100, specialty="therapist")) == [
        "d1"
    ]


@pytest.mark.parametrize(
    "bad",
    [
        DoctorPosition("d1", 85.1, 37.0, 5.0, 1),
        DoctorPosition("d1", 55.0, 180.5, 5.0, 1),
        DoctorPosition("d1", math.nan, 37.0, 5.0, 1),
        DoctorPosition("d1", 55.0, 37.0, -1.0, 1),
        DoctorPosition("d1", 55.0, 37.0, 5.0, -1),
        DoctorPosition("d1", 55.0, 37.0, 5.0, 1.5),  # type: ignore[arg-type]
        DoctorPosition("d1", 55.0, 37.0, 5.0, 1, heading_deg=360.0),
        DoctorPosition("d1", 55.0, 37.0, 5.0, 1, speed_mps=-0.1),
        DoctorPosition("bad id", 55.0, 37.0, 5.0, 1),
        DoctorPosition("x" * 65, 55.0, 37.0, 5.0, 1),
    ],
)
async def test_invalid_positions_are_refused(live: Live, bad: DoctorPosition) -> None:
    with pytest.raises(ValueError):
        await live.index.upsert(bad)


async def test_position_expires_after_ttl_and_sweep_reclaims(make_live: LiveFactory) -> None:
    live = make_live(position_ttl_ms=400)
    await put(live, "gone", 55.75, 37.62)
    await put(live, "kept", 55.751, 37.62)
    await live.elapse(250)
    await live.index.upsert(pos("kept", 55.751, 37.62, live.clock()))
    await live.elapse(250)
    assert await live.index.get("gone") is None
    assert await live.index.get("kept") is not None
    hits = await live.index.nearest_available(55.75, 37.62, radius_m=1_000, max_age_ms=10**9)
    assert ids(hits) == ["kept"]
    assert [m.position.doctor_id for m in await live.index.within_box(55.0, 37.0, 56.0, 38.0)] == ["kept"]
    assert await live.index.sweep() == 1
    assert await live.index.sweep() == 0
    if live.redis is not None and live.keys is not None:
        assert await live.redis.zscore(live.keys.loc_geo(), "gone") is None
        cells = index_cells(55.75, 37.62)
        assert not await live.redis.sismember(live.keys.loc_available(cell_hex(cells[0])), "gone")
    # The doctor comes back: a candidate again, in the same cell as before.
    await live.index.upsert(pos("gone", 55.75, 37.62, live.clock()))
    hits = await live.index.nearest_available(55.75, 37.62, radius_m=1_000)
    assert ids(hits) == ["gone", "kept"]


async def test_returning_after_expiry_without_sweep_is_a_candidate_again(make_live: LiveFactory) -> None:
    live = make_live(position_ttl_ms=300)
    await put(live, "d1", 55.75, 37.62)
    await live.elapse(400)
    assert await live.index.nearest_available(55.75, 37.62, radius_m=1_000) == []
    await live.index.upsert(pos("d1", 55.75, 37.62, live.clock()))
    assert ids(await live.index.nearest_available(55.75, 37.62, radius_m=1_000)) == ["d1"]
    await live.index.upsert(pos("d1", 55.80, 37.70, live.clock()))  # moves to other cells
    assert await live.index.nearest_available(55.75, 37.62, radius_m=1_000) == []
    assert ids(await live.index.nearest_available(55.80, 37.70, radius_m=1_000)) == ["d1"]


# --- nearest available ------------------------------------------------------------------------------


async def test_nearest_filters_by_status_specialty_radius_and_sorts(live: Live) -> None:
    lat, lon = CENTRE
    await put(live, "near-therapist", lat + 0.001, lon)  # ~111 m
    await put(live, "mid-both", lat + 0.003, lon, specialties=("therapist", "pediatrician"))  # ~334 m
    await put(live, "far-pediatrician", lat + 0.010, lon, specialties=("pediatrician",))  # ~1.1 km
    await put(live, "busy", lat + 0.0005, lon, status=S.BUSY)
    await put(live, "offered", lat + 0.0006, lon, status=S.OFFERED)
    await put(live, "paused", lat + 0.0007, lon, status=S.PAUSED)
    await put(live, "offline", lat + 0.0008, lon, status=S.OFFLINE)
    await put(live, "no-specialty", lat + 0.002, lon, specialties=())

    hits = await live.index.nearest_available(lat, lon, radius_m=5_000)
    assert ids(hits) == ["near-therapist", "no-specialty", "mid-both", "far-pediatrician"]
    assert [round(h.distance_m) for h in hits] == [111, 222, 334, 1112]
    assert hits[0].position == await live.index.get("near-therapist")
    assert ids(await live.index.nearest_available(lat, lon, radius_m=5_000, specialty="pediatrician")) == [
        "mid-both",
        "far-pediatrician",
    ]
    assert ids(await live.index.nearest_available(lat, lon, radius_m=5_000, k=2)) == [
        "near-therapist",
        "no-specialty",
    ]
    assert ids(await live.index.nearest_available(lat, lon, radius_m=300)) == [
        "near-therapist",
        "no-specialty",
    ]
    assert await live.index.nearest_available(lat, lon, radius_m=5_000, specialty="surgeon") == []


async def test_radius_is_inclusive(live: Live) -> None:
    lat, lon = CENTRE
    await put(live, "d1", lat + 0.01, lon)
    exact = haversine_m(lat, lon, lat + 0.01, lon)
    assert ids(await live.index.nearest_available(lat, lon, radius_m=exact)) == ["d1"]
    assert await live.index.nearest_available(lat, lon, radius_m=exact * (1 - 1e-9)) == []


async def test_stale_positions_are_excluded(live: Live) -> None:
    lat, lon = CENTRE
    now = live.clock()
    await put(live, "fresh", lat + 0.002, lon, ts=now)
    await put(live, "edge", lat + 0.003, lon, ts=now - 60_000)
    await put(live, "stale", lat + 0.001, lon, ts=now - 60_001)
    hits = await live.index.nearest_available(lat, lon, radius_m=1_000, max_age_ms=60_000)
    assert ids(hits) == ["fresh", "edge"]
    # Time passes without new fixes: the one at the edge goes stale.
    await live.elapse(30)
    assert ids(await live.index.nearest_available(lat, lon, radius_m=1_000, max_age_ms=60_000)) == ["fresh"]
    assert ids(await live.index.nearest_available(lat, lon, radius_m=1_000, max_age_ms=10**9)) == [
        "stale",
        "fresh",
        "edge",
    ]
    # A stale position is still known to get and to the map.
    assert await live.index.get("stale") is not None
    assert len(await live.index.within_box(55.0, 37.0, 56.0, 38.0)) == 3
    assert len(await live.index.within_box(55.0, 37.0, 56.0, 38.0, max_age_ms=60_000)) == 1


async def test_ties_are_broken_by_doctor_id(live: Live) -> None:
    lat, lon = CENTRE
    for doctor in ("c", "a", "b", "d"):
        await put(live, doctor, lat + 0.001, lon + 0.001)
    assert ids(await live.index.nearest_available(lat, lon, radius_m=1_000)) == ["a", "b", "c", "d"]
    assert ids(await live.index.nearest_available(lat, lon, radius_m=1_000, k=2)) == ["a", "b"]


async def test_moving_available_doctor_is_found_where_it_is(live: Live) -> None:
    await put(live, "d1", 55.75, 37.62)
    await live.index.upsert(pos("d1", 55.85, 37.45, live.clock() + 1))
    assert await live.index.nearest_available(55.75, 37.62, radius_m=1_000) == []
    assert ids(await live.index.nearest_available(55.85, 37.45, radius_m=1_000)) == ["d1"]
    # Moving while busy, then becoming available: found at the new place only.
    await set_status(live, "d1", S.BUSY)
    await live.index.upsert(pos("d1", 55.60, 37.80, live.clock() + 2))
    await set_status(live, "d1", S.AVAILABLE)
    assert await live.index.nearest_available(55.85, 37.45, radius_m=1_000) == []
    assert ids(await live.index.nearest_available(55.60, 37.80, radius_m=1_000)) == ["d1"]


async def test_specialties_can_change_while_available(live: Live) -> None:
    await put(live, "d1", 55.75, 37.62, specialties=("therapist",))
    assert await live.index.get_specialties("d1") == frozenset({"therapist"})
    await live.index.set_specialties("d1", ["pediatrician", "surgeon"])
    assert await live.index.get_specialties("d1") == frozenset({"pediatrician", "surgeon"})
    near = live.index.nearest_available
    assert await near(55.75, 37.62, radius_m=100, specialty="therapist") == []
    assert ids(await near(55.75, 37.62, radius_m=100, specialty="surgeon")) == ["d1"]
    assert ids(await near(55.75, 37.62, radius_m=100)) == ["d1"]
    await live.index.set_specialties("d1", [])
    assert await live.index.get_specialties("d1") == frozenset()
    assert await near(55.75, 37.62, radius_m=100, specialty="surgeon") == []
    assert ids(await near(55.75, 37.62, radius_m=100)) == ["d1"]
    assert await live.index.get_specialties("unknown") == frozenset()


async def test_specialties_are_copied_in(live: Live) -> None:
    names = ["therapist"]
    await live.index.set_specialties("d1", names)
    names.append("surgeon")
    assert await live.index.get_specialties("d1") == frozenset({"therapist"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"radius_m": -1.0},
        {"radius_m": 50_001.0},
        {"radius_m": math.inf},
        {"radius_m": 1_000.0, "k": 0},
        {"radius_m": 1_000.0, "k": 101},
        {"radius_m": 1_000.0, "specialty": "Therapist"},
        {"radius_m": 1_000.0, "specialty": "a b"},
        {"radius_m": 1_000.0, "max_age_ms": -1},
    ],
)
async def test_invalid_searches_are_refused(live: Live, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        await live.index.nearest_available(55.75, 37.62, **kwargs)  # type: ignore[arg-type]


async def test_invalid_specialties_are_refused(live: Live) -> None:
    for bad in (["Bad"], ["x" * 33], "therapist", [f"s{i}" for i in range(17)]):
        with pytest.raises(ValueError):
            await live.index.set_specialties("d1", bad)


@dataclass
class Doc:
    lat: float
    lon: float
    ts: int
    status: DoctorStatus
    specs: tuple[str, ...]


def brute_force(
    model: dict[str, Doc],
    lat: float,
    lon: float,
    radius: float,
    k: int,
    specialty: str | None,
    min_ts: int,
) -> list[tuple[str, float]]:
    rows = []
    for doctor_id, doc in model.items():
        if doc.status != S.AVAILABLE or doc.ts < min_ts:
            continue
        if specialty is not None and specialty not in doc.specs:
            continue
        dist = haversine_m(lat, lon, doc.lat, doc.lon)
        if dist <= radius:
            rows.append((dist, doctor_id))
    rows.sort()
    return [(doctor_id, dist) for dist, doctor_id in rows[:k]]


def random_doctor(rnd: random.Random, now: int) -> Doc:
    if rnd.random() < 0.35:  # a dense cluster near the centre: exercises the fine rings
        lat, lon = CENTRE[0] + rnd.gauss(0, 0.004), CENTRE[1] + rnd.gauss(0, 0.007)
    else:  # the rest of the city, sparse: exercises the coarse rings
        lat, lon = rnd.uniform(55.55, 55.92), rnd.uniform(37.35, 37.85)
    status = rnd.choices(list(S), weights=[1, 5, 1, 1, 1])[0]
    specs = tuple(rnd.sample(SPECIALTIES, rnd.choice([0, 1, 1, 2, 3])))
    return Doc(lat, lon, now - rnd.randrange(0, 120_000), status, specs)


async def check_queries(live: Live, model: dict[str, Doc], rnd: random.Random, count: int) -> int:
    """Compare ``count`` random searches with brute force; returns how many non-empty answers."""
    non_empty = 0
    for _ in range(count):
        if rnd.random() < 0.5:
            lat, lon = CENTRE[0] + rnd.gauss(0, 0.005), CENTRE[1] + rnd.gauss(0, 0.008)
        else:
            lat, lon = rnd.uniform(55.50, 55.97), rnd.uniform(37.30, 37.90)
        k = rnd.choice([1, 3, 10, 25, 100])
        radius = rnd.choice([150.0, 500.0, 1_000.0, 3_000.0, 8_000.0, 20_000.0, 50_000.0])
        specialty = rnd.choice([None, None, *SPECIALTIES])
        max_age = rnd.choice([30_000, 60_000, 10**9])
        expected = brute_force(model, lat, lon, radius, k, specialty, live.clock() - max_age)
        got = await live.index.nearest_available(
            lat, lon, radius_m=radius, k=k, specialty=specialty, max_age_ms=max_age
        )
        assert ids(got) == [doctor_id for doctor_id, _ in expected], (lat, lon, radius, k, specialty)
        for hit, (_, dist) in zip(got, expected, strict=True):
            assert hit.distance_m == pytest.approx(dist, rel=1e-6)
            doc = model[hit.doctor_id]
            assert (hit.position.lat, hit.position.lon, hit.position.ts_ms) == (doc.lat, doc.lon, doc.ts)
        non_empty += bool(expected)
    return non_empty


async def test_nearest_matches_brute_force_on_random_doctors(live: Live) -> None:
    rnd = random.Random(20_240_607)
    now = live.clock()
    model = {f"doc-{i:03d}": random_doctor(rnd, now) for i in range(500)}
    await live.index.upsert_many([pos(doctor_id, d.lat, d.lon, d.ts) for doctor_id, d in model.items()])
    for doctor_id, doc in model.items():
        await live.index.set_specialties(doctor_id, doc.specs)
        await set_status(live, doctor_id, doc.status)
    assert await check_queries(live, model, rnd, 60) > 30

    # Churn: moves, status and specialty changes, removals; then check again.
    doctor_ids = sorted(model)
    live.clock.advance(5_000)
    moved = rnd.sample(doctor_ids, 150)
    # New fixes are newer than every earlier one (an older fix would rightly be ignored).
    fresh = {doctor_id: random_doctor(rnd, live.clock()) for doctor_id in moved}
    for doc in fresh.values():
        doc.ts = live.clock() - rnd.randrange(0, 5_000)
    await live.index.upsert_many([pos(i, d.lat, d.lon, d.ts) for i, d in fresh.items()])
    for doctor_id, doc in fresh.items():
        model[doctor_id] = dataclasses.replace(model[doctor_id], lat=doc.lat, lon=doc.lon, ts=doc.ts)
    for doctor_id in rnd.sample(doctor_ids, 100):
        status = rnd.choice(list(S))
        await set_status(live, doctor_id, status)
        model[doctor_id].status = status
    for doctor_id in rnd.sample(doctor_ids, 50):
        specs = tuple(rnd.sample(SPECIALTIES, rnd.choice([0, 1, 2])))
        await live.index.set_specialties(doctor_id, specs)
        model[doctor_id].specs = specs
    for doctor_id in rnd.sample(doctor_ids, 30):
        assert await live.index.remove(doctor_id) == (doctor_id in model)
        model.pop(doctor_id, None)
    assert await check_queries(live, model, rnd, 60) > 30


# --- bounding box -----------------------------------------------------------------------------------


async def test_within_box_returns_doctors_inside_with_state_and_specialties(live: Live) -> None:
    await put(live, "inside-a", 55.70, 37.50, specialties=("therapist", "surgeon"))
    await put(live, "inside-b", 55.80, 37.70, status=S.BUSY, specialties=())
    await put(live, "south-edge", 55.60, 37.60, status=S.OFFLINE)
    await put(live, "west-edge", 55.75, 37.40)
    await put(live, "north-of", 55.9000001, 37.60)
    await put(live, "east-of", 55.75, 37.8000001)
    await put(live, "far", -33.9, 151.2)
    found = await live.index.within_box(55.60, 37.40, 55.90, 37.80)
    assert [m.position.doctor_id for m in found] == ["inside-a", "inside-b", "south-edge", "west-edge"]
    by_id = {m.position.doctor_id: m for m in found}
    assert by_id["inside-a"].status == S.AVAILABLE
    assert by_id["inside-a"].specialties == frozenset({"therapist", "surgeon"})
    assert by_id["inside-b"].status == S.BUSY and by_id["inside-b"].specialties == frozenset()
    assert by_id["south-edge"].status == S.OFFLINE
    assert by_id["inside-a"].position == await live.index.get("inside-a")
    limited = await live.index.within_box(55.60, 37.40, 55.90, 37.80, limit=2)
    assert [m.position.doctor_id for m in limited] == ["inside-a", "inside-b"]
    assert await live.index.within_box(10.0, 10.0, 11.0, 11.0) == []


async def test_within_box_matches_brute_force(live: Live) -> None:
    rnd = random.Random(11)
    now = live.clock()
    model = {f"d{i}": (rnd.uniform(55.5, 56.0), rnd.uniform(37.2, 38.0)) for i in range(400)}
    await live.index.upsert_many([pos(i, lat, lon, now) for i, (lat, lon) in model.items()])
    for _ in range(15):
        south, north = sorted(rnd.uniform(55.5, 56.0) for _ in range(2))
        west, east = sorted(rnd.uniform(37.2, 38.0) for _ in range(2))
        expected = sorted(
            i for i, (lat, lon) in model.items() if south <= lat <= north and west <= lon <= east
        )
        found = await live.index.within_box(south, west, north, east, limit=1_000)
        assert [m.position.doctor_id for m in found] == expected


async def test_within_box_near_the_equator_and_a_single_point(live: Live) -> None:
    await put(live, "eq", 0.0, 10.0)
    await put(live, "south", -1.0, 10.5)
    assert [m.position.doctor_id for m in await live.index.within_box(-1.0, 9.0, 1.0, 11.0)] == [
        "eq",
        "south",
    ]
    assert [m.position.doctor_id for m in await live.index.within_box(0.0, 10.0, 0.0, 10.0)] == ["eq"]


@pytest.mark.parametrize(
    "box",
    [
        (56.0, 37.0, 55.0, 38.0),
        (55.0, 38.0, 56.0, 37.0),
        (55.0, 37.0, 86.0, 38.0),
        (55.0, -181.0, 56.0, 38.0),
    ],
)
async def test_invalid_boxes_are_refused(live: Live, box: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError):
        await live.index.within_box(*box)
    with pytest.raises(ValueError):
        await live.index.within_box(55.0, 37.0, 56.0, 38.0, limit=0)


# --- Redis layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["redis"])
async def test_redis_keys_come_from_realtime_keys_and_share_one_slot(live: Live) -> None:
    assert live.redis is not None and live.keys is not None
    keys, redis = live.keys, live.redis
    await put(live, "d1", 55.75, 37.62, specialties=("therapist", "surgeon"))
    fine, coarse = (cell_hex(c) for c in index_cells(55.75, 37.62))
    assert 0 < await redis.pttl(keys.loc_position("d1")) <= 15 * 60 * 1000
    assert await redis.zscore(keys.loc_geo(), "d1") is not None
    assert await redis.zscore(keys.loc_seen(), "d1") == live.clock()
    for cell in (fine, coarse):
        for specialty in (None, "therapist", "surgeon"):
            assert await redis.sismember(keys.loc_available(cell, specialty), "d1")
    assert (await redis.hget(keys.loc_doctor("d1"), "cells")) == f"{fine} {coarse}".encode()
    names = [key async for key in redis.scan_iter(match=f"{keys.prefix}*")]
    assert len(names) == 2 + 1 + 1 + 2 * 3  # geo, seen, position, record, 2 cells x 3 sets
    assert len({key_slot(name) for name in names}) == 1
    # Leaving availability empties the sets (no stale members left behind).
    await set_status(live, "d1", S.BUSY)
    for cell in (fine, coarse):
        assert await redis.scard(keys.loc_available(cell)) == 0
