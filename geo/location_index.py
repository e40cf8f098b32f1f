"""LocationIndex: where each on-shift doctor is, and the nearest available ones to a point.

The contract (both implementations, ``location_index_memory`` and ``location_index_redis``, pass one
test suite, ``tests/contract/test_location_index.py``):

Units. Latitude and longitude are WGS84 decimal degrees; latitude is limited to +-85.05112878 (the range
Redis GEO accepts, the Web Mercator limit), longitude to [-180, 180]. Distances, radii and accuracy are
metres; distances are great-circle (haversine, ``geo.distance.haversine_m``, mean Earth radius).
Timestamps are epoch milliseconds.

Positions. A doctor has at most one position, the latest by ``ts_ms`` (the fix time the gateway vouches
for): an upsert older than the stored one is ignored, so reordered frames never move a doctor back in
time; an equal ``ts_ms`` replaces. A position is kept :data:`POSITION_TTL_MS` after its last upsert
(engine time; on Redis the key's TTL) and is then forgotten as if removed: a doctor whose phone vanished
disappears by itself. :meth:`LocationIndex.sweep` reclaims the index entries of forgotten positions;
until it runs they are invisible anyway.

Freshness. ``nearest_available`` considers only positions with ``ts_ms >= now - max_age_ms``, now being
the index's clock; older ("stale") positions are never candidates. ``get`` and ``within_box`` return
stale positions too (the console greys them), until the TTL forgets them.

Availability and specialties. A doctor is a candidate of ``nearest_available`` exactly while its
DoctorStates status is ``AVAILABLE``: DoctorStates changes the index's per-cell availability sets in the
same atomic step as its compare-and-set (one Lua script on Redis, one event-loop step in memory), so the
search never sees a doctor who is already offered or busy. Specialties are set per doctor with
:meth:`LocationIndex.set_specialties` (from the profile when the doctor comes on shift); a doctor can have
several; the specialty filter matches any of them. Specialty names are 1-32 characters of ``a-z0-9_-``.

Search. ``nearest_available`` returns the ``k`` candidates closest to the point within ``radius_m``
(inclusive), sorted by distance ascending, ties broken by ``doctor_id`` ascending. The answer is exact:
the same list a brute-force haversine scan of every doctor would give (no approximation from cells or
GEO hashing: exact coordinates are stored beside the Redis GEO set). It reads rings of H3 cells around
the point and stops as soon as no unread cell can hold a closer doctor (``geo/cells.py``).

Limits. ``k`` at most :data:`MAX_K`; ``radius_m`` at most :data:`MAX_RADIUS_M`; ``within_box`` returns
at most ``limit`` (<= :data:`MAX_BOX_LIMIT`) doctors. One deployment's index is one Redis Cluster slot
(``realtime/keys.py`` says why) or one process's memory. Neither implementation is thread-safe: use it
from one event loop.

Data is copied: every returned object is a frozen dataclass with immutable fields, and inputs are
copied on the way in, so callers cannot change the index's state except through its methods.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from geo.limits import MAX_LAT, MAX_LON
from models.enums import DoctorStatus
from realtime.keys import DOCTOR_ID_RE, POSITION_TTL_MS, check_doctor_id

__all__ = [
    "DEFAULT_BOX_LIMIT",
    "DEFAULT_MAX_AGE_MS",
    "MAX_BOX_LIMIT",
    "MAX_K",
    "MAX_LAT",
    "MAX_RADIUS_M",
    "MAX_SPECIALTIES",
    "POSITION_TTL_MS",
    "DoctorPosition",
    "LocationIndex",
    "MapDoctor",
    "NearbyDoctor",
]

MAX_K = 100
"""Most doctors one nearest search returns."""

MAX_RADIUS_M = 50_000.0
"""Largest search radius, metres (a city; the dispatch rings go 2, 5, 10, 20 km)."""

DEFAULT_MAX_AGE_MS = 60_000
"""Default freshness limit for candidates: a position older than a minute is stale."""

DEFAULT_BOX_LIMIT = 5_000
"""Default cap on ``within_box`` results."""

MAX_BOX_LIMIT = 100_000
"""Largest accepted ``within_box`` limit."""

MAX_SPECIALTIES = 16
"""Most specialties per doctor."""

SPECIALTY_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
"""Specialty names: they become parts of Redis key names."""

MAX_ACCURACY_M = 100_000.0
"""Largest accepted position accuracy (metres); the gateway rejects worse fixes before this."""

MAX_SPEED_MPS = 500.0
"""Largest accepted ground speed (m/s): above any road vehicle, so only garbage is refused."""


@dataclass(frozen=True, slots=True)
class DoctorPosition:
    """A doctor's reported position.

    ``lat``/``lon``: WGS84 degrees; ``accuracy_m``: horizontal accuracy radius in metres (>= 0);
    ``ts_ms``: fix time, epoch ms (>= 0); ``heading_deg``: course over ground in degrees [0, 360) or
    ``None``; ``speed_mps``: ground speed in metres per second ([0, 500]) or ``None``.
    """

    doctor_id: str
    lat: float
    lon: float
    accuracy_m: float
    ts_ms: int
    heading_deg: float | None = None
    speed_mps: float | None = None


@dataclass(frozen=True, slots=True)
class NearbyDoctor:
    """One result of a nearest search: the doctor, the great-circle distance in metres from the query
    point to the doctor's position, and that position."""

    doctor_id: str
    distance_m: float
    position: DoctorPosition


