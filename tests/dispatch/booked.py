"""Booked visits in the in-process dispatch world (tests/dispatch/world.py): a planned call and its
booking as ``POST /v1/bookings`` leaves them, written directly (the slot rules are tested in
tests/integration/test_planned_visits.py), and the clock moved to a call's lead time."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from dispatch.calls import NewCall, Who
from dispatch.publisher import OutboxTransaction
from dispatch.settings import DispatchSettings
from models.calls import Call
from models.clinic_catalogue import ClinicService
from models.clinics import Clinic
from models.enums import Urgency
from models.repositories import visit_bookings as visit_repo
from models.visit_bookings import VisitBooking
from tests.dispatch.world import SPECIALTY, World, offset

SETTINGS = DispatchSettings()
VISIT_MIN = 40
"""The booked service's duration (minutes)."""


async def book(world: World, doctor: Who, at: dt.datetime, north_m: float = 0.0) -> uuid.UUID:
    """A planned call at ``at`` (``north_m`` from the centre) booked with ``doctor``, as
    ``POST /v1/bookings`` leaves it (the call ``created``, its lead-time step armed)."""
    lat, lon = offset(north_m)
    async with world.sessions.begin() as session:
        clinic = Clinic(id=uuid.uuid4(), name=f"Clinic {uuid.uuid4()}")
        session.add(clinic)
        await session.flush()
        service = ClinicService(
            id=uuid.uuid4(),
            clinic_id=clinic.id,
            name="Home visit",
            specialty=SPECIALTY,
            duration_min=VISIT_MIN,
            price=Decimal("3000.00"),
            currency="RUB",
        )
        session.add(service)
    patient = await world.patient()
    new = NewCall(
        address="2 Planned Street",
        lat=lat,
        lon=lon,
        urgency=Urgency.PLANNED,
        specialty=SPECIALTY,
        scheduled_at=at,
    )
    made: list[VisitBooking] = []

    async def attach(tx: OutboxTransaction, call: Call) -> None:
        booking = VisitBooking(
            id=uuid.uuid4(),
            call_id=call.id,
            doctor_id=doctor.user_id,
            service_id=service.id,
            starts_at=at,
            ends_at=at + dt.timedelta(minutes=VISIT_MIN),
            held_from=at,
            held_until=at + dt.timedelta(minutes=VISIT_MIN),
            travel_s=0,
            local_day=at.date(),
            lat=lat,
            lon=lon,
            created_at=world.clock.utcnow(),
            updated_at=world.clock.utcnow(),
        )
        tx.session.add(booking)
        made.append(booking)

    call, created = await world.calls.create(patient, new, idempotency_key=None, attach=attach)
    assert created and made
    await world.listen(f"call:{call.id}")
    await world.loop.start(call)
    await world.settle()
    return call.id


async def booking_row(world: World, call_id: uuid.UUID) -> VisitBooking:
    async with world.sessions() as session:
        row = await visit_repo.booking_of_call(session, call_id)
    assert row is not None
    return row


async def to_lead_time(world: World, at: dt.datetime, *doctors_north: tuple[Who, float]) -> None:
    """Move the clock to one second before ``at - lead``, place the doctors (fresh fixes), then to
    the lead time itself, running what came due."""
    lead = at - dt.timedelta(seconds=SETTINGS.planned_lead_s)
    world.clock.set(int(lead.timestamp() * 1000) - 1000)
    await world.run_due()  # nothing of the call's is due yet (other entries may be: the repair sweep)
    for doctor, north in doctors_north:
        await world.place(doctor, north)
    await world.advance_s(1)
