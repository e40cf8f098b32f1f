"""Planned visits over REST: free slots, booking one (a planned call and its doctor's booked time, with
an ``Idempotency-Key``), reading, moving and cancelling a booking. Rules: ``dispatch/booking.py``,
``dispatch/slot_search.py``, ``dispatch/slots.py``; docs/planned-visits.md."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from dispatch.booking import Booked, NewBooking
from dispatch.events import call_summary, epoch_ms
from dispatch.slot_search import search
from geo.limits import MAX_LAT
from geo.time_zones import zone_name_at
from models.enums import Role
from server.http import json_response, parse_body, parse_query
from server.idempotency import idempotency_key
from server.routes import api
from server.routes.calls import CallOut
from server.routes.clinic_catalogue import path_id, who_of
from server.schemas import Input, Text
from server.services import services

BOOKERS = (Role.PATIENT, Role.DISPATCHER, Role.ADMIN)


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("give a time zone (e.g. 2027-03-01T09:00:00+03:00)")
    return value


class SlotQuery(Input):
    """Free slots of ``service_id`` at the patient's point (WGS84 degrees) on the place's local dates
    ``from`` to ``to`` (at most 31)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    service_id: uuid.UUID
    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    from_: dt.date = Field(alias="from", description="first local date, YYYY-MM-DD")
    to: dt.date = Field(description="last local date, YYYY-MM-DD")


class SlotOut(BaseModel):
    """A free slot: ``start``/``end`` ISO-8601 in the place's time zone, also as epoch ms; the travel
    from the doctor's previous visit that day, seconds."""

    doctor_id: uuid.UUID
    doctor_name: str
    start: str
    end: str
    start_ms: int
    end_ms: int
    travel_in_s: int


class SlotListOut(BaseModel):
    """The free slots in time order, and the place's IANA time zone they are written in."""

    service_id: uuid.UUID
    time_zone: str
    items: list[SlotOut]


class SlotIn(Input):
    """A chosen slot: the doctor and the start (ISO-8601 with an offset, as the slot list gives it)."""

    model_config = ConfigDict(extra="forbid")

    doctor_id: uuid.UUID
    start: dt.datetime

    @field_validator("start")
    @classmethod
    def _start_aware(cls, value: dt.datetime) -> dt.datetime:
        return _aware(value)


class MoveIn(Input):
    """The new start (same doctor, service and place)."""

    model_config = ConfigDict(extra="forbid")

    start: dt.datetime

    @field_validator("start")
    @classmethod
    def _start_aware(cls, value: dt.datetime) -> dt.datetime:
        return _aware(value)


class BookingIn(Input):
    """A planned visit to book: the service, the chosen slot and the call's place and details;
    ``patient_id`` only when staff book for a patient."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    service_id: uuid.UUID
    slot: SlotIn
    address: str = Field(min_length=3, max_length=500)
    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    symptoms: Text | None = Field(default=None, max_length=2000)
    patient_id: uuid.UUID | None = None


class RescheduleIn(Input):
    """Where the booking moves."""

    model_config = ConfigDict(extra="forbid")

    slot: MoveIn


class CancelIn(Input):
    """Why the visit is cancelled."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Text = Field(min_length=1, max_length=500)


class BookingOut(BaseModel):
    """A booking and its planned call. ``start``/``end`` ISO-8601 in the place's time zone; ``*_ms``
    epoch ms; ``held_*`` what the doctor's time holds (buffers and travel included)."""

    id: uuid.UUID
    call_id: uuid.UUID
    doctor_id: uuid.UUID
    service_id: uuid.UUID
    time_zone: str
    start: str
    end: str
    start_ms: int
    end_ms: int
    held_from_ms: int
    held_until_ms: int
    travel_in_s: int
    active: bool
    release_reason: str | None
    call: CallOut


def _local(value: dt.datetime, zone: ZoneInfo) -> str:
    return value.astimezone(zone).isoformat()


def booking_json(booked: Booked) -> dict[str, Any]:
    """``BookingOut`` as JSON-ready data."""
    b = booked.booking
    zone_name = zone_name_at(b.lat, b.lon)
    zone = ZoneInfo(zone_name)
    return {
        "id": str(b.id),
        "call_id": str(b.call_id),
        "doctor_id": str(b.doctor_id),
        "service_id": str(b.service_id),
        "time_zone": zone_name,
        "start": _local(b.starts_at, zone),
        "end": _local(b.ends_at, zone),
        "start_ms": epoch_ms(b.starts_at),
        "end_ms": epoch_ms(b.ends_at),
        "held_from_ms": epoch_ms(b.held_from),
        "held_until_ms": epoch_ms(b.held_until),
        "travel_in_s": b.travel_s,
        "active": b.active,
        "release_reason": b.release_reason,
        "call": call_summary(booked.call),
    }


