"""The calendar feed's document (dispatch/calendar_feed.py) without a database: text that RFC 5545
escapes or folds (commas, semicolons, Cyrillic, a long address) comes back unchanged through
``icalendar``'s parser; a patient without a name gets no DESCRIPTION; first names are the first word."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import icalendar

from dispatch.agenda import Visit, first_name
from dispatch.calendar_feed import ics
from models.calls import Call
from models.clinic_catalogue import ClinicService
from models.visit_bookings import VisitBooking

START = dt.datetime(2027, 3, 1, 7, 0, tzinfo=dt.UTC)


def visit(address: str, name: str, *, active: bool = True, sequence: int = 0) -> Visit:
    call = Call(id=uuid.uuid4(), address=address, status="created" if active else "cancelled")
    service = ClinicService(id=uuid.uuid4(), name="Терапевт на дом", price=Decimal("2500.00"), currency="RUB")
    booking = VisitBooking(
        id=uuid.uuid4(),
        call_id=call.id,
        starts_at=START,
        ends_at=START + dt.timedelta(minutes=40),
        active=active,
        sequence=sequence,
        created_at=START - dt.timedelta(days=2),
        updated_at=START - dt.timedelta(days=1),
    )
    return Visit(booking, call, service, first_name(name))


def test_text_survives_escaping_and_folding() -> None:
    address = "Тверская ул., д. 1; кв. 5, подъезд 2, " + "домофон 15К " * 10
    made = [visit(address, "Анна Петрова"), visit("Lenina 2", "", active=False, sequence=3)]
    calendar = icalendar.Calendar.from_ical(ics(made, START, "TOT Dispatch"))
    events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
    first = events[str(made[0].call.id)]
    assert str(first["LOCATION"]) == address and str(first["SUMMARY"]) == "Терапевт на дом"
    assert str(first["DESCRIPTION"]) == "Анна" and str(first["STATUS"]) == "CONFIRMED"
    assert first.decoded("DTSTART") == START and first.decoded("DTEND") == START + dt.timedelta(minutes=40)
    second = events[str(made[1].call.id)]
    assert "DESCRIPTION" not in second and str(second["STATUS"]) == "CANCELLED"
    assert second.decoded("SEQUENCE") == 3
    assert str(calendar["VERSION"]) == "2.0" and str(calendar["PRODID"]).startswith("-//TOT Dispatch")


def test_first_names() -> None:
    assert first_name("Anna Petrova") == "Anna"
    assert first_name("  Иван   Иванович Петров ") == "Иван"
    assert first_name("") == "" and first_name("   ") == ""
