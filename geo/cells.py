"""H3 cells for the live location index: which resolutions, the cell of a point, rings, ring bounds.

The index keeps, for every H3 cell, the set of available doctors in it (per specialty). A nearest
search walks rings of cells around the query point's cell (``grid_ring`` 0, 1, 2, ...) and computes the
exact haversine distance only for the candidates found there. It may stop after ring ``r`` once it has
``k`` candidates closer than :func:`ring_lower_bound_m` of ring ``r + 1``: no doctor outside the rings
already read can be closer than that bound, so the answer is exact, not approximate.

Why the bound holds: the great-circle path from the query point ``p`` to any doctor in a cell at grid
distance > r crosses cells whose grid distance from ``p``'s cell changes by at most 1 at each border
(three hexagons meet at a vertex, and any two of them share an edge), so it enters some cell ``c`` of
ring ``r + 1``. A point of ``c`` is at least ``d(p, centre(c)) - circumradius(c)`` from ``p`` (triangle
inequality), hence the minimum of that over ring ``r + 1`` bounds every unread doctor from below.

Two resolutions are indexed (:data:`INDEX_RESOLUTIONS`): the fine one answers dense searches by reading
a few dozen small cells; when ``k`` doctors are not found within :data:`FINE_MAX_RING` fine rings
(a sparse area, a rare specialty, a small fleet), the search restarts on the coarse resolution, whose
rings grow 7 times faster, instead of reading thousands of empty fine cells.

Cells are H3 64-bit indexes as Python ints (the ``h3.api.basic_int`` API, cheaper than strings);
Redis keys use their 15-digit lowercase hex form (:func:`cell_hex`), the same string ``h3`` prints.
Source: H3 v4 (https://h3geo.org), resolution table "Cell statistics by resolution".
"""

from __future__ import annotations

import math

from h3.api import basic_int as h3i

from geo.distance import haversine_m

FINE_RESOLUTION = 9
"""H3 resolution 9: average hexagon edge 201 m, area 0.105 km2. At 100,000 doctors over Moscow's
~1,000 km2 that is ~8 doctors per cell, so a typical nearest-10 reads 7 to 37 cells and exact
distances for a few dozen candidates."""

COARSE_RESOLUTION = 7
"""H3 resolution 7: average edge 1,406 m, area 5.16 km2 (49 fine cells). Used when the fine rings up to
:data:`FINE_MAX_RING` did not settle the answer: 20 km is ~9 coarse rings (~270 cells) but ~65 fine
rings (~13,000 cells)."""

INDEX_RESOLUTIONS: tuple[int, ...] = (FINE_RESOLUTION, COARSE_RESOLUTION)
"""Every available doctor is a member of one cell set per resolution here, fine first."""

FINE_MAX_RING = 6
"""Fine rings 0..6 (127 cells, ~1.7 km around the query) are read before falling back to coarse."""

_CIRCUMRADIUS_SLACK = 1e-3
"""Relative slack added to a cell's measured circumradius: covers the rounding of centres to 1e-7 degree
in Lua tokens and any curvature of edges between the boundary vertices H3 reports."""

_CIRCUMRADIUS_PAD_M = 1.0
"""Absolute slack in metres added on top of :data:`_CIRCUMRADIUS_SLACK` (same reason)."""

_GEOMETRY_CACHE_MAX = 200_000
"""Cells whose geometry is cached per process (~30 MB at most); a city touches a few tens of thousands."""


def cell_of(lat: float, lon: float, resolution: int) -> int:
    """The H3 cell (int) at ``resolution`` containing the WGS84 point ``(lat, lon)`` in degrees."""
    return int(h3i.latlng_to_cell(lat, lon, resolution))


def index_cells(lat: float, lon: float) -> tuple[int, ...]:
    """The point's cells at every resolution of :data:`INDEX_RESOLUTIONS`, in that order."""
    # Once per fix (10,000 a second at 1 Hz): written out rather than a generator over
    # INDEX_RESOLUTIONS (2.9 instead of 5.2 µs here). Not cell_to_parent of the fine cell: H3's
    # hierarchy is not geometrically nested, and the index needs the coarse cell holding the point.
    to_cell = h3i.latlng_to_cell
    return (to_cell(lat, lon, FINE_RESOLUTION), to_cell(lat, lon, COARSE_RESOLUTION))


def cell_hex(cell: int) -> str:
    """The 15-digit lowercase hex form of an H3 cell, as used in Redis key names."""
    return format(cell, "x")