@api.route(
    "GET",
    "/v1/slots",
    summary="Free slots for a planned visit",
    tag="planned visits",
    query=SlotQuery,
    response=SlotListOut,
)
async def list_slots(request: Request) -> Response:
    """Everyone signed in. The verified doctors who offer the service and serve the point's zone, each
    with their free starts: inside their working hours, on the slot grid (``TOT_SLOT_STEP_MIN``), after
    their minimum notice and within 30 days, clear of their booked visits with the buffers and the
    travel between places. 422 naming ``service_id`` (unknown, no longer offered) or ``to``; 422
    ``outside_service_area``."""
    svc = services(request)
    query = parse_query(request, SlotQuery)
    bookings = svc.planned_visits().bookings
    found = await search(
        svc.sessions,
        svc.zones,
        bookings.rules,
        service_id=query.service_id,
        lat=query.lat,
        lon=query.lon,
        first=query.from_,
        last=query.to,
        now=bookings.now(),
    )
    zone = ZoneInfo(found.time_zone)
    items = [
        {
            "doctor_id": str(s.doctor_id),
            "doctor_name": s.doctor_name,
            "start": _local(s.start, zone),
            "end": _local(s.end, zone),
            "start_ms": epoch_ms(s.start),
            "end_ms": epoch_ms(s.end),
            "travel_in_s": s.travel_in_s,
        }
        for s in found.slots
    ]
    return json_response({"service_id": str(found.service.id), "time_zone": found.time_zone, "items": items})


@api.route(
    "POST",
    "/v1/bookings",
    summary="Book a planned visit",
    tag="planned visits",
    body=BookingIn,
    response=BookingOut,
    status=201,
    roles=BOOKERS,
    errors=(409,),
    extra_headers=("Idempotency-Key",),
    alternate=(200,),
)
async def create_booking(request: Request) -> Response:
    """A patient (or staff for a patient, ``patient_id``) books a slot: the planned call and the
    doctor's booked time are made in one transaction. ``Idempotency-Key`` as for ``POST /v1/calls``: a
    retry returns the first booking with 200. 409 ``slot_taken`` (someone else holds that time of the
    doctor, with buffers and travel), 409 ``daily_limit_reached``; 422 naming ``slot.start`` (off the
    grid, outside hours, before the notice, beyond 30 days), ``slot.doctor_id`` (unverified, does not
    offer the service or serve the place) or ``service_id``."""
    svc = services(request)
    body = await parse_body(request, BookingIn)
    key = idempotency_key(request)
    new = NewBooking(
        service_id=body.service_id,
        doctor_id=body.slot.doctor_id,
        start=body.slot.start,
        address=body.address,
        lat=body.lat,
        lon=body.lon,
        symptoms=body.symptoms,
        patient_id=body.patient_id,
    )
    booked = await svc.planned_visits().bookings.book(who_of(request), new, key)
    if booked.created or booked.call.status == "created":
        # As POST /v1/calls: the planned call's dispatch is armed for its lead time (idempotent).
        await svc.dispatch.start(booked.call)
    return json_response(booking_json(booked), status_code=201 if booked.created else 200)


@api.route(
    "GET",
    "/v1/bookings/{booking_id}",
    summary="One booking",
    tag="planned visits",
    response=BookingOut,
    errors=(404,),
)
async def get_booking(request: Request) -> Response:
    """The call's patient, its doctor and staff (404 for anyone else)."""
    svc = services(request)
    booked = await svc.planned_visits().bookings.get(who_of(request), path_id(request, "booking_id"))
    return json_response(booking_json(booked))


@api.route(
    "POST",
    "/v1/bookings/{booking_id}/reschedule",
    summary="Move a booked visit",
    tag="planned visits",
    body=RescheduleIn,
    response=BookingOut,
    roles=BOOKERS,
    errors=(404, 409),
)
async def reschedule_booking(request: Request) -> Response:
    """The patient or staff move the visit to another start of the same doctor (same service and
    place). A start that is taken: 409 ``slot_taken`` and the booking stays where it was; 422 naming
    ``slot.start`` as for a booking; 409 ``invalid_transition`` once the call's dispatch has begun or
    it was cancelled."""
    svc = services(request)
    body = await parse_body(request, RescheduleIn)
    booked = await svc.planned_visits().bookings.reschedule(
        who_of(request), path_id(request, "booking_id"), body.slot.start
    )
    await svc.dispatch.start(booked.call)  # the lead-time step moves with the visit
    return json_response(booking_json(booked))


@api.route(
    "POST",
    "/v1/bookings/{booking_id}/cancel",
    summary="Cancel a booked visit",
    tag="planned visits",
    body=CancelIn,
    response=BookingOut,
    roles=BOOKERS,
    errors=(404, 409),
)
async def cancel_booking(request: Request) -> Response:
    """Cancels the planned call (as ``POST /v1/calls/{id}/cancel``, which does the same): its booked
    time is free again at once."""
    svc = services(request)
    who = who_of(request)
    body = await parse_body(request, CancelIn)
    bookings = svc.planned_visits().bookings
    booked = await bookings.get(who, path_id(request, "booking_id"))
    await svc.dispatch.cancel(who, booked.call.id, body.reason)
    return json_response(booking_json(await bookings.get(who, booked.booking.id)))
