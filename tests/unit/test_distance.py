"""Unit tests of geo.distance: the haversine against closed forms and an independent formula."""

from __future__ import annotations

import math
import random

import pytest

from geo.distance import EARTH_RADIUS_M, haversine_m, metres_per_degree_lat


def _vincenty_sphere_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the atan2 (Vincenty, sphere) formula: independent of the haversine."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    num = math.hypot(
        math.cos(p2) * math.sin(dl),
        math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl),
    )
    den = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return EARTH_RADIUS_M * math.atan2(num, den)


def test_same_point_is_zero() -> None:
    assert haversine_m(55.75, 37.62, 55.75, 37.62) == 0.0


def test_one_degree_of_latitude() -> None:
    assert haversine_m(55.0, 37.0, 56.0, 37.0) == pytest.approx(metres_per_degree_lat(), rel=1e-12)
    assert metres_per_degree_lat() == pytest.approx(111_195.08, abs=0.01)


def test_quarter_meridian_and_antipodes() -> None:
    assert haversine_m(0.0, 10.0, 90.0, 10.0) == pytest.approx(math.pi * EARTH_RADIUS_M / 2, rel=1e-12)
    # Antipodal points: the clamp keeps asin in its domain; the haversine is ill-conditioned there
    # (asin near 1), so only ~1e-8 relative is promised (decimetres over 20,000 km).
    assert haversine_m(10.0, 20.0, -10.0, -160.0) == pytest.approx(math.pi * EARTH_RADIUS_M, rel=1e-7)


def test_parallel_distance_shrinks_with_cosine_of_latitude() -> None:
    # A short east-west hop along 60 N is half as long as along the equator (to first order).
    at_equator = haversine_m(0.0, 37.0, 0.0, 37.001)
    at_60 = haversine_m(60.0, 37.0, 60.0, 37.001)
    assert at_60 / at_equator == pytest.approx(0.5, rel=1e-6)


def test_matches_independent_formula_on_random_pairs() -> None:
    rnd = random.Random(7)
    for _ in range(2_000):
        lat1, lon1 = rnd.uniform(-85, 85), rnd.uniform(-180, 180)
        # Mix city-scale and continental pairs.
        spread = rnd.choice([0.01, 0.3, 5.0, 60.0])
        lat2 = max(-85.0, min(85.0, lat1 + rnd.uniform(-spread, spread)))
        lon2 = lon1 + rnd.uniform(-spread, spread)
        expected = _vincenty_sphere_m(lat1, lon1, lat2, lon2)
        got = haversine_m(lat1, lon1, lat2, lon2)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)
        assert haversine_m(lat2, lon2, lat1, lon1) == pytest.approx(got, rel=1e-12, abs=1e-9)
