"""The scale-out engine's LocationIndex: Redis GEO, exact positions and per-H3-cell availability sets.

Layout (``realtime/keys.py``, all under the ``{loc}`` hash tag): a GEO set of every positioned doctor
(box queries), a position string per doctor with a TTL (exact coordinates, fix time and cells), a
``seen`` sorted set (sweep), the doctor record hash shared with DoctorStates (status, specialties,
current cells), and per cell a set of available doctors per specialty.

The nearest search is one Lua script (:data:`geo.location_index_lua.NEAREST`): Python computes the H3
rings around the query point (H3 is not available inside Redis) and sends them with each ring's cell
centres and radii; the script reads the availability sets ring by ring, fetches exact positions only of
those candidates, keeps the best ``k`` by haversine distance and stops as soon as the next ring's lower
bound exceeds the ``k``-th distance. The first call carries the fine rings and the first coarse rings,
so a query settles in one round trip unless its answer lies beyond ~6 km (a rare specialty, a large
radius); then further calls send more coarse rings.

Contract: ``geo/location_index.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from h3.api import basic_int as h3i

from geo import location_index_lua as lua
from geo.cells import (
    COARSE_RESOLUTION,
    FINE_MAX_RING,
    FINE_RESOLUTION,
    GEOMETRY,
    INDEX_RESOLUTIONS,
    cell_of,
    ring,
)
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
    nearest_sort_key,
)
from models.enums import DoctorStatus
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import LOC_ANY_SPECIALTY, Keys, check_doctor_id

UPSERT_CHUNK = 1_000
"""Positions per script call in ``upsert_many``: one call blocks Redis ~5 ms at most; a larger batch
is split into several calls sent in one pipeline (one round trip)."""

SWEEP_CHUNK = 1_000
"""Doctors forgotten per sweep script call (bounds how long one call blocks Redis)."""

COARSE_FIRST_RINGS = 4
"""Coarse rings 0..3 (~6-8 km around the query) go with the first call; each further call sends twice
as many rings as the one before."""


_CELLS_LEN = len(INDEX_RESOLUTIONS) * 16 - 1
"""Length of the ``"<fine> <coarse>"`` suffix of a position string (15 hex digits per H3 cell)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def _opt_float(text: str) -> float | None:
    return None if text == "-" else float(text)


def parse_position(doctor_id: str, value: str) -> DoctorPosition:
    """Decode a position string (format in ``realtime.keys.Keys.loc_position``)."""
    ts, lat, lon, acc, heading, speed = value.split(" ", 6)[:6]
    return DoctorPosition(
        doctor_id, float(lat), float(lon), float(acc), int(ts), _opt_float(heading), _opt_float(speed)
    )


def _ring_args(origin: int, first: int, last: int) -> list[str]:
    """Script arguments for rings ``first..last``: count, then (cells, geometries) per ring."""
    args = [str(last - first + 1)]
    entry = GEOMETRY.entry
    for distance in range(first, last + 1):
        entries = [entry(c) for c in ring(origin, distance)]
        args.append(" ".join([e[3] for e in entries]))
        args.append(" ".join([e[4] for e in entries]))
    return args


