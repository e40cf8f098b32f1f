"""Slots: the start times at which a doctor can take a planned visit, and why a given start cannot be.

Pure (no I/O; the caller passes ``now``). Used twice with the same rules: to list slots
(``dispatch/booking.py``, ``GET /v1/slots``) and to check a chosen one when it is booked or a booking is
moved, so a start that is never listed is always refused, and the other way round.

A start is **on offer** when, in the doctor's schedule (``dispatch/schedule_rules.py``):

- it is on the slot grid: a multiple of ``step_min`` minutes after local midnight in the doctor's time
  zone (``TOT_SLOT_STEP_MIN``, 15 by default) and exists on the local clock (DST);
- the visit (``duration``) lies inside one working window of that local date;
- it is at least the schedule's minimum notice after ``now``, and at most the horizon (30 days, as a
  planned call's ``scheduled_at``) after it.

Failing those is ``SlotProblem`` (the API answers 422 naming ``slot.start``). A start on offer may still
be **taken**: each visit holds ``[start - buffer_before, end + buffer_after]`` of its service, and
between two visits of one doctor there must also be the travel from the first place to the second
(:func:`travel_s`: the ranking's ETA, straight-line distance x road factor / speed, rounded up to the
minute; ``dispatch/ranking.py`` gives the sources). A visit's stored hold (``held_from``) reaches back
over the travel from the doctor's previous visit of the same local day, so the database's own check
(the exclusion constraint on PostgreSQL) covers travel too. A local day that already has
``daily_limit`` visits is **full**.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dispatch.ranking import RankingSettings
from dispatch.schedule_rules import Schedule, local_days, local_windows, to_utc, wall_time, window_end_utc
from geo.distance import haversine_m

HORIZON = dt.timedelta(days=30)
"""How far ahead a visit can be booked (the same as a planned call's ``scheduled_at``)."""
DEFAULT_STEP_MIN = 15


@dataclass(frozen=True, slots=True)
class Service:
    """A service's times: the visit's ``duration`` and the doctor's buffers around it."""

    duration: dt.timedelta
    before: dt.timedelta
    after: dt.timedelta


@dataclass(frozen=True, slots=True)
class Visit:
    """A booked visit of the doctor: the visit (UTC), its buffers, its place (WGS84 degrees) and its
    local date in the doctor's zone."""

    key: str
    start: dt.datetime
    end: dt.datetime
    before: dt.timedelta
    after: dt.timedelta
    lat: float
    lon: float
    local_day: dt.date

    @property
    def core_from(self) -> dt.datetime:
        """When the visit's hold starts, travel aside (its buffer before)."""
        return self.start - self.before

    @property
    def core_until(self) -> dt.datetime:
        """When the visit's hold ends (its buffer after)."""
        return self.end + self.after


class SlotProblem(StrEnum):
    """Why a start is not on offer at all (422 ``slot.start``)."""

    MISALIGNED = "not on the slot grid"
    OUTSIDE_HOURS = "outside the doctor's working hours"
    TOO_SOON = "before the doctor's minimum notice"
    TOO_FAR = "beyond the booking horizon"


class Clash(StrEnum):
    """Why a start on offer cannot be booked now (409)."""

    TAKEN = "slot_taken"
    FULL = "daily_limit_reached"


@dataclass(frozen=True, slots=True)
class Rules:
    """The grid step in minutes, the horizon and the ETA model for travel."""

    step_min: int = DEFAULT_STEP_MIN
    horizon: dt.timedelta = HORIZON
    ranking: RankingSettings = field(default_factory=RankingSettings)


@dataclass(frozen=True, slots=True)
class Fit:
    """A start that can be booked: its visit end, local date, and the travel (seconds) from the
    doctor's previous visit that day (0 without one)."""

    start: dt.datetime
    end: dt.datetime
    local_day: dt.date
    travel_in_s: int


def travel_s(rules: Rules, lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    """Driving time in seconds between two places (WGS84 degrees), the ranking's ETA rounded up to a
    whole minute (a booking's times are minutes)."""
    seconds = rules.ranking.eta_s(haversine_m(lat1, lon1, lat2, lon2))
    return math.ceil(seconds / 60) * 60


def _starts_of_day(
    schedule: Schedule, service: Service, day: dt.date, step_min: int
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    zone = schedule.zone
    for start_min, end_min in local_windows(schedule, day):
        window_end = window_end_utc(wall_time(day, end_min), zone)
        first = -(-start_min // step_min) * step_min
        for minute in range(first, end_min, step_min):
            start = to_utc(wall_time(day, minute), zone)
            if start is None:
                continue  # the clocks skip this time (DST)
            end = start + service.duration
            if end > window_end:
                break
            yield start, end


def problem(
    schedule: Schedule, service: Service, start: dt.datetime, now: dt.datetime, rules: Rules
) -> SlotProblem | None:
    """Why ``start`` (aware) is not on offer, or None when it is (see the module docstring). A start
    beyond the horizon, or days in the past, is refused as such before any calendar arithmetic (a
    date at the end of the calendar cannot overflow it)."""
    if start > now + rules.horizon:
        return SlotProblem.TOO_FAR
    if start < now - dt.timedelta(days=1):
        return SlotProblem.TOO_SOON
    zone = schedule.zone
    local = start.astimezone(zone)
    day = local.date()
    minute = local.hour * 60 + local.minute
    if local.second or local.microsecond or minute % rules.step_min or local.fold:
        return SlotProblem.MISALIGNED
    if not any(s == start for s, _ in _starts_of_day(schedule, service, day, rules.step_min)):
        return SlotProblem.OUTSIDE_HOURS
    return _timing(schedule, start, now, rules)


def _timing(schedule: Schedule, start: dt.datetime, now: dt.datetime, rules: Rules) -> SlotProblem | None:
    if start < now + dt.timedelta(minutes=schedule.min_notice_min):
        return SlotProblem.TOO_SOON
    if start > now + rules.horizon:
        return SlotProblem.TOO_FAR
    return None


def fit(
    schedule: Schedule,
    service: Service,
    start: dt.datetime,
    lat: float,
    lon: float,
    visits: Sequence[Visit],
    rules: Rules,
) -> Fit | Clash:
    """Whether a visit at ``start`` at (``lat``, ``lon``) fits between the doctor's ``visits`` (the
    other active bookings; leave out the one being moved): a :class:`Fit`, or the :class:`Clash`."""
    end = start + service.duration
    day = start.astimezone(schedule.zone).date()
    if schedule.daily_limit is not None and sum(v.local_day == day for v in visits) >= schedule.daily_limit:
        return Clash.FULL
    core_from, core_until = start - service.before, end + service.after
    previous: Visit | None = None
    for visit in visits:
        if visit.start <= start:
            if (
                visit.core_until + dt.timedelta(seconds=travel_s(rules, visit.lat, visit.lon, lat, lon))
                > core_from
            ):
                return Clash.TAKEN
            if visit.local_day == day and (previous is None or visit.start > previous.start):
                previous = visit
        elif (
            core_until + dt.timedelta(seconds=travel_s(rules, lat, lon, visit.lat, visit.lon))
            > visit.core_from
        ):
            return Clash.TAKEN
    travel_in = 0 if previous is None else travel_s(rules, previous.lat, previous.lon, lat, lon)
    return Fit(start, end, day, travel_in)


def open_slots(
    schedule: Schedule,
    service: Service,
    first: dt.date,
    last: dt.date,
    lat: float,
    lon: float,
    visits: Sequence[Visit],
    now: dt.datetime,
    rules: Rules,
) -> list[Fit]:
    """Every start on offer and free from the local date ``first`` to ``last`` (in the doctor's zone),
    in time order."""
    found: list[Fit] = []
    for day in local_days(first, last):
        for start, _ in _starts_of_day(schedule, service, day, rules.step_min):
            if _timing(schedule, start, now, rules) is not None:
                continue
            result = fit(schedule, service, start, lat, lon, visits, rules)
            if isinstance(result, Fit):
                found.append(result)
    return found


def next_visit(visits: Iterable[Visit], after: dt.datetime, day: dt.date) -> Visit | None:
    """The first of ``visits`` starting after ``after`` on the local date ``day`` (its travel in comes
    from the visit before it, which a booking may change)."""
    later = [v for v in visits if v.start > after and v.local_day == day]
    return min(later, key=lambda v: v.start, default=None)
