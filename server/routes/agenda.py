"""Booked visits read back over REST: a doctor's agenda (``GET /v1/doctors/{id | me}/agenda``), a
patient's own visits (``GET /v1/bookings?scope=upcoming|past``), and the doctor's secret calendar feed
(``POST /v1/doctors/me/calendar-token``, ``GET /v1/calendar/{token}.ics``). Rules:
``dispatch/agenda.py``, ``dispatch/calendar_feed.py``; docs/planned-visits.md."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.agenda import MAX_DAYS, Visit
from dispatch.calendar_feed import TOKEN_PATTERN
from dispatch.events import epoch_ms
from geo.time_zones import zone_name_at
from models.enums import Role
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_query
from server.routes import api
from server.routes.clinic_catalogue import who_of
from server.routes.schedules import doctor_id_of
from server.routes.zones import DOCTOR_ID_OR_ME
from server.schemas import Input
from server.services import services

READERS = (Role.DOCTOR, Role.CLINIC_ADMIN, Role.DISPATCHER, Role.ADMIN)
FEED_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


class AgendaQuery(Input):
    """The doctor's local dates ``from`` (default today in their zone) for ``days`` days (1-31)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: dt.date | None = Field(default=None, alias="from", description="first local date, YYYY-MM-DD")
    days: int = Field(default=7, ge=1, le=MAX_DAYS)


class VisitsQuery(Input):
    """``upcoming`` (soonest first) or ``past`` (latest first), at most ``limit``."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["upcoming", "past"] = "upcoming"
    limit: int = Field(default=50, ge=1, le=200)


class VisitService(BaseModel):
    """The visit's service: name, minutes, price (decimal string) in ``currency``."""

    id: uuid.UUID
    name: str
    duration_min: int
    price: str
    currency: str


class VisitOut(BaseModel):
    """A booked visit. ``start``/``end`` ISO-8601 in ``time_zone`` (the doctor's zone in an agenda, the
    place's in a patient's list), also epoch ms. ``status`` the call's; ``cancelled`` whether it was
    cancelled. ``patient_first_name``: the only part of the patient's name shown."""

    booking_id: uuid.UUID
    call_id: uuid.UUID
    doctor_id: uuid.UUID
    status: str
    cancelled: bool
    time_zone: str
    start: str
    end: str
    start_ms: int
    end_ms: int
    address: str
    lat: float
    lon: float
    symptoms: str | None
    patient_first_name: str
    service: VisitService


class AgendaOut(BaseModel):
    """A doctor's visits on local dates ``from`` .. ``from + days - 1`` in ``time_zone``, in start order."""

    model_config = ConfigDict(populate_by_name=True)

    doctor_id: uuid.UUID
    time_zone: str
    from_: dt.date = Field(alias="from")
    days: int
    items: list[VisitOut]


class VisitListOut(BaseModel):
    """The patient's visits of one scope."""

    scope: str
    items: list[VisitOut]


class CalendarTokenOut(BaseModel):
    """The feed's new secret address: ``token`` (shown once, never stored) and ``path``
    (``/v1/calendar/<token>.ics``)."""

    token: str
    path: str


def visit_json(visit: Visit, zone_name: str) -> dict[str, Any]:
    """``VisitOut`` as JSON-ready data, times in ``zone_name``."""
    b, call, svc = visit.booking, visit.call, visit.service
    zone = ZoneInfo(zone_name)
    return {
        "booking_id": str(b.id),
        "call_id": str(call.id),
        "doctor_id": str(b.doctor_id),
        "status": call.status,
        "cancelled": visit.cancelled,
        "time_zone": zone_name,
        "start": b.starts_at.astimezone(zone).isoformat(),
        "end": b.ends_at.astimezone(zone).isoformat(),
        "start_ms": epoch_ms(b.starts_at),
        "end_ms": epoch_ms(b.ends_at),
        "address": call.address,
        "lat": call.lat,
        "lon": call.lon,
        "symptoms": call.symptoms,
        "patient_first_name": visit.patient_first_name,
        "service": {
            "id": str(svc.id),
            "name": svc.name,
            "duration_min": svc.duration_min,
            "price": str(svc.price),
            "currency": svc.currency,
        },
    }


