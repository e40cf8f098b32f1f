"""A doctor's schedule for planned visits, as rules: its shape, its checks and its working time.

Pure (no I/O, no clock). Times of day are minutes after local midnight (0-1440) in the schedule's IANA
time zone (``zoneinfo``, the system's tz database or the ``tzdata`` package); instants are aware UTC
datetimes.

**Daylight saving.** Working hours are wall-clock hours: "09:00-13:00" is 09:00-13:00 on the doctor's
clock on every date, whatever the offset that day (Europe/Berlin: 08:00-12:00 UTC in winter, 07:00-11:00
UTC in summer). On the night the clocks go forward, local times that do not exist (02:00-02:59 in
Berlin on the last Sunday of March) start no slot; a window "01:00-05:00" that night holds three real
hours, not four. On the night the clocks go back, a repeated local time is taken at its first
occurrence (``fold=0``). Sources: PEP 495 (``fold``), PEP 615 (``zoneinfo``).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAY_MIN = 24 * 60


class ScheduleError(ValueError):
    """A schedule that cannot be: ``field`` names the input at fault (``weekly.1.end``, ``time_zone``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Hours:
    """Working hours on one weekday (0 = Monday, ISO order), ``start_min`` < ``end_min`` <= 1440."""

    weekday: int
    start_min: int
    end_min: int


@dataclass(frozen=True, slots=True)
class DayException:
    """One date's exception: ``off`` (no weekly hours that date) and/or extra hours
    (``start_min``-``end_min``; both None for a plain day off)."""

    day: dt.date
    off: bool
    start_min: int | None = None
    end_min: int | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """A doctor's schedule: the time zone (IANA name), weekly hours, exceptions by date, the minimum
    notice in minutes and the most visits per local day (None: no limit)."""

    time_zone: str
    weekly: tuple[Hours, ...]
    exceptions: tuple[DayException, ...] = ()
    min_notice_min: int = 0
    daily_limit: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone. Raises :class:`ScheduleError` (``time_zone``) for an unknown name."""
        return zone_info(self.time_zone)


def zone_info(name: str, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone ``name``. Raises :class:`ScheduleError` naming ``field`` when it is not one (an
    offset such as ``+03:00``, a path, an unknown name)."""
    # Only the tz database's own keys: ZoneInfo() alone opens any file under its folder ("Europe" is
    # a directory there, "zone.tab" a table).
    if name not in _iana_names():
        raise ScheduleError(field, "not an IANA time zone name (e.g. Europe/Moscow)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(field, "not an IANA time zone name (e.g. Europe/Moscow)") from None


@functools.cache
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones())


def check(schedule: Schedule) -> None:
    """Raises :class:`ScheduleError` naming the first field at fault: an unknown zone, a weekday outside
    0-6, hours with end <= start or outside the day, two hours of one weekday (or two extra hours of
    one date) that overlap, a negative notice, a daily limit below 1."""
    schedule.zone  # noqa: B018 - raises for an unknown zone
    for i, hours in enumerate(schedule.weekly):
        if not 0 <= hours.weekday <= 6:
            raise ScheduleError(f"weekly.{i}.weekday", "0 (Monday) to 6 (Sunday)")
        _check_span(f"weekly.{i}", hours.start_min, hours.end_min)
    _no_overlap("weekly", [(h.weekday, h.start_min, h.end_min) for h in schedule.weekly])
    extras: list[tuple[dt.date, int, int]] = []
    for i, exc in enumerate(schedule.exceptions):
        if (exc.start_min is None) != (exc.end_min is None):
            raise ScheduleError(f"exceptions.{i}.end", "give both start and end, or neither")
        if exc.start_min is not None and exc.end_min is not None:
            _check_span(f"exceptions.{i}", exc.start_min, exc.end_min)
            extras.append((exc.day, exc.start_min, exc.end_min))
        elif not exc.off:
            raise ScheduleError(f"exceptions.{i}.off", "a date is off, or has extra hours")
    _no_overlap("exceptions", extras)
    if schedule.min_notice_min < 0:
        raise ScheduleError("min_notice_min", "must be >= 0")
    if schedule.daily_limit is not None and schedule.daily_limit < 1:
        raise ScheduleError("daily_limit", "must be >= 1 (or null for none)")


def _check_span(field: str, start: int, end: int) -> None:
    if not 0 <= start < DAY_MIN:
        raise ScheduleError(f"{field}.start", "a time of day, 00:00-23:59")
    if not 0 < end <= DAY_MIN:
        raise ScheduleError(f"{field}.end", "a time of day, 00:01-24:00")
    if end <= start:
        raise ScheduleError(f"{field}.end", "must be after start")


def _no_overlap(field: str, spans: list[tuple[Any, int, int]]) -> None:
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1]))
    for before, after in itertools.pairwise(order):
        (key_a, _, end_a), (key_b, start_b, _) = spans[before], spans[after]
        if key_a == key_b and start_b < end_a:
            raise ScheduleError(f"{field}.{max(before, after)}", "overlaps other hours of the same day")


