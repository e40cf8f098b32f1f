"""The replay's compressed clock and the scaling of the fleet and the calls."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from geo.distance import haversine_m
from loadtests.replay.clock import ReplayClock
from loadtests.replay.inputs import CallSpec, Fix, Trace
from loadtests.replay.scale import scale_calls, scale_fleet, shift


class ManualTime:
    """A wall clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_speed_60_is_one_hour_per_minute() -> None:
    wall = ManualTime()
    clock = ReplayClock(origin_s=5_000.0, speed=60.0, monotonic=wall)
    assert clock.now() == 5_000.0 and not clock.started
    clock.start()
    wall.now += 60.0
    assert clock.now() == pytest.approx(5_000.0 + 3_600.0)
    assert clock.to_wall(3_600.0) == pytest.approx(60.0)
    assert clock.wall_until(5_000.0 + 7_200.0) == pytest.approx(60.0)
    assert clock.wall_until(5_000.0) == pytest.approx(-60.0)  # passed
    assert clock.wall_at(5_000.0 + 600.0) == pytest.approx(1000.0 + 10.0)


def test_the_clock_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        ReplayClock(0.0, 0.0)
    with pytest.raises(RuntimeError):
        ReplayClock(0.0, 1.0).wall_until(10.0)


async def test_sleep_until_waits_compressed_wall_time() -> None:
    clock = ReplayClock(origin_s=0.0, speed=100.0)
    clock.start()
    started = time.monotonic()
    await clock.sleep_until(20.0)  # 20 replay seconds at x100: 0.2 wall seconds
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 1.0
    assert clock.now() >= 20.0
    started = time.monotonic()
    await asyncio.wait_for(clock.sleep_until(0.0), 0.05)  # in the past: at once
    await clock.sleep(-5.0)
    assert time.monotonic() - started < 0.05


def trace(name: str) -> Trace:
    return Trace(name, tuple(Fix(100.0 + 60 * i, 37.77 + 0.001 * i, -122.42, i % 2 == 0) for i in range(5)))


def test_scale_one_changes_nothing() -> None:
    fleet = [trace("a"), trace("b")]
    assert scale_fleet(fleet, 1, random.Random(1), jitter_m=250, jitter_s=120) == fleet
    with pytest.raises(ValueError):
        scale_fleet(fleet, 0, random.Random(1), jitter_m=250, jitter_s=120)


def test_clones_keep_the_movement_within_the_jitter_with_new_ids() -> None:
    fleet = [trace("a"), trace("b")]
    scaled = scale_fleet(fleet, 10, random.Random(3), jitter_m=250, jitter_s=120)
    assert len(scaled) == 20
    assert len({t.id for t in scaled}) == 20
    assert scaled[:2] == fleet
    clones = [t for t in scaled if t.id.startswith("a~")]
    assert len(clones) == 9
    offsets = set()
    for clone in clones:
        original = fleet[0]
        dt_s = clone.fixes[0].ts - original.fixes[0].ts
        assert abs(dt_s) <= 120
        offsets.add(round(dt_s, 6))
        for f, g in zip(original.fixes, clone.fixes, strict=True):
            assert g.ts - f.ts == pytest.approx(dt_s)  # the same time shift for every fix
            assert g.occupied == f.occupied
            assert haversine_m(f.lat, f.lon, g.lat, g.lon) <= 250 * 2**0.5 + 1
        first, last = original.fixes[0], original.fixes[-1]
        moved = haversine_m(first.lat, first.lon, last.lat, last.lon)
        cmoved = haversine_m(clone.fixes[0].lat, clone.fixes[0].lon, clone.fixes[-1].lat, clone.fixes[-1].lon)
        assert cmoved == pytest.approx(moved, rel=1e-3)  # the same movement
    assert len(offsets) == 9  # each clone its own jitter


def test_scaling_is_seeded() -> None:
    fleet = [trace("a")]
    one = scale_fleet(fleet, 3, random.Random(7), jitter_m=250, jitter_s=120)
    two = scale_fleet(fleet, 3, random.Random(7), jitter_m=250, jitter_s=120)
    other = scale_fleet(fleet, 3, random.Random(8), jitter_m=250, jitter_s=120)
    assert one == two and one != other


def test_scaled_calls_are_sorted_unique_and_jittered() -> None:
    calls = [CallSpec("cab", 1000.0 + 60 * i, 37.77, -122.42) for i in range(4)]
    scaled = scale_calls(calls, 5, random.Random(2), jitter_m=100, jitter_s=30)
    assert len(scaled) == 20
    assert [c.ts for c in scaled] == sorted(c.ts for c in scaled)
    assert len({c.key for c in scaled}) == 20
    for c in scaled:
        assert haversine_m(37.77, -122.42, c.lat, c.lon) <= 100 * 2**0.5 + 1


def test_shift_moves_by_metres() -> None:
    lat, lon = shift(37.77, -122.42, 300.0, -400.0)
    assert haversine_m(37.77, -122.42, lat, lon) == pytest.approx(500.0, rel=1e-3)
    assert lat > 37.77 and lon < -122.42