def ring(origin: int, distance: int) -> list[int]:
    """The cells at exactly grid distance ``distance`` (>= 0) from ``origin`` (``[origin]`` for 0).

    A hexagonal ring has ``6 * distance`` cells. Near one of H3's 12 pentagons (all at sea) the fast
    ring algorithm can fail; then the ring is computed as the difference of two grid disks.
    """
    if distance == 0:
        return [origin]
    try:
        return list(h3i.grid_ring(origin, distance))
    except Exception:  # h3.H3BaseException subclasses (pentagon distortion): take the slow exact way
        inner = set(h3i.grid_disk(origin, distance - 1))
        return [c for c in h3i.grid_disk(origin, distance) if c not in inner]


class CellGeometry:
    """Per-process cache of each H3 cell's centre, circumradius, hex id and Lua geometry token.

    Geometry is a pure function of the cell, so one shared cache (:data:`GEOMETRY`) serves every index.
    A cell's first use costs ~5 us (boundary, six haversines, formatting); the search reads a few
    hundred cells, so a cold cache can add a millisecond to a query: :meth:`warm` fills it for a
    service area at start-up. Bounded: at ``max_cells`` entries it is cleared and refilled on demand.
    """

    __slots__ = ("_cells", "_max")

    def __init__(self, max_cells: int = _GEOMETRY_CACHE_MAX) -> None:
        self._max = max_cells
        self._cells: dict[int, tuple[float, float, float, str, str]] = {}

    def entry(self, cell: int) -> tuple[float, float, float, str, str]:
        """``(centre_lat, centre_lon, circumradius_m, hex, token)`` of ``cell``.

        The radius is padded (never less than the largest centre-to-vertex haversine distance). The
        token ``"<lat>,<lon>,<radius>"`` is for the Lua search: centre rounded to 1e-7 degree (about
        1 cm, inside the padding), radius rounded up to 0.1 m.
        """
        item = self._cells.get(cell)
        if item is None:
            if len(self._cells) >= self._max:
                self._cells.clear()
            clat, clon = h3i.cell_to_latlng(cell)
            far = max(haversine_m(clat, clon, vlat, vlon) for vlat, vlon in h3i.cell_to_boundary(cell))
            radius = far * (1.0 + _CIRCUMRADIUS_SLACK) + _CIRCUMRADIUS_PAD_M
            token = f"{clat:.7f},{clon:.7f},{math.ceil(radius * 10) / 10:.1f}"
            item = (clat, clon, radius, cell_hex(cell), token)
            self._cells[cell] = item
        return item

    def get(self, cell: int) -> tuple[float, float, float]:
        """``(centre_lat, centre_lon, circumradius_m)`` of ``cell`` (see :meth:`entry`)."""
        item = self.entry(cell)
        return item[0], item[1], item[2]

    def token(self, cell: int) -> str:
        """The Lua geometry token of ``cell`` (see :meth:`entry`)."""
        return self.entry(cell)[4]

    def hex(self, cell: int) -> str:
        """Cached :func:`cell_hex`."""
        return self.entry(cell)[3]

    def __len__(self) -> int:
        return len(self._cells)

    def warm(self, south: float, west: float, north: float, east: float) -> int:
        """Fill the cache for every indexed cell a search inside the box (degrees) can touch: cells
        of :data:`INDEX_RESOLUTIONS` covering the box grown by the rings a search reads past its
        origin. Returns the number of cells cached (Moscow: ~40,000 cells, ~0.2 s)."""
        count = 0
        for resolution in INDEX_RESOLUTIONS:
            origin = cell_of((south + north) / 2, (west + east) / 2, resolution)
            clat, clon, radius = self.get(origin)
            reach = max(haversine_m(clat, clon, lat, lon) for lat in (south, north) for lon in (west, east))
            # Cells are ~sqrt(3) circumradii apart; pad by the fine rings a search reads beyond.
            rings = int(reach / (1.5 * radius)) + FINE_MAX_RING + 2
            for cell in h3i.grid_disk(origin, rings):
                self.entry(cell)
                count += 1
        return count


GEOMETRY = CellGeometry()
"""The process-wide geometry cache."""


def ring_lower_bound_m(lat: float, lon: float, cells: list[int], geometry: CellGeometry = GEOMETRY) -> float:
    """A lower bound in metres on the distance from ``(lat, lon)`` to any point of any of ``cells``.

    Used with ``cells = ring(origin, r + 1)`` where ``origin`` contains the point: then it bounds every
    point outside rings 0..r (see the module docstring). Returns ``inf`` for no cells; may be negative
    (the ring touches the point's neighbourhood), which simply means "cannot stop yet".
    """
    best = math.inf
    entry = geometry.entry
    for cell in cells:
        clat, clon, radius, _, _ = entry(cell)
        bound = haversine_m(lat, lon, clat, clon) - radius
        if bound < best:
            best = bound
    return best
