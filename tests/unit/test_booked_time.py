"""The rule that keeps booked time clear (dispatch/booked_time.py) and the reminders' counts
(dispatch/booking_reminders.py), as pure functions: the 14:00 booking against urgent calls at 13:30 and
11:00, the travel to the booked place, a planned call's own time, emergencies, released bookings."""

from __future__ import annotations

import datetime as dt
import uuid

from dispatch.booked_time import booking_conflicts, travel_s
from dispatch.booking_reminders import due_count, hours_before, skipped
from dispatch.ranking import RankingSettings
from models.calls import Call
from models.enums import Urgency
from models.visit_bookings import VisitBooking

RANKING = RankingSettings()
HOUR_S = 3600.0
LAT, LON = 55.7558, 37.6173
M_PER_DEG = 111_195.0
FOURTEEN = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
DOCTOR = uuid.uuid4()


def call(urgency: Urgency = Urgency.URGENT, scheduled_at: dt.datetime | None = None) -> Call:
    return Call(id=uuid.uuid4(), urgency=urgency.value, lat=LAT, lon=LON, scheduled_at=scheduled_at)


def booking(start: dt.datetime = FOURTEEN, north_m: float = 0.0, *, active: bool = True) -> VisitBooking:
    return VisitBooking(
        id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        doctor_id=DOCTOR,
        starts_at=start,
        ends_at=start + dt.timedelta(minutes=40),
        lat=LAT + north_m / M_PER_DEG,
        lon=LON,
        active=active,
    )


def conflicts(c: Call, now: dt.datetime, b: VisitBooking, eta_s: float = 336.0) -> bool:
    return DOCTOR in booking_conflicts(c, now, {DOCTOR: eta_s}, {DOCTOR: [b]}, RANKING, HOUR_S)


def test_a_booking_at_14_blocks_an_urgent_call_at_1330_not_at_11() -> None:
    assert conflicts(call(), FOURTEEN - dt.timedelta(minutes=30), booking())
    assert not conflicts(call(), FOURTEEN - dt.timedelta(hours=3), booking())


def test_the_travel_to_the_booked_place_counts() -> None:
    # Back from a one-hour visit at 13:55 (no travel) is in time; 8 km away (23 min) is not.
    now = FOURTEEN - dt.timedelta(hours=1, minutes=5)
    assert not conflicts(call(), now, booking(), eta_s=0)
    assert travel_s(RANKING, LAT, LON, LAT + 8000 / M_PER_DEG, LON) == 23 * 60
    assert conflicts(call(), now, booking(north_m=8000), eta_s=0)


def test_a_visit_already_over_or_released_does_not_count() -> None:
    assert not conflicts(call(), FOURTEEN + dt.timedelta(hours=1), booking())
    assert not conflicts(call(), FOURTEEN - dt.timedelta(minutes=30), booking(active=False))


def test_emergencies_ignore_bookings_and_a_planned_call_counts_from_its_time() -> None:
    now = FOURTEEN - dt.timedelta(minutes=30)
    assert not conflicts(call(Urgency.EMERGENCY), now, booking())
    later = call(Urgency.PLANNED, scheduled_at=FOURTEEN + dt.timedelta(hours=1))
    assert not conflicts(later, now, booking())  # 15:00 is after the 14:00 visit and its travel
    earlier = call(Urgency.PLANNED, scheduled_at=FOURTEEN - dt.timedelta(minutes=20))
    assert conflicts(earlier, FOURTEEN - dt.timedelta(hours=5), booking())


def test_reminder_counts() -> None:
    assert [due_count(FOURTEEN, FOURTEEN - dt.timedelta(hours=h)) for h in (25, 24, 3, 2, 0)] == [
        0,
        1,
        1,
        2,
        2,
    ]
    assert skipped(FOURTEEN, FOURTEEN - dt.timedelta(hours=5)) == 1  # booked 5 h ahead: only the 2-hour one
    assert skipped(FOURTEEN, FOURTEEN - dt.timedelta(days=3)) == 0
    assert [hours_before(1), hours_before(2)] == [24, 2]