class RedisLocationIndex(LocationIndex):
    """Redis :class:`~geo.location_index.LocationIndex`.

    ``redis``: a ``redis.asyncio.Redis`` (bytes or decoded responses); ``keys``: the deployment's key
    factory; ``clock``: engine time in epoch ms (default wall clock; freshness and sweep use it, while
    Redis expires position keys on its own clock); ``position_ttl_ms``: TTL of positions.
    Availability comes from ``RedisDoctorStates`` with the same ``keys`` (shared doctor records).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        clock: Clock | None = None,
        position_ttl_ms: int = POSITION_TTL_MS,
    ) -> None:
        if position_ttl_ms <= 0:
            raise ValueError("position_ttl_ms must be > 0")
        self._redis = redis
        self._keys = keys
        self._clock: Clock = clock or wall_clock_ms
        self._ttl = position_ttl_ms
        self._pos_prefix = keys.loc_position_prefix()
        self._doc_prefix = keys.loc_doctor_prefix()
        self._avail_prefix = keys.loc_available_prefix()
        self._geo_keys = [keys.loc_geo(), keys.loc_seen()]
        self._upsert_script = lua.UPSERT_MANY.register(redis)
        self._remove_script = lua.REMOVE.register(redis)
        self._sweep_script = lua.SWEEP.register(redis)
        self._specs_script = lua.SET_SPECIALTIES.register(redis)
        self._nearest_script = lua.NEAREST.register(redis)
        self._box_script = lua.WITHIN_BOX.register(redis)

    # --- positions --------------------------------------------------------------------------------

    def _upsert_args(self, positions: Sequence[DoctorPosition], now: int) -> list[str]:
        # Two arguments per position (id, position string): redis-py's cost is per argument, and the
        # script reads ts, lat, lon and the cells back out of the string.
        args = [
            self._pos_prefix,
            self._doc_prefix,
            self._avail_prefix,
            str(self._ttl),
            str(now),
            str(_CELLS_LEN),
        ]
        to_cell = h3i.latlng_to_cell
        for p in positions:
            # Hex ids straight from the ints (the geometry cache would compute boundaries we don't
            # need here); one string per resolution of INDEX_RESOLUTIONS, fine first.
            lat, lon = p.lat, p.lon
            cells = " ".join([format(to_cell(lat, lon, res), "x") for res in INDEX_RESOLUTIONS])
            heading = "-" if p.heading_deg is None else repr(p.heading_deg)
            speed = "-" if p.speed_mps is None else repr(p.speed_mps)
            args.append(p.doctor_id)
            args.append(f"{p.ts_ms} {lat!r} {lon!r} {p.accuracy_m!r} {heading} {speed} {cells}")
        return args

    async def upsert(self, position: DoctorPosition) -> bool:
        """See :meth:`LocationIndex.upsert`."""
        checked = check_position(position)
        args = self._upsert_args([checked], self._clock())
        return int(await self._upsert_script(keys=self._geo_keys, args=args)) == 1

    async def upsert_many(self, positions: Sequence[DoctorPosition]) -> int:
        """See :meth:`LocationIndex.upsert_many`: chunks of :data:`UPSERT_CHUNK`, one pipeline."""
        checked = [check_position(p) for p in positions]
        if not checked:
            return 0
        now = self._clock()
        chunks = [checked[i : i + UPSERT_CHUNK] for i in range(0, len(checked), UPSERT_CHUNK)]
        if len(chunks) == 1:
            return int(await self._upsert_script(keys=self._geo_keys, args=self._upsert_args(checked, now)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for chunk in chunks:
                await self._upsert_script(
                    keys=self._geo_keys, args=self._upsert_args(chunk, now), client=pipe
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def remove(self, doctor_id: str) -> bool:
        """See :meth:`LocationIndex.remove`."""
        check_doctor_id(doctor_id)
        args = [self._pos_prefix, self._doc_prefix, self._avail_prefix, doctor_id]
        return int(await self._remove_script(keys=self._geo_keys, args=args)) == 1

    async def get(self, doctor_id: str) -> DoctorPosition | None:
        """See :meth:`LocationIndex.get`."""
        check_doctor_id(doctor_id)
        value = await self._redis.get(self._keys.loc_position(doctor_id))
        return None if value is None else parse_position(doctor_id, _text(value))

    async def sweep(self) -> int:
        """See :meth:`LocationIndex.sweep`. Several short script calls, each at most
        :data:`SWEEP_CHUNK` doctors, so Redis is never blocked for long."""
        now = self._clock()
        args = [
            self._pos_prefix,
            self._doc_prefix,
            self._avail_prefix,
            str(now),
            str(self._ttl),
            str(SWEEP_CHUNK),
        ]
        total = 0
        while True:
            examined, forgotten = await self._sweep_script(keys=self._geo_keys, args=args)
            total += int(forgotten)
            if int(examined) < SWEEP_CHUNK:
                return total

    # --- specialties ------------------------------------------------------------------------------

    async def set_specialties(self, doctor_id: str, specialties: Iterable[str]) -> None:
        """See :meth:`LocationIndex.set_specialties`."""
        check_doctor_id(doctor_id)
        specs = " ".join(sorted(check_specialties(specialties)))
        args = [self._avail_prefix, doctor_id, specs]
        await self._specs_script(keys=[self._keys.loc_doctor(doctor_id)], args=args)

    async def get_specialties(self, doctor_id: str) -> frozenset[str]:
        """See :meth:`LocationIndex.get_specialties`."""
        check_doctor_id(doctor_id)
        value = await self._redis.hget(self._keys.loc_doctor(doctor_id), "specs")
        return frozenset() if value is None else frozenset(_text(value).split())

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
        """See :meth:`LocationIndex.nearest_available`. One script call unless the answer lies beyond
        the first coarse rings (~6 km). A search spanning several calls is not one snapshot: a doctor
        moving meanwhile may be seen at either place."""
        lat, lon = check_point(lat, lon)
        radius = check_search(radius_m, k, specialty, max_age_ms)
        head = [
            self._avail_prefix,
            self._pos_prefix,
            specialty or LOC_ANY_SPECIALTY,
            repr(lat),
            repr(lon),
            repr(radius),
            str(k),
            str(self._clock() - max_age_ms),
        ]
        # One call holds the fine rings and the first coarse rings: a dense query settles on the fine
        # level, a sparse one falls through to the coarse level in the same round trip.
        fine = _ring_args(cell_of(lat, lon, FINE_RESOLUTION), 0, FINE_MAX_RING + 1)
        coarse_origin = cell_of(lat, lon, COARSE_RESOLUTION)
        coarse = _ring_args(coarse_origin, 0, COARSE_FIRST_RINGS)
        settled, found = await self._call_nearest(head, [], [fine, coarse])
        first, count = COARSE_FIRST_RINGS, COARSE_FIRST_RINGS * 2
        while not settled:
            rings = _ring_args(coarse_origin, first, first + count)
            settled, found = await self._call_nearest(head, [d for d, _ in found], [rings])
            first, count = first + count, count * 2
        result = []
        for doctor_id, value in found:
            pos = parse_position(doctor_id, value)
            dist = haversine_m(lat, lon, pos.lat, pos.lon)
            if dist <= radius:
                result.append(NearbyDoctor(doctor_id, dist, pos))
        result.sort(key=nearest_sort_key)
        return result

    async def _call_nearest(
        self, head: list[str], seeds: list[str], levels: list[list[str]]
    ) -> tuple[bool, list[tuple[str, str]]]:
        """One script call: ``(settled, [(doctor_id, position string), ...])``."""
        args = [*head, str(len(seeds)), *seeds, str(len(levels))]
        for rings in levels:
            args += rings
        reply = await self._nearest_script(keys=self._geo_keys[:1], args=args)
        found = [(_text(reply[i]), _text(reply[i + 1])) for i in range(1, len(reply), 2)]
        return int(reply[0]) == 1, found

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
        """See :meth:`LocationIndex.within_box`. GEOSEARCH BYBOX over a slightly larger box finds a
        superset; the exact stored positions decide membership."""
        box = check_box(south, west, north, east, limit, max_age_ms)
        clat, clon = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        # Redis measures a point's east-west offset along the point's own parallel, so the box must be
        # wide enough at the parallel nearest the equator; 1 % and 10 m cover Redis's slightly larger
        # Earth radius and its 52-bit geohash rounding of stored coordinates.
        equatorward = 0.0 if box[0] <= 0.0 <= box[2] else min(box[0], box[2], key=abs)
        half_w = haversine_m(equatorward, clon, equatorward, box[3])
        half_h = max(haversine_m(clat, clon, box[2], clon), haversine_m(clat, clon, box[0], clon))
        width = 2 * half_w * 1.01 + 10.0
        height = 2 * half_h * 1.01 + 10.0
        min_ts = "" if max_age_ms is None else str(self._clock() - max_age_ms)
        args = [
            self._pos_prefix,
            self._doc_prefix,
            repr(clon),
            repr(clat),
            f"{width:.3f}",
            f"{height:.3f}",
            repr(box[0]),
            repr(box[1]),
            repr(box[2]),
            repr(box[3]),
            min_ts,
        ]
        reply = await self._box_script(keys=self._geo_keys[:1], args=args)
        found = []
        for i in range(0, len(reply), 4):
            doctor_id = _text(reply[i])
            found.append(
                MapDoctor(
                    parse_position(doctor_id, _text(reply[i + 1])),
                    DoctorStatus(_text(reply[i + 2])),
                    frozenset(_text(reply[i + 3]).split()),
                )
            )
        found.sort(key=lambda m: m.position.doctor_id)
        return found[:limit]
