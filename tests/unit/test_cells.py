"""Unit tests of geo.cells: resolutions, rings, cell geometry, and the ring lower bound the nearest
search relies on for exactness."""

from __future__ import annotations

import random

import h3
import pytest
from h3.api import basic_int as h3i

from geo.cells import (
    COARSE_RESOLUTION,
    FINE_RESOLUTION,
    GEOMETRY,
    INDEX_RESOLUTIONS,
    CellGeometry,
    cell_hex,
    cell_of,
    index_cells,
    ring,
    ring_lower_bound_m,
)
from geo.distance import haversine_m

MOSCOW = (55.7539, 37.6208)


def test_cell_of_and_index_cells() -> None:
    cells = index_cells(*MOSCOW)
    assert INDEX_RESOLUTIONS == (FINE_RESOLUTION, COARSE_RESOLUTION)
    assert [h3i.get_resolution(c) for c in cells] == list(INDEX_RESOLUTIONS)
    assert cells[0] == cell_of(*MOSCOW, FINE_RESOLUTION)
    assert cells[1] == cell_of(*MOSCOW, COARSE_RESOLUTION)
    assert cell_hex(cells[0]) == h3.latlng_to_cell(*MOSCOW, FINE_RESOLUTION)
    assert len(cell_hex(cells[0])) == len(cell_hex(cells[1])) == 15


def test_ring_has_six_r_cells_at_grid_distance_r() -> None:
    origin = cell_of(*MOSCOW, FINE_RESOLUTION)
    assert ring(origin, 0) == [origin]
    for r in range(1, 8):
        cells = ring(origin, r)
        assert len(cells) == 6 * r
        assert {h3i.grid_distance(origin, c) for c in cells} == {r}


def test_ring_near_a_pentagon_falls_back_to_disk_difference() -> None:
    pentagon = next(iter(h3i.get_pentagons(FINE_RESOLUTION)))
    for r in range(1, 4):
        cells = ring(pentagon, r)
        assert cells
        assert {h3i.grid_distance(pentagon, c) for c in cells} == {r}


def _random_point_near(rnd: random.Random, lat: float, lon: float, spread: float) -> tuple[float, float]:
    return lat + rnd.uniform(-spread, spread), lon + rnd.uniform(-spread, spread)


@pytest.mark.parametrize("resolution", INDEX_RESOLUTIONS)
def test_circumradius_covers_every_point_of_the_cell(resolution: int) -> None:
    rnd = random.Random(resolution)
    geometry = CellGeometry()
    spread = 0.05 if resolution == FINE_RESOLUTION else 0.3
    for _ in range(3_000):
        lat, lon = _random_point_near(rnd, *MOSCOW, spread)
        clat, clon, radius = geometry.get(cell_of(lat, lon, resolution))
        assert haversine_m(clat, clon, lat, lon) <= radius


def test_token_rounds_outward() -> None:
    cell = cell_of(*MOSCOW, FINE_RESOLUTION)
    clat, clon, radius = GEOMETRY.get(cell)
    tlat, tlon, tradius = (float(x) for x in GEOMETRY.token(cell).split(","))
    assert abs(tlat - clat) <= 5e-8 and abs(tlon - clon) <= 5e-8
    assert radius <= tradius <= radius + 0.1
    assert GEOMETRY.hex(cell) == cell_hex(cell)


def test_cache_is_bounded() -> None:
    geometry = CellGeometry(max_cells=3)
    origin = cell_of(*MOSCOW, FINE_RESOLUTION)
    for cell in ring(origin, 2):
        geometry.get(cell)
        geometry.token(cell)
        geometry.hex(cell)
    assert len(geometry) <= 3


@pytest.mark.parametrize("resolution", INDEX_RESOLUTIONS)
def test_ring_lower_bound_never_exceeds_a_true_distance(resolution: int) -> None:
    """Every point in a cell at grid distance > r is at least bound(ring r + 1) from the query."""
    rnd = random.Random(100 + resolution)
    spread = 0.03 if resolution == FINE_RESOLUTION else 0.2
    for _ in range(60):
        qlat, qlon = _random_point_near(rnd, *MOSCOW, 0.2)
        origin = cell_of(qlat, qlon, resolution)
        bounds = [ring_lower_bound_m(qlat, qlon, ring(origin, r + 1)) for r in range(6)]
        assert bounds == sorted(bounds) or all(b < 0 for b in bounds[:2])
        for _ in range(100):
            lat, lon = _random_point_near(rnd, qlat, qlon, spread * 3)
            grid = h3i.grid_distance(origin, cell_of(lat, lon, resolution))
            d = haversine_m(qlat, qlon, lat, lon)
            for r in range(min(grid, 6)):
                assert bounds[r] <= d, (r, grid, bounds[r], d)


def test_ring_lower_bound_is_useful() -> None:
    """The bound grows with the ring (else the search could never stop early)."""
    origin = cell_of(*MOSCOW, FINE_RESOLUTION)
    clat, clon, _ = GEOMETRY.get(origin)
    b3 = ring_lower_bound_m(clat, clon, ring(origin, 3))
    b6 = ring_lower_bound_m(clat, clon, ring(origin, 6))
    assert 400 < b3 < b6
    assert ring_lower_bound_m(clat, clon, []) == float("inf")