@api.route(
    "GET",
    "/v1/doctors/{doctor_id}/agenda",
    summary="A doctor's booked visits, day by day",
    tag="planned visits",
    query=AgendaQuery,
    response=AgendaOut,
    roles=READERS,
    errors=(404,),
    path_params={"doctor_id": DOCTOR_ID_OR_ME},
)
async def get_agenda(request: Request) -> Response:
    """The doctor (``me``), an admin, a dispatcher, or the admin of the doctor's clinic (403 for another
    clinic's doctor, and for another doctor). Visits starting on the doctor's local dates ``from`` (default
    today) for ``days`` days, in start order, cancelled ones included (``cancelled`` true); times in the
    doctor's schedule's zone (UTC without a schedule)."""
    query = parse_query(request, AgendaQuery)
    agenda = (
        await services(request)
        .planned_visits()
        .agenda.agenda(who_of(request), doctor_id_of(request), query.from_, query.days)
    )
    return json_response(
        {
            "doctor_id": str(agenda.doctor_id),
            "time_zone": agenda.time_zone,
            "from": agenda.first.isoformat(),
            "days": agenda.days,
            "items": [visit_json(v, agenda.time_zone) for v in agenda.visits],
        }
    )


@api.route(
    "GET",
    "/v1/bookings",
    summary="Your own booked visits, upcoming or past",
    tag="planned visits",
    query=VisitsQuery,
    response=VisitListOut,
    roles=(Role.PATIENT,),
)
async def list_my_visits(request: Request) -> Response:
    """The signed-in patient's own visits only. ``upcoming``: not cancelled, not completed and not yet
    ended, soonest first; ``past``: the others, latest first. Times in the place's zone."""
    query = parse_query(request, VisitsQuery)
    visits = (
        await services(request)
        .planned_visits()
        .agenda.of_patient(who_of(request), upcoming=query.scope == "upcoming", limit=query.limit)
    )
    items = [visit_json(v, zone_name_at(v.booking.lat, v.booking.lon)) for v in visits]
    return json_response({"scope": query.scope, "items": items})


@api.route(
    "POST",
    "/v1/doctors/me/calendar-token",
    summary="Make (or replace) your secret calendar feed address",
    tag="planned visits",
    response=CalendarTokenOut,
    status=201,
    roles=(Role.DOCTOR,),
)
async def rotate_calendar_token(request: Request) -> Response:
    """The signed-in doctor's new feed token. The previous address, if any, answers 404 from now on."""
    principal = services(request).principal(request)
    token = await services(request).planned_visits().feeds.rotate(principal.user_id)
    return json_response({"token": token, "path": f"/v1/calendar/{token}.ics"}, status_code=201)


@api.route(
    "GET",
    "/v1/calendar/{token}.ics",
    summary="A doctor's booked visits as an ICS calendar (no account)",
    tag="planned visits",
    roles=None,
    response_media_type="text/calendar",
    errors=(404,),
    path_params={"token": {"type": "string", "pattern": TOKEN_PATTERN}},
)
async def calendar_feed(request: Request) -> Response:
    """Public: the token is the credential. One ``VEVENT`` per visit from 30 days ago on, ``UID`` the
    call's id, cancelled ones ``STATUS:CANCELLED``. An unknown or replaced token: 404 ``not_found``."""
    body = await services(request).planned_visits().feeds.feed(request.path_params["token"])
    if body is None:
        raise ApiError(ErrorCode.NOT_FOUND, "no such calendar")
    return Response(body, media_type="text/calendar; charset=utf-8", headers=FEED_HEADERS)
