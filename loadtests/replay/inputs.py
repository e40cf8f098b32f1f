"""The replay's inputs: GPS traces and calls, read from CSV files, with GPS glitches filtered out.

Formats (a header row names the columns; their order does not matter; other columns are ignored):

- traces: ``id,ts,lat,lon[,occupied]`` -- one row per fix; ``id`` names the vehicle (one doctor each),
  ``occupied`` is ``1``/``0`` (also ``true``/``false``); without it every vehicle is free all the time;
- calls: ``id,ts,lat,lon`` -- one row per call (the time and place a patient asks for a doctor).

``ts`` is ISO-8601 (``2008-05-28T07:00:00Z``, ``2008-05-28T00:00:00-07:00``; no zone means UTC) or a
number of epoch seconds; a number of 10^11 or more is epoch milliseconds (10^11 s is the year 5138).
Coordinates are WGS84 decimal degrees.

Glitch rule (:class:`GlitchRule`), applied to both files:

1. rows that do not parse, and coordinates outside [-85, 85] x [-180, 180] or exactly (0, 0), are dropped;
2. points farther than ``max_radius_km`` (150 km) from the file's median point (median latitude, median
   longitude) are dropped: the cabspotting day has three fixes 300-500 km off in the Pacific;
3. traces only: a fix that would mean driving faster than ``max_speed_kmh`` (200 km/h) from the
   previous kept fix is dropped, the time between them counted as at least ``min_dt_s`` (30 s) so that
   a few metres of jitter between fixes a second apart are not mistaken for speed; after
   ``reanchor_after`` (3) dropped fixes in a row the trace really moved (a gap in the data), and the
   next fix is kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from geo.distance import haversine_m

EPOCH_MS_THRESHOLD = 1e11
"""A numeric timestamp at or above this is epoch milliseconds, below it epoch seconds."""
_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?$")
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n", ""})


class InputError(ValueError):
    """An input file that cannot be replayed (missing, no header, missing columns)."""


@dataclass(frozen=True, slots=True)
class Fix:
    """One GPS fix: ``ts`` epoch seconds, WGS84 degrees, ``occupied`` (None: not given)."""

    ts: float
    lat: float
    lon: float
    occupied: bool | None = None


@dataclass(frozen=True, slots=True)
class Trace:
    """One vehicle's fixes, oldest first."""

    id: str
    fixes: tuple[Fix, ...]


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One call to replay: ``ts`` epoch seconds, WGS84 degrees."""

    id: str
    ts: float
    lat: float
    lon: float

    @property
    def key(self) -> str:
        """A unique name for the call: ``id`` alone need not be unique (the cabspotting pickups carry the
        cab's id), so the time is added: ``<id>@<epoch ms>``."""
        return f"{self.id}@{round(self.ts * 1000)}"


@dataclass(frozen=True, slots=True)
class GlitchRule:
    """What counts as a GPS glitch (see the module docstring)."""

    max_radius_km: float = 150.0
    max_speed_kmh: float = 200.0
    min_dt_s: float = 30.0
    reanchor_after: int = 3


@dataclass(slots=True)
class ReadStats:
    """What reading a file kept and dropped, by reason (row counts)."""

    rows: int = 0
    kept: int = 0
    unreadable: int = 0
    out_of_range: int = 0
    far: int = 0
    too_fast: int = 0
    duplicates: int = 0
    median: tuple[float, float] = (math.nan, math.nan)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the report."""
        return (
            f"{self.rows} rows, {self.kept} kept; dropped: {self.unreadable} unreadable, "
            f"{self.out_of_range} out of range, {self.far} far from the median, {self.too_fast} too fast, "
            f"{self.duplicates} duplicate times"
        )


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO-8601 (no zone: UTC) or epoch seconds/milliseconds (see the module
    docstring). Raises ``ValueError``."""
    text = text.strip()
    if _NUMBER.match(text):
        value = float(text)
        return value / 1000.0 if abs(value) >= EPOCH_MS_THRESHOLD else value
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def parse_occupied(text: str | None) -> bool | None:
    """``1``/``0``/``true``/``false`` (any case); None when the column is missing. Raises ``ValueError``."""
    if text is None:
        return None
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"occupied: {text!r} is not 0/1")


def _valid_point(lat: float, lon: float) -> bool:
    return (
        math.isfinite(lat)
        and math.isfinite(lon)
        and -85.0 <= lat <= 85.0
        and -180.0 <= lon <= 180.0
        and not (lat == 0.0 and lon == 0.0)
    )


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Rows as dicts keyed by lower-case, stripped column names."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: empty file")
        names = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in names]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} (have {', '.join(names)})")
        for row in reader:
            if row:
                yield dict(zip(names, row, strict=False))


def _median(points: list[tuple[float, float]]) -> tuple[float, float]:
    if not points:
        return (math.nan, math.nan)
    return (statistics.median(p[0] for p in points), statistics.median(p[1] for p in points))


def _near(median: tuple[float, float], lat: float, lon: float, rule: GlitchRule) -> bool:
    return haversine_m(median[0], median[1], lat, lon) <= rule.max_radius_km * 1000.0