def local_windows(schedule: Schedule, day: dt.date) -> list[tuple[int, int]]:
    """The working spans of the local date ``day`` as (start_min, end_min), sorted and merged: the
    weekly hours of its weekday unless the date is off, plus its extra hours."""
    exceptions = [e for e in schedule.exceptions if e.day == day]
    spans: list[tuple[int, int]] = []
    if not any(e.off for e in exceptions):
        spans += [(h.start_min, h.end_min) for h in schedule.weekly if h.weekday == day.weekday()]
    spans += [
        (e.start_min, e.end_min) for e in exceptions if e.start_min is not None and e.end_min is not None
    ]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def wall_time(day: dt.date, minute: int) -> dt.datetime:
    """The naive local wall time ``minute`` minutes after midnight of ``day`` (1440: the next midnight)."""
    return dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)


def to_utc(naive: dt.datetime, zone: ZoneInfo) -> dt.datetime | None:
    """The UTC instant of the local wall time ``naive`` in ``zone`` (the first one when the clocks go
    back), or None when the clocks skip it (it does not exist)."""
    aware = naive.replace(tzinfo=zone, fold=0)
    instant = aware.astimezone(dt.UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return instant


def window_end_utc(naive: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant at which a window ending at local ``naive`` ends: its instant, or for a time the
    clocks skip, the earlier reading (no visit runs past the real end)."""
    return min(
        naive.replace(tzinfo=zone, fold=0).astimezone(dt.UTC),
        naive.replace(tzinfo=zone, fold=1).astimezone(dt.UTC),
    )


def local_days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    """Every date from ``first`` to ``last``, both included."""
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)


def parse_hhmm(text: str, field: str, *, end: bool = False) -> int:
    """``"HH:MM"`` as minutes after midnight; ``"24:00"`` only as an ``end``. Raises
    :class:`ScheduleError` naming ``field``."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ScheduleError(field, "a time of day as HH:MM")
    hours, minutes = int(parts[0]), int(parts[1])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise ScheduleError(field, "a time of day as HH:MM (24:00 only as an end)")
    return hours * 60 + minutes


def hhmm(minute: int) -> str:
    """Minutes after midnight as ``"HH:MM"`` (1440 is ``"24:00"``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def from_rows(
    time_zone: str,
    weekly: Iterable[dict[str, Any]],
    exceptions: Iterable[dict[str, Any]],
    min_notice_min: int,
    daily_limit: int | None,
) -> Schedule:
    """A :class:`Schedule` from its stored JSON (``models/schedules.py``)."""
    return Schedule(
        time_zone=time_zone,
        weekly=tuple(Hours(int(h["weekday"]), int(h["start_min"]), int(h["end_min"])) for h in weekly),
        exceptions=tuple(
            DayException(
                dt.date.fromisoformat(e["date"]),
                bool(e.get("off", False)),
                e.get("start_min"),
                e.get("end_min"),
            )
            for e in exceptions
        ),
        min_notice_min=min_notice_min,
        daily_limit=daily_limit,
    )


def to_rows(schedule: Schedule) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The weekly hours and the exceptions as stored JSON (``models/schedules.py``)."""
    weekly = [{"weekday": h.weekday, "start_min": h.start_min, "end_min": h.end_min} for h in schedule.weekly]
    exceptions: list[dict[str, Any]] = []
    for e in schedule.exceptions:
        row: dict[str, Any] = {"date": e.day.isoformat(), "off": e.off}
        if e.start_min is not None:
            row.update(start_min=e.start_min, end_min=e.end_min)
        exceptions.append(row)
    return weekly, exceptions
