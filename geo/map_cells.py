"""The H3 cells of the console's map channels: which cells cover a view, and each cell's box.

A map channel is ``map:<H3 cell at resolution 6>`` (``realtime/channels.py``). The console asks which
cells cover the box it shows (``GET /v1/map/cells``) and subscribes to those; the map feed
(``realtime/map_feed.py``) queries the live index with the cells' boxes. Both need the same two
answers, kept here: the cells that touch a box, and the box around a cell.

Coordinates are WGS84 degrees; boxes are ``(south, west, north, east)`` and never cross the
antimeridian (like ``LocationIndex.within_box``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import h3

MAP_RESOLUTION = 6
"""H3 resolution of map channels: res-6 cells are ~36 km² (H3 docs, "Tables of cell statistics"), so a
city view subscribes to tens of cells, each carrying at most one batch per tick. Defined here, with the
cells' geometry, so that ``realtime/`` (channel names, the map feed) reads it downward from ``geo``."""

MAX_CELL_KM2 = 72.0
"""Twice the average area of a resolution-6 cell (36.1 km²): larger than any of them."""
KM_PER_DEG_LAT = 111.2
"""Kilometres per degree of latitude (mean Earth radius 6,371 km)."""

Box = tuple[float, float, float, float]
"""``(south, west, north, east)`` in degrees."""


class TooManyCells(ValueError):
    """The box needs more cells than allowed: ``needed`` is a lower bound on how many."""

    def __init__(self, needed: int, limit: int) -> None:
        super().__init__(f"the box covers at least {needed} map cells; at most {limit} (zoom in)")
        self.needed = needed
        self.limit = limit


@lru_cache(maxsize=20_000)
def cell_box(cell: str) -> Box:
    """The smallest ``(south, west, north, east)`` box holding the cell's boundary vertices. H3 edges
    are great-circle arcs; at resolution 6 (edges ~3.7 km) an arc bulges off the straight line
    between its vertices by centimetres, far below the fix accuracy the map shows."""
    boundary = h3.cell_to_boundary(cell)
    lats = [lat for lat, _ in boundary]
    lons = [lon for _, lon in boundary]
    return min(lats), min(lons), max(lats), max(lons)


def boxes_touch(a: Box, b: Box) -> bool:
    """Whether two boxes overlap or share an edge."""
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def box_area_deg2(box: Box) -> float:
    """The box's area in square degrees (only ever compared with other boxes' areas)."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def cells_covering(box: Box, limit: int) -> list[str]:
    """Every resolution-6 cell whose box touches ``box``, sorted.

    The cells whose centres lie in the box, plus the cells of its corners and centre (a box smaller
    than a cell has no centre inside it), grown by one ring and kept when their box touches ``box``:
    a cell that only overlaps an edge of the box has a neighbour among the first set.

    Raises :class:`TooManyCells` when more than ``limit`` cells are needed (a zoomed-out view: the
    console then asks the user to zoom in), ``ValueError`` for a malformed box.
    """
    south, west, north, east = box
    if not (-90 <= south <= north <= 90 and -180 <= west <= east <= 180):
        raise ValueError("box must have -90 <= south <= north <= 90 and -180 <= west <= east <= 180")
    # Cheap early refusal before asking H3 for a huge set: no res-6 cell is larger than ~2 x 36 km²
    # (H3 docs, "Tables of cell statistics": the average is 36.1 km², the spread within a factor of
    # two), and a degree of longitude shrinks with cos(latitude), so this count is a lower bound.
    far_lat = math.radians(max(abs(south), abs(north)))
    max_cell_deg2 = MAX_CELL_KM2 / (KM_PER_DEG_LAT**2 * max(math.cos(far_lat), 0.01))
    needed = int(box_area_deg2(box) / max_cell_deg2)
    if needed > limit:
        raise TooManyCells(needed, limit)
    seeds: set[str] = set()
    if north > south and east > west:
        polygon = h3.LatLngPoly([(south, west), (south, east), (north, east), (north, west)])
        seeds.update(h3.h3shape_to_cells(polygon, MAP_RESOLUTION))
        if len(seeds) > limit:
            raise TooManyCells(len(seeds), limit)
    for lat in (south, (south + north) / 2, north):
        for lon in (west, (west + east) / 2, east):
            seeds.add(h3.latlng_to_cell(lat, lon, MAP_RESOLUTION))
    cells = {c for seed in seeds for c in h3.grid_disk(seed, 1) if boxes_touch(cell_box(c), box)}
    if len(cells) > limit:
        raise TooManyCells(len(cells), limit)
    return sorted(cells)


def cell_of(lat: float, lon: float) -> str:
    """The map cell (resolution 6, hex string) holding the point."""
    return str(h3.latlng_to_cell(lat, lon, MAP_RESOLUTION))