def read_traces(path: Path, rule: GlitchRule | None = None) -> tuple[list[Trace], ReadStats]:
    """Traces from ``path`` (``id,ts,lat,lon[,occupied]``), glitches dropped; sorted by id."""
    rule = rule or GlitchRule()
    stats = ReadStats()
    raw: dict[str, list[Fix]] = {}
    for row in _rows(path, ("id", "ts", "lat", "lon")):
        stats.rows += 1
        try:
            fix = Fix(
                parse_timestamp(row["ts"]),
                float(row["lat"]),
                float(row["lon"]),
                parse_occupied(row.get("occupied")),
            )
            vehicle = row["id"].strip()
            if not vehicle:
                raise ValueError("empty id")
        except (ValueError, KeyError):
            stats.unreadable += 1
            continue
        if not _valid_point(fix.lat, fix.lon):
            stats.out_of_range += 1
            continue
        raw.setdefault(vehicle, []).append(fix)
    stats.median = _median([(f.lat, f.lon) for fixes in raw.values() for f in fixes])
    traces = []
    for vehicle in sorted(raw):
        kept = _filter_trace(raw[vehicle], stats, rule)
        if kept:
            traces.append(Trace(vehicle, tuple(kept)))
            stats.kept += len(kept)
    return traces, stats


def _filter_trace(fixes: list[Fix], stats: ReadStats, rule: GlitchRule) -> list[Fix]:
    fixes.sort(key=lambda f: f.ts)
    kept: list[Fix] = []
    dropped_in_a_row = 0
    limit_mps = rule.max_speed_kmh / 3.6
    for fix in fixes:
        if not _near(stats.median, fix.lat, fix.lon, rule):
            stats.far += 1
            continue
        if kept:
            last = kept[-1]
            if fix.ts == last.ts:
                stats.duplicates += 1
                continue
            dt_s = max(fix.ts - last.ts, rule.min_dt_s)
            too_fast = haversine_m(last.lat, last.lon, fix.lat, fix.lon) / dt_s > limit_mps
            if too_fast and dropped_in_a_row < rule.reanchor_after:
                stats.too_fast += 1
                dropped_in_a_row += 1
                continue
        dropped_in_a_row = 0
        kept.append(fix)
    return kept


def read_calls(path: Path, rule: GlitchRule | None = None) -> tuple[list[CallSpec], ReadStats]:
    """Calls from ``path`` (``id,ts,lat,lon``), glitches dropped (rules 1 and 2) and repeated rows (same
    :attr:`CallSpec.key`) kept once; sorted by time, then id."""
    rule = rule or GlitchRule()
    stats = ReadStats()
    calls: list[CallSpec] = []
    for row in _rows(path, ("id", "ts", "lat", "lon")):
        stats.rows += 1
        try:
            call = CallSpec(
                row["id"].strip(), parse_timestamp(row["ts"]), float(row["lat"]), float(row["lon"])
            )
        except (ValueError, KeyError):
            stats.unreadable += 1
            continue
        if not _valid_point(call.lat, call.lon):
            stats.out_of_range += 1
            continue
        calls.append(call)
    stats.median = _median([(c.lat, c.lon) for c in calls])
    near = [c for c in calls if _near(stats.median, c.lat, c.lon, rule)]
    stats.far = len(calls) - len(near)
    near.sort(key=lambda c: (c.ts, c.id))
    kept: list[CallSpec] = []
    seen: set[str] = set()
    for call in near:
        if call.key in seen:
            stats.duplicates += 1
            continue
        seen.add(call.key)
        kept.append(call)
    stats.kept = len(kept)
    return kept, stats


def slice_traces(traces: list[Trace], start: float, end: float) -> list[Trace]:
    """The fixes with ``start <= ts < end`` (epoch seconds); traces left empty are dropped."""
    out = []
    for trace in traces:
        fixes = tuple(f for f in trace.fixes if start <= f.ts < end)
        if fixes:
            out.append(Trace(trace.id, fixes))
    return out


def slice_calls(calls: list[CallSpec], start: float, end: float) -> list[CallSpec]:
    """The calls with ``start <= ts < end`` (epoch seconds)."""
    return [c for c in calls if start <= c.ts < end]


def first_time(traces: list[Trace]) -> float:
    """The earliest fix time (epoch seconds). Raises ``InputError`` when there are no fixes."""
    if not traces:
        raise InputError("no usable fixes in the traces")
    return min(t.fixes[0].ts for t in traces)


def resolve_start(spec: str, tz: str, data_start: float) -> float:
    """The slice start in epoch seconds: ``spec`` is a time of day ``HH:MM[:SS]`` in ``tz`` on the day
    (in ``tz``) of ``data_start``, or a full ISO-8601 time. Raises ``ValueError``."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    if re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", spec.strip()):
        day = dt.datetime.fromtimestamp(data_start, zone).date()
        clock = dt.time.fromisoformat(spec.strip().zfill(5) if len(spec.strip()) == 4 else spec.strip())
        return dt.datetime.combine(day, clock, zone).timestamp()
    moment = dt.datetime.fromisoformat(spec.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()
