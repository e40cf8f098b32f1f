"""The pure rules of planned visits: schedule checks, local time across daylight saving, slots around
booked visits with buffers and travel, the daily limit (dispatch/schedule_rules.py, dispatch/slots.py)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from dispatch.schedule_rules import DayException, Hours, Schedule, ScheduleError, check, parse_hhmm, to_utc
from dispatch.slots import Clash, Fit, Rules, Service, SlotProblem, Visit, fit, open_slots, problem, travel_s

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.UTC
SERVICE = Service(dt.timedelta(minutes=40), dt.timedelta(minutes=10), dt.timedelta(minutes=10))
RULES = Rules()
NOW = dt.datetime(2027, 2, 24, 12, 0, tzinfo=UTC)


def schedule(**extra: object) -> Schedule:
    values: dict[str, object] = {"time_zone": "Europe/Moscow", "weekly": (Hours(0, 9 * 60, 13 * 60),)}
    values.update(extra)
    return Schedule(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        (schedule(time_zone="Europe/Nowhere"), "time_zone"),
        (schedule(time_zone="../etc/passwd"), "time_zone"),
        (schedule(weekly=(Hours(0, 600, 600),)), "weekly.0.end"),
        (schedule(weekly=(Hours(7, 600, 700),)), "weekly.0.weekday"),
        (schedule(weekly=(Hours(0, 540, 780), Hours(1, 540, 600), Hours(0, 720, 800))), "weekly.2"),
        (schedule(exceptions=(DayException(dt.date(2027, 3, 1), False),)), "exceptions.0.off"),
        (schedule(daily_limit=0), "daily_limit"),
    ],
)
def test_a_schedule_that_cannot_be_names_its_field(broken: Schedule, field: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        check(broken)
    assert caught.value.field == field


def test_hours_that_touch_do_not_overlap() -> None:
    check(schedule(weekly=(Hours(0, 540, 780), Hours(0, 780, 1440))))
    assert parse_hhmm("24:00", "x", end=True) == 1440
    with pytest.raises(ScheduleError):
        parse_hhmm("24:00", "x")


def test_local_times_the_clocks_skip_or_repeat() -> None:
    spring = dt.date(2027, 3, 28)  # Europe/Berlin: 02:00 CET -> 03:00 CEST
    assert to_utc(dt.datetime.combine(spring, dt.time(2, 30)), BERLIN) is None
    assert to_utc(dt.datetime.combine(spring, dt.time(3, 0)), BERLIN) == dt.datetime(
        2027, 3, 28, 1, 0, tzinfo=UTC
    )
    autumn = dt.datetime(2027, 10, 31, 2, 30)  # 03:00 CEST -> 02:00 CET: 02:30 happens twice
    assert to_utc(autumn, BERLIN) == dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # the first time


def test_the_night_the_clocks_go_back_holds_one_hour_more() -> None:
    night = Schedule("Europe/Berlin", (), (DayException(dt.date(2027, 10, 31), False, 60, 240),))
    hour = Service(dt.timedelta(hours=1), dt.timedelta(0), dt.timedelta(0))
    now = dt.datetime(2027, 10, 20, tzinfo=UTC)
    slots = open_slots(
        night, hour, dt.date(2027, 10, 31), dt.date(2027, 10, 31), 52.5, 13.4, [], now, Rules(step_min=60)
    )
    # 01:00 CEST, 02:00 CEST (the first 02:00), 03:00 CET: 01:00-04:00 local is four real hours here.
    assert [s.start for s in slots] == [
        dt.datetime(2027, 10, 30, 23, 0, tzinfo=UTC),
        dt.datetime(2027, 10, 31, 0, 0, tzinfo=UTC),
        dt.datetime(2027, 10, 31, 2, 0, tzinfo=UTC),
    ]


def _at(hhmm: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"2027-03-01T{hhmm}:00+03:00").astimezone(UTC)


def _visit(hhmm: str, lat: float = 55.75, lon: float = 37.62) -> Visit:
    start = _at(hhmm)
    return Visit(
        "v", start, start + SERVICE.duration, SERVICE.before, SERVICE.after, lat, lon, dt.date(2027, 3, 1)
    )


def test_buffers_around_a_booked_visit() -> None:
    booked = [_visit("10:00")]
    free = open_slots(
        schedule(), SERVICE, dt.date(2027, 3, 1), dt.date(2027, 3, 1), 55.75, 37.62, booked, NOW, RULES
    )
    starts = [s.start.astimezone(ZoneInfo("Europe/Moscow")).strftime("%H:%M") for s in free]
    assert starts == ["09:00", "11:00", "11:15", "11:30", "11:45", "12:00", "12:15"]


def test_travel_from_a_place_eight_km_away() -> None:
    far = 55.75 + 8000 / 111_195
    assert travel_s(RULES, 55.75, 37.62, far, 37.62) == 23 * 60
    booked = [_visit("09:00")]
    assert fit(schedule(), SERVICE, _at("10:15"), far, 37.62, booked, RULES) is Clash.TAKEN
    placed = fit(schedule(), SERVICE, _at("10:30"), far, 37.62, booked, RULES)
    assert isinstance(placed, Fit) and placed.travel_in_s == 23 * 60
    # ...and back: a visit before an existing one must leave the travel to it.
    assert fit(schedule(), SERVICE, _at("09:00"), far, 37.62, [_visit("10:15")], RULES) is Clash.TAKEN


def test_the_daily_limit() -> None:
    limited = schedule(daily_limit=1)
    assert fit(limited, SERVICE, _at("12:00"), 55.75, 37.62, [_visit("09:00")], RULES) is Clash.FULL


@pytest.mark.parametrize(
    ("start", "why"),
    [
        (_at("09:05"), SlotProblem.MISALIGNED),
        (_at("12:30"), SlotProblem.OUTSIDE_HOURS),
        (dt.datetime(2027, 3, 29, 6, 0, tzinfo=UTC), SlotProblem.TOO_FAR),
        (dt.datetime(1, 1, 1, tzinfo=UTC), SlotProblem.TOO_SOON),
        (dt.datetime(9999, 12, 31, 23, 0, tzinfo=UTC), SlotProblem.TOO_FAR),
    ],
)
def test_why_a_start_is_not_on_offer(start: dt.datetime, why: SlotProblem) -> None:
    assert problem(schedule(), SERVICE, start, NOW, RULES) is why
    assert problem(schedule(), SERVICE, _at("09:00"), NOW, RULES) is None