@dataclass(frozen=True, slots=True)
class MapDoctor:
    """One doctor on the console's map: the position, the DoctorStates status, the specialties."""

    position: DoctorPosition
    status: DoctorStatus
    specialties: frozenset[str]


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return float(value)


def check_point(lat: float, lon: float) -> tuple[float, float]:
    """``(lat, lon)`` as floats if within the accepted ranges, else ``ValueError``."""
    lat = _finite(lat, "lat")
    lon = _finite(lon, "lon")
    if not -MAX_LAT <= lat <= MAX_LAT:
        raise ValueError(f"lat must be within +-{MAX_LAT}")
    if not -MAX_LON <= lon <= MAX_LON:
        raise ValueError("lon must be within [-180, 180]")
    return lat, lon


def check_position(position: DoctorPosition) -> DoctorPosition:
    """``position`` if valid and already normalized (float coordinates, int timestamp: the gateway's
    case, checked on a fast path since it runs for every frame), else a normalized copy; raises
    ``ValueError`` if invalid. Keeping the caller's object is safe: it is frozen and its fields are
    immutable."""
    p = position
    if (
        type(p) is DoctorPosition
        and type(p.lat) is float
        and -MAX_LAT <= p.lat <= MAX_LAT  # NaN fails every comparison and takes the slow path
        and type(p.lon) is float
        and -MAX_LON <= p.lon <= MAX_LON
        and type(p.accuracy_m) is float
        and 0.0 <= p.accuracy_m <= MAX_ACCURACY_M
        and type(p.ts_ms) is int
        and p.ts_ms >= 0
        and (p.heading_deg is None or (type(p.heading_deg) is float and 0.0 <= p.heading_deg < 360.0))
        and (p.speed_mps is None or (type(p.speed_mps) is float and 0.0 <= p.speed_mps <= MAX_SPEED_MPS))
        and type(p.doctor_id) is str
        and DOCTOR_ID_RE.fullmatch(p.doctor_id) is not None
    ):
        return p
    if not isinstance(position, DoctorPosition):
        raise ValueError("expected a DoctorPosition")
    check_doctor_id(position.doctor_id)
    lat, lon = check_point(position.lat, position.lon)
    accuracy = _finite(position.accuracy_m, "accuracy_m")
    if not 0.0 <= accuracy <= MAX_ACCURACY_M:
        raise ValueError(f"accuracy_m must be within [0, {MAX_ACCURACY_M}]")
    ts = position.ts_ms
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise ValueError("ts_ms must be a non-negative int (epoch ms)")
    heading = position.heading_deg
    if heading is not None:
        heading = _finite(heading, "heading_deg")
        if not 0.0 <= heading < 360.0:
            raise ValueError("heading_deg must be within [0, 360)")
    speed = position.speed_mps
    if speed is not None:
        speed = _finite(speed, "speed_mps")
        if not 0.0 <= speed <= MAX_SPEED_MPS:
            raise ValueError(f"speed_mps must be within [0, {MAX_SPEED_MPS}]")
    return DoctorPosition(position.doctor_id, lat, lon, accuracy, ts, heading, speed)


def check_specialty(specialty: str) -> str:
    """``specialty`` if it matches :data:`SPECIALTY_RE`, else ``ValueError``."""
    if not isinstance(specialty, str) or SPECIALTY_RE.fullmatch(specialty) is None:
        raise ValueError(f"invalid specialty {specialty!r}")
    return specialty


def check_specialties(specialties: Iterable[str]) -> frozenset[str]:
    """The specialties as a frozenset; raises ``ValueError`` for an invalid name or too many."""
    if isinstance(specialties, str):
        raise ValueError("specialties must be a collection of names, not one string")
    result = frozenset(check_specialty(s) for s in specialties)
    if len(result) > MAX_SPECIALTIES:
        raise ValueError(f"at most {MAX_SPECIALTIES} specialties per doctor")
    return result


