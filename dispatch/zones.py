"""Which service zone a point lies in: an in-process point-in-polygon index over every zone.

**The rule.** When zones exist, they are the service area: a call whose place lies outside every
zone is refused (the call service answers 422 ``outside_service_area``; this module only answers
:meth:`ZoneIndex.zone_at` with ``None``). When no zones exist at all (:attr:`ZoneIndex.empty`),
everything is inside and calls get no zone (``zone_id`` null): a deployment works before anyone
imports zones. A doctor limited to zones (``doctor_zones``) is offered only calls in those zones; see
``models/repositories/zones.py:doctors_serving``.

**How.** Zones are loaded once from the database into a shapely ``STRtree`` (bounding boxes) with
each area *prepared* (GEOS builds a segment index on first use), so a lookup is a tree query plus an
exact test against the few zones whose box contains the point: microseconds for Moscow's 146
districts, with no SQL on the call path. A point on a zone's boundary is inside it (``covers``). Where
zones overlap (a clinic's area inside a district, or a shared border), the smallest zone wins, then
the lowest code, so every process answers the same.

**Freshness.** The index is a snapshot: after ``tot-dispatch zones import`` the server must
:meth:`ZoneIndex.reload` (the owner of the index decides when: at start-up, on a signal, on a
timer). :meth:`reload` builds the new snapshot aside and swaps it in one assignment, so lookups
running meanwhile see either the old or the new zones, never a mix.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import shapely
from shapely import STRtree
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from geo.cells import GEOMETRY
from models.repositories import zones as zone_repo


@dataclass(frozen=True, slots=True)
class ZoneRef:
    """A zone as the dispatch path needs it: its id (``calls.zone_id``), code and name."""

    id: uuid.UUID
    code: str
    name: str


@dataclass(frozen=True, slots=True)
class _Snapshot:
    refs: tuple[ZoneRef, ...]
    areas: tuple[BaseGeometry, ...]
    sizes: tuple[float, ...]
    tree: STRtree | None
    bounds: tuple[float, float, float, float] | None


_EMPTY = _Snapshot((), (), (), None, None)


def _build(zones: Iterable[tuple[ZoneRef, BaseGeometry]]) -> _Snapshot:
    pairs = sorted(zones, key=lambda pair: pair[0].code)
    if not pairs:
        return _EMPTY
    refs = tuple(ref for ref, _ in pairs)
    areas = tuple(area for _, area in pairs)
    for area in areas:
        shapely.prepare(area)
    west, south, east, north = shapely.total_bounds(areas)
    return _Snapshot(
        refs=refs,
        areas=areas,
        # Planar area in square degrees: only compared between overlapping (hence nearby) zones.
        sizes=tuple(float(a.area) for a in areas),
        tree=STRtree(list(areas)),
        bounds=(float(south), float(west), float(north), float(east)),
    )


class ZoneIndex:
    """Point-in-polygon lookup over all zones of the database ``sessions`` opens.

    Build it with ``await ZoneIndex.load(sessions)``, or :meth:`from_zones` for zones at hand.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession] | None = None) -> None:
        self._sessions = sessions
        self._snapshot = _EMPTY

    @classmethod
    async def load(cls, sessions: async_sessionmaker[AsyncSession]) -> ZoneIndex:
        """An index over the zones in the database now."""
        index = cls(sessions)
        await index.reload()
        return index

    @classmethod
    def from_zones(cls, zones: Iterable[tuple[ZoneRef, BaseGeometry]]) -> ZoneIndex:
        """An index over the given ``(ref, area)`` pairs (areas in WGS84 lon/lat degrees), without a
        database; :meth:`reload` is then not available."""
        index = cls()
        index._snapshot = _build(zones)
        return index

    async def reload(self) -> int:
        """Read every zone again and swap the new snapshot in. Returns the number of zones.

        Raises ``RuntimeError`` for an index built by :meth:`from_zones`; database errors propagate
        (the old snapshot stays in use).
        """
        if self._sessions is None:
            raise RuntimeError("this ZoneIndex was built from zones at hand, not from a database")
        async with self._sessions() as session:
            zones = await zone_repo.list_zones(session)
            pairs = [(ZoneRef(z.id, z.code, z.name), z.area) for z in zones]
        self._snapshot = _build(pairs)
        return len(pairs)

    @property
    def empty(self) -> bool:
        """True when there are no zones at all (then every point is in the service area, zone None)."""
        return not self._snapshot.refs

    def __len__(self) -> int:
        return len(self._snapshot.refs)

    @property
    def zones(self) -> tuple[ZoneRef, ...]:
        """Every zone, by code."""
        return self._snapshot.refs

    @property
    def bounds(self) -> tuple[float, float, float, float] | None:
        """``(south, west, north, east)`` in degrees around every zone, or ``None`` when empty."""
        return self._snapshot.bounds

    def zone_at(self, lat: float, lon: float) -> ZoneRef | None:
        """The zone covering the WGS84 point (degrees), or ``None`` when no zone does (or there are no
        zones: check :attr:`empty` to tell the two apart). Overlaps: the smallest zone, then the
        lowest code. Raises ``ValueError`` for coordinates that are not finite or out of range."""
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise ValueError(f"not a WGS84 point: lat={lat}, lon={lon}")
        snapshot = self._snapshot
        if snapshot.tree is None:
            return None
        point = Point(lon, lat)
        best: int | None = None
        for i in snapshot.tree.query(point):
            index = int(i)
            if snapshot.areas[index].covers(point) and (
                best is None
                or (snapshot.sizes[index], snapshot.refs[index].code)
                < (snapshot.sizes[best], snapshot.refs[best].code)
            ):
                best = index
        return None if best is None else snapshot.refs[best]


def warm_cells(zone_index: ZoneIndex) -> int:
    """Fill the H3 geometry cache (``geo.cells.GEOMETRY``) for the box around every zone, so the first
    searches after start-up do not pay for cell geometry. Returns the number of cells cached (0 when
    there are no zones). CPU-bound: Moscow's 146 municipal units (New Moscow included, a box of about
    100 x 70 km) cached ~134,000 cells in ~0.9 s here; run it off the event loop
    (``asyncio.to_thread``) in a server that is already serving."""
    bounds = zone_index.bounds
    if bounds is None:
        return 0
    south, west, north, east = bounds
    return GEOMETRY.warm(south, west, north, east)
