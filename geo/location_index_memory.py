"""The embedded engine's LocationIndex: dictionaries and per-H3-cell sets in this process.

Mirrors the Redis layout one to one (``realtime/keys.py``): a position per doctor with its cells and the
time it was written, the doctor's specialties, status and current cells, and for every indexed cell
a set of available doctor ids per specialty (plus ``"*"`` for any). The search is the ring walk of
``geo/cells.py``; see ``geo/location_index.py`` for the contract both engines keep.

Availability arrives through :meth:`MemoryLocationIndex.apply_status`, which ``MemoryDoctorStates``
calls inside its compare-and-set, in the same event-loop step: the index and the states never disagree.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

from geo.cells import COARSE_RESOLUTION, FINE_MAX_RING, FINE_RESOLUTION, cell_of, index_cells, ring
from geo.cells import ring_lower_bound_m as _ring_bound
from geo.distance import haversine_m
from geo.location_index import (
    DEFAULT_BOX_LIMIT,
    DEFAULT_MAX_AGE_MS,
    POSITION_TTL_MS,
    DoctorPosition,
    LocationIndex,
    MapDoctor,
    NearbyDoctor,
    check_box,
    check_point,
    check_position,
    check_search,
    check_specialties,
    in_box,
)
from models.enums import DoctorStatus
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import LOC_ANY_SPECIALTY, check_doctor_id

_Candidate = tuple[float, str, DoctorPosition]


class _Entry:
    """A stored position: the position, the engine time it was written, its cells per resolution."""

    __slots__ = ("cells", "position", "written_ms")

    def __init__(self, position: DoctorPosition, written_ms: int, cells: tuple[int, ...]) -> None:
        self.position = position
        self.written_ms = written_ms
        self.cells = cells


class MemoryLocationIndex(LocationIndex):
    """In-process :class:`~geo.location_index.LocationIndex`.

    ``clock``: engine time in epoch ms (default wall clock); ``position_ttl_ms``: how long a position is
    kept after its last upsert (default :data:`~geo.location_index.POSITION_TTL_MS`). Pair it with
    ``MemoryDoctorStates(index=this)`` so availability reaches the index; alone, every doctor is offline.
    """

    def __init__(self, *, clock: Clock | None = None, position_ttl_ms: int = POSITION_TTL_MS) -> None:
        if position_ttl_ms <= 0:
            raise ValueError("position_ttl_ms must be > 0")
        self._clock: Clock = clock or wall_clock_ms
        self._ttl = position_ttl_ms
        # Insertion order is upsert order (an upsert re-inserts), so sweep stops at the first live entry.
        self._entries: dict[str, _Entry] = {}
        self._status: dict[str, DoctorStatus] = {}
        self._specs: dict[str, frozenset[str]] = {}
        # The cells whose availability sets hold the doctor while available (Redis: doc ``cells``).
        # Kept after the position expires, until sweep or the next upsert, exactly like Redis.
        self._cells: dict[str, tuple[int, ...]] = {}
        self._avail: dict[int, dict[str, set[str]]] = {}

    # --- availability sets ------------------------------------------------------------------------

    def _membership(self, doctor_id: str, cells: Iterable[int], names: Iterable[str], add: bool) -> None:
        """Add ``doctor_id`` to (or remove it from) the sets ``names`` of every cell in ``cells``."""
        names = tuple(names)
        for cell in cells:
            by_spec = self._avail.get(cell)
            if by_spec is None:
                if not add:
                    continue
                by_spec = self._avail[cell] = {}
            for name in names:
                if add:
                    by_spec.setdefault(name, set()).add(doctor_id)
                else:
                    members = by_spec.get(name)
                    if members is not None:
                        members.discard(doctor_id)
                        if not members:
                            del by_spec[name]
            if not by_spec:
                del self._avail[cell]

    def _set_names(self, doctor_id: str) -> tuple[str, ...]:
        """The specialty parts of every cell set an available doctor belongs to."""
        return (LOC_ANY_SPECIALTY, *self._specs.get(doctor_id, ()))

    def _available(self, doctor_id: str) -> bool:
        return self._status.get(doctor_id) == DoctorStatus.AVAILABLE

    def _move(self, doctor_id: str, new_cells: tuple[int, ...]) -> None:
        old_cells = self._cells.get(doctor_id, ())
        if old_cells == new_cells:
            return
        if self._available(doctor_id):
            names = self._set_names(doctor_id)
            self._membership(doctor_id, [c for c in old_cells if c not in new_cells], names, add=False)
            self._membership(doctor_id, [c for c in new_cells if c not in old_cells], names, add=True)
        if new_cells:
            self._cells[doctor_id] = new_cells
        else:
            self._cells.pop(doctor_id, None)

    def apply_status(self, doctor_id: str, status: DoctorStatus) -> None:
        """Mirror a DoctorStates change (called by ``MemoryDoctorStates`` inside its compare-and-set;
        synchronous, so it is atomic with the state change). Not for other callers."""
        was = self._available(doctor_id)
        self._status[doctor_id] = status
        now = status == DoctorStatus.AVAILABLE
        cells = self._cells.get(doctor_id)
        if was != now and cells:
            self._membership(doctor_id, cells, self._set_names(doctor_id), add=now)

    # --- positions --------------------------------------------------------------------------------

    def _live(self, doctor_id: str, now: int) -> _Entry | None:
        entry = self._entries.get(doctor_id)
        if entry is None or entry.written_ms + self._ttl <= now:
            return None
        return entry

    def _apply(self, position: DoctorPosition, now: int) -> bool:
        doctor_id = position.doctor_id
        old = self._live(doctor_id, now)
        if old is not None and position.ts_ms < old.position.ts_ms:
            return False
        cells = index_cells(position.lat, position.lon)
        self._entries.pop(doctor_id, None)
        self._entries[doctor_id] = _Entry(position, now, cells)
        self._move(doctor_id, cells)
        return True

    async def upsert(self, position: DoctorPosition) -> bool:
        """See :meth:`LocationIndex.upsert`."""
        return self._apply(check_position(position), self._clock())

    async def upsert_many(self, positions: Sequence[DoctorPosition]) -> int:
        """See :meth:`LocationIndex.upsert_many`."""
        checked = [check_position(p) for p in positions]
        now = self._clock()
        return sum(self._apply(p, now) for p in checked)

    def _forget(self, doctor_id: str) -> None:
        self._entries.pop(doctor_id, None)
        self._move(doctor_id, ())

    async def remove(self, doctor_id: str) -> bool:
        """See :meth:`LocationIndex.remove`."""
        check_doctor_id(doctor_id)
        existed = self._live(doctor_id, self._clock()) is not None
        self._forget(doctor_id)
        return existed

    async def get(self, doctor_id: str) -> DoctorPosition | None:
        """See :meth:`LocationIndex.get`."""
        check_doctor_id(doctor_id)
        entry = self._live(doctor_id, self._clock())
        return None if entry is None else entry.position

    async def sweep(self) -> int:
        """See :meth:`LocationIndex.sweep`."""
        cutoff = self._clock() - self._ttl
        expired = []
        for doctor_id, entry in self._entries.items():
            if entry.written_ms > cutoff:
                break
            expired.append(doctor_id)
        for doctor_id in expired:
            self._forget(doctor_id)
        return len(expired)

    # --- specialties ------------------------------------------------------------------------------

    async def set_specialties(self, doctor_id: str, specialties: Iterable[str]) -> None:
        """See :meth:`LocationIndex.set_specialties`."""
        check_doctor_id(doctor_id)
        new = check_specialties(specialties)
        old = self._specs.get(doctor_id, frozenset())
        cells = self._cells.get(doctor_id)
        if cells and self._available(doctor_id):
            self._membership(doctor_id, cells, old - new, add=False)
            self._membership(doctor_id, cells, new - old, add=True)
        if new:
            self._specs[doctor_id] = new
        else:
            self._specs.pop(doctor_id, None)

    async def get_specialties(self, doctor_id: str) -> frozenset[str]:
        """See :meth:`LocationIndex.get_specialties`."""
        check_doctor_id(doctor_id)
        return self._specs.get(doctor_id, frozenset())

    # --- queries ----------------------------------------------------------------------------------

    async def nearest_available(
        self,
        lat: float,
        lon: float,
        *,
        radius_m: float,
        k: int = 10,
        specialty: str | None = None,
        max_age_ms: int = DEFAULT_MAX_AGE_MS,
    ) -> list[NearbyDoctor]:
        """See :meth:`LocationIndex.nearest_available`."""
        lat, lon = check_point(lat, lon)
        radius = check_search(radius_m, k, specialty, max_age_ms)
        now = self._clock()
        spec = specialty or LOC_ANY_SPECIALTY
        args = (lat, lon, radius, k, spec, now - max_age_ms, now - self._ttl)
        done, best = self._search(FINE_RESOLUTION, FINE_MAX_RING, *args)
        if not done:
            _, best = self._search(COARSE_RESOLUTION, None, *args)
        return [NearbyDoctor(doctor_id, dist, pos) for dist, doctor_id, pos in best]

    def _search(
        self,
        resolution: int,
        max_ring: int | None,
        lat: float,
        lon: float,
        radius: float,
        k: int,
        spec: str,
        min_ts: int,
        written_after: int,
    ) -> tuple[bool, list[_Candidate]]:
        """Walk rings at ``resolution``; ``(settled, best)``. ``settled`` is False when ``max_ring``
        rings were read and cells beyond could still hold a closer candidate."""
        origin = cell_of(lat, lon, resolution)
        avail = self._avail
        entries = self._entries
        best: list[_Candidate] = []
        cells = [origin]
        distance = 0
        while True:
            for cell in cells:
                by_spec = avail.get(cell)
                if by_spec is None:
                    continue
                ids = by_spec.get(spec)
                if not ids:
                    continue
                for doctor_id in ids:
                    entry = entries.get(doctor_id)
                    if entry is None or entry.written_ms <= written_after:
                        continue  # position forgotten (TTL) but not yet swept
                    pos = entry.position
                    if pos.ts_ms < min_ts:
                        continue  # stale
                    dist = haversine_m(lat, lon, pos.lat, pos.lon)
                    if dist > radius:
                        continue
                    if len(best) < k:
                        bisect.insort(best, (dist, doctor_id, pos))
                    elif dist < best[-1][0] or (dist == best[-1][0] and doctor_id < best[-1][1]):
                        bisect.insort(best, (dist, doctor_id, pos))
                        best.pop()
            following = ring(origin, distance + 1)
            bound = _ring_bound(lat, lon, following)
            if bound > radius or (len(best) >= k and best[-1][0] < bound):
                return True, best
            if max_ring is not None and distance >= max_ring:
                return False, best
            cells = following
            distance += 1

    async def within_box(
        self,
        south: float,
        west: float,
        north: float,
        east: float,
        *,
        limit: int = DEFAULT_BOX_LIMIT,
        max_age_ms: int | None = None,
    ) -> list[MapDoctor]:
        """See :meth:`LocationIndex.within_box`. Scans every stored position (console use)."""
        box = check_box(south, west, north, east, limit, max_age_ms)
        now = self._clock()
        written_after = now - self._ttl
        min_ts = None if max_age_ms is None else now - max_age_ms
        found = []
        for doctor_id, entry in self._entries.items():
            pos = entry.position
            if entry.written_ms <= written_after or not in_box(pos.lat, pos.lon, box):
                continue
            if min_ts is not None and pos.ts_ms < min_ts:
                continue
            found.append(
                MapDoctor(
                    pos,
                    self._status.get(doctor_id, DoctorStatus.OFFLINE),
                    self._specs.get(doctor_id, frozenset()),
                )
            )
        found.sort(key=lambda m: m.position.doctor_id)
        return found[:limit]