def check_search(radius_m: float, k: int, specialty: str | None, max_age_ms: int) -> float:
    """Validate ``nearest_available`` arguments; returns the radius as float; ``ValueError`` if bad."""
    radius = _finite(radius_m, "radius_m")
    if not 0.0 <= radius <= MAX_RADIUS_M:
        raise ValueError(f"radius_m must be within [0, {MAX_RADIUS_M}]")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an int within [1, {MAX_K}]")
    if specialty is not None:
        check_specialty(specialty)
    if isinstance(max_age_ms, bool) or not isinstance(max_age_ms, int) or max_age_ms < 0:
        raise ValueError("max_age_ms must be a non-negative int")
    return radius


def check_box(
    south: float, west: float, north: float, east: float, limit: int, max_age_ms: int | None
) -> tuple[float, float, float, float]:
    """Validate a ``within_box`` query; returns the box as floats; ``ValueError`` if bad."""
    south, west = check_point(south, west)
    north, east = check_point(north, east)
    if south > north or west > east:
        raise ValueError("box must have south <= north and west <= east (no antimeridian crossing)")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BOX_LIMIT:
        raise ValueError(f"limit must be an int within [1, {MAX_BOX_LIMIT}]")
    if max_age_ms is not None and (
        isinstance(max_age_ms, bool) or not isinstance(max_age_ms, int) or max_age_ms < 0
    ):
        raise ValueError("max_age_ms must be a non-negative int or None")
    return south, west, north, east


def in_box(lat: float, lon: float, box: tuple[float, float, float, float]) -> bool:
    """Whether ``(lat, lon)`` lies in ``(south, west, north, east)``, edges included."""
    return box[0] <= lat <= box[2] and box[1] <= lon <= box[3]


def nearest_sort_key(item: NearbyDoctor) -> tuple[float, str]:
    """The result order of ``nearest_available``: distance, then doctor id."""
    return item.distance_m, item.doctor_id


class LocationIndex(abc.ABC):
    """Live positions of doctors and the nearest-available search (module docstring: the contract).

    Implementations: ``MemoryLocationIndex(clock=...)`` and ``RedisLocationIndex(redis, keys,
    clock=...)``. All methods are coroutines; all raise ``ValueError`` for invalid arguments before
    changing anything.
    """

    @abc.abstractmethod
    async def upsert(self, position: DoctorPosition) -> bool:
        """Store ``position`` as the doctor's latest. Returns ``False`` (and changes nothing) when the
        stored position has a newer ``ts_ms``, else ``True``."""

    @abc.abstractmethod
    async def upsert_many(self, positions: Sequence[DoctorPosition]) -> int:
        """Store a batch, as ``upsert`` in order (a doctor twice in a batch: the later ``ts_ms`` wins).
        One round trip on Redis; the gateway coalesces position frames on a short tick and calls this.
        Validates the whole batch first. Returns how many positions were applied."""

    @abc.abstractmethod
    async def remove(self, doctor_id: str) -> bool:
        """Forget the doctor's position (the doctor leaves the map and every search). Status and
        specialties are kept. Returns whether a live position was removed."""

    @abc.abstractmethod
    async def get(self, doctor_id: str) -> DoctorPosition | None:
        """The doctor's latest position, stale or not; ``None`` if the index has none (never upserted,
        removed, or forgotten after :data:`POSITION_TTL_MS`)."""

    @abc.abstractmethod
    async def set_specialties(self, doctor_id: str, specialties: Iterable[str]) -> None:
        """Replace the doctor's specialties (may be empty: then only searches without a specialty
        filter find the doctor). Takes effect at once for an available doctor. Kept without TTL."""

    @abc.abstractmethod
    async def get_specialties(self, doctor_id: str) -> frozenset[str]:
        """The doctor's specialties (empty if never set)."""

    @abc.abstractmethod
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
        """The ``k`` closest candidates to ``(lat, lon)``: status ``AVAILABLE``, having ``specialty``
        (any specialty when ``None``), position ``ts_ms >= now - max_age_ms``, distance ``<= radius_m``.
        Sorted by distance, then doctor id; fewer than ``k`` (possibly none) when fewer qualify."""

    @abc.abstractmethod
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
        """Every doctor with a position inside the box (degrees, edges included; ``west <= east``, no
        antimeridian crossing), any status, with its status and specialties; only positions with
        ``ts_ms >= now - max_age_ms`` when ``max_age_ms`` is given. Sorted by doctor id; when more than
        ``limit`` qualify, the first ``limit`` by doctor id. Cost grows with the doctors in the box: this
        is for the console, not the hot path."""

    @abc.abstractmethod
    async def sweep(self) -> int:
        """Reclaim the entries of positions past :data:`POSITION_TTL_MS` (call periodically, e.g. every
        minute). Returns how many doctors were swept. Search results never depend on it having run."""
