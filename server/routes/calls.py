"""Calls and offers over REST: create (idempotent), read, list, history, cancel, visit statuses, and the
dispatcher's manual actions. The rules live in ``dispatch/``; this module only translates HTTP."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import NewCall, Who
from dispatch.events import call_summary, epoch_ms
from dispatch.route import call_route
from geo.limits import MAX_LAT
from models.enums import CallStatus, Role, Urgency
from models.repositories import calls as call_repo
from models.repositories import offers as offer_repo
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.idempotency import idempotency_key
from server.routes import api
from server.routes.pages import PageQuery
from server.schemas import SPECIALTY_PATTERN, Input, Text
from server.services import Services, services

STAFF = (Role.DISPATCHER, Role.ADMIN)


class CallIn(Input):
    """A new call. ``scheduled_at`` (ISO-8601 with a zone) only for planned calls; ``patient_id`` only
    when a dispatcher files a call for a patient who phoned in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    address: str = Field(min_length=3, max_length=500)
    lat: float = Field(ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False)
    urgency: Urgency
    specialty: str = Field(pattern=SPECIALTY_PATTERN)
    symptoms: Text | None = Field(default=None, max_length=2000)
    scheduled_at: dt.datetime | None = None
    patient_id: uuid.UUID | None = None
    price_estimate: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)

    @field_validator("scheduled_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone (e.g. 2026-11-21T18:00:00+03:00)")
        return value


class CallOut(BaseModel):
    """A call. Times are epoch milliseconds; coordinates WGS84 degrees."""

    id: uuid.UUID
    status: CallStatus
    urgency: Urgency
    specialty: str
    address: str
    lat: float
    lon: float
    h3_cell: str
    zone_id: uuid.UUID | None
    symptoms: Text | None
    scheduled_at: int | None
    patient_id: uuid.UUID
    doctor_id: uuid.UUID | None
    created_at: int | None
    assigned_at: int | None
    completed_at: int | None
    cancel_reason: Text | None
    price_final: str | None
    version: int


class CallList(BaseModel):
    """A page of calls, newest first."""

    items: list[CallOut]
    limit: int
    offset: int


class CallListQuery(PageQuery):
    """Filters: ``status`` is a comma-separated list of statuses (``?status=offered,accepted``)."""

    status: list[CallStatus] | None = Field(default=None, description="comma-separated statuses")
    urgency: Urgency | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # One query parameter, split here; the document says so (style form, explode false).
        return [part.strip() for part in value.split(",")] if isinstance(value, str) else value


class EventOut(BaseModel):
    """One status change: from, to, who (user id and role; null for the dispatch loop), why, when."""

    id: uuid.UUID
    from_status: CallStatus | None
    to_status: CallStatus
    actor_id: uuid.UUID | None
    actor_role: str | None
    reason: Text | None
    data: dict[str, Any] | None
    at: int


class EventList(BaseModel):
    """A call's status history, oldest first."""

    items: list[EventOut]


class OfferOut(BaseModel):
    """An offer: distance in metres, ETA in seconds, times in epoch milliseconds."""

    id: uuid.UUID
    call_id: uuid.UUID
    doctor_id: uuid.UUID
    outcome: str
    created_at: int | None
    deadline_at: int | None
    decided_at: int | None
    distance_m: float | None
    eta_s: float | None
    radius_m: float | None


class OfferList(BaseModel):
    """Offers of a call, oldest first."""

    items: list[OfferOut]


class ReasonIn(Input):
    """Why (required to cancel)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Text = Field(min_length=1, max_length=500)


class OptionalReasonIn(Input):
    """Why, optionally."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: Text | None = Field(default=None, max_length=500)


class VisitIn(Input):
    """The doctor's progress. ``price_final`` only with ``completed``."""

    model_config = ConfigDict(extra="forbid")

    status: CallStatus
    price_final: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)


class AssignIn(Input):
    """A dispatcher's assignment (or reassignment) to a doctor."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    doctor_id: uuid.UUID
    reason: Text | None = Field(default=None, max_length=500)


def _who(svc: Services, request: Request) -> Who:
    principal = svc.principal(request)
    return Who(principal.user_id, principal.role)


def _id(request: Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params[name])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, f"{name}: not a UUID", field=name) from None


@api.route(
    "POST",
    "/v1/calls",
    summary="Create a call",
    tag="calls",
    body=CallIn,
    response=CallOut,
    status=201,
    roles=(Role.PATIENT, Role.DISPATCHER, Role.ADMIN),
    errors=(409,),
    extra_headers=("Idempotency-Key",),
    alternate=(200,),
)
async def create_call(request: Request) -> Response:
    """A patient calls a doctor home; a dispatcher files a call for a patient who phoned in
    (``patient_id``). Send an ``Idempotency-Key`` header (up to 128 characters): a retried request with
    the same key returns the first call with 200 instead of creating another. Dispatch starts at once
    (planned calls: ``TOT_PLANNED_LEAD_TIME`` before ``scheduled_at``). A point outside every service
    zone is a 422 ``outside_service_area``."""
    svc = services(request)
    who = _who(svc, request)
    body = await parse_body(request, CallIn)
    key = idempotency_key(request)
    new = NewCall(
        address=body.address,
        lat=body.lat,
        lon=body.lon,
        urgency=body.urgency,
        specialty=body.specialty,
        symptoms=body.symptoms,
        scheduled_at=body.scheduled_at,
        patient_id=body.patient_id,
        price_estimate=body.price_estimate,
    )
    call, created = await svc.calls.create(who, new, key)
    if created or call.status == CallStatus.CREATED.value:
        # A retry of a request whose process died before dispatch started starts it now (idempotent).
        await svc.dispatch.start(call)
    return json_response(call_summary(call), status_code=201 if created else 200)


@api.route("GET", "/v1/calls", summary="List calls", tag="calls", query=CallListQuery, response=CallList)
async def list_calls(request: Request) -> Response:
    """Patients see their own calls, doctors the calls assigned to them, staff all."""
    svc = services(request)
    who = _who(svc, request)
    query = parse_query(request, CallListQuery)
    statuses = [s.value for s in query.status or ()]
    filters: dict[str, Any] = {}
    if who.role is Role.PATIENT:
        filters["patient_id"] = who.user_id
    elif who.role is Role.DOCTOR:
        filters["doctor_id"] = who.user_id
    elif not who.staff:
        raise ApiError(ErrorCode.FORBIDDEN, "your role has no calls")
    async with svc.sessions() as session:
        calls = await call_repo.list_calls(
            session,
            statuses=statuses,
            urgency=None if query.urgency is None else query.urgency.value,
            limit=query.limit,
            offset=query.offset,
            **filters,
        )
    return json_response(
        {"items": [call_summary(c) for c in calls], "limit": query.limit, "offset": query.offset}
    )


@api.route("GET", "/v1/calls/{call_id}", summary="One call", tag="calls", response=CallOut, errors=(404,))
async def get_call(request: Request) -> Response:
    """Its patient, its doctor and staff may read it; for anyone else it does not exist (404)."""
    svc = services(request)
    call = await svc.calls.get(_who(svc, request), _id(request, "call_id"))
    return json_response(call_summary(call))


@api.route(
    "GET",
    "/v1/calls/{call_id}/events",
    summary="A call's status history",
    tag="calls",
    response=EventList,
    errors=(404,),
)
async def call_events(request: Request) -> Response:
    """Every transition, oldest first: from, to, who, why, when."""
    svc = services(request)
    call = await svc.calls.get(_who(svc, request), _id(request, "call_id"))
    async with svc.sessions() as session:
        events = await call_repo.list_events(session, call.id)
    items = [
        {
            "id": str(e.id),
            "from_status": e.from_status,
            "to_status": e.to_status,
            "actor_id": None if e.actor_id is None else str(e.actor_id),
            "actor_role": e.actor_role,
            "reason": e.reason,
            "data": e.data,
            "at": epoch_ms(e.created_at),
        }
        for e in events
    ]
    return json_response({"items": items})


@api.route(
    "GET",
    "/v1/calls/{call_id}/offers",
    summary="A call's offers",
    tag="calls",
    response=OfferList,
    roles=STAFF,
    errors=(404,),
)
async def call_offers(request: Request) -> Response:
    """Staff only: every offer of the call with its outcome, distance, ETA and deadline."""
    svc = services(request)
    who = _who(svc, request)
    if not who.staff:
        raise ApiError(ErrorCode.FORBIDDEN, "only staff see offers")
    call = await svc.calls.get(who, _id(request, "call_id"))
    async with svc.sessions() as session:
        offers = await offer_repo.offers_of_call(session, call.id)
    items = [
        {
            "id": str(o.id),
            "call_id": str(o.call_id),
            "doctor_id": str(o.doctor_id),
            "outcome": o.outcome,
            "created_at": epoch_ms(o.created_at),
            "deadline_at": epoch_ms(o.deadline_at),
            "decided_at": epoch_ms(o.decided_at),
            "distance_m": o.distance_m,
            "eta_s": o.eta_s,
            "radius_m": o.radius_m,
        }
        for o in offers
    ]
    return json_response({"items": items})


@api.route(
    "POST",
    "/v1/calls/{call_id}/cancel",
    summary="Cancel a call",
    tag="calls",
    body=ReasonIn,
    response=CallOut,
    errors=(404, 409),
)
async def cancel_call(request: Request) -> Response:
    """The patient (until the doctor arrives) or staff (always), with a reason. Open offers are
    withdrawn; an assigned doctor is freed and told. A final call is a 409 with its status."""
    svc = services(request)
    body = await parse_body(request, ReasonIn)
    moved = await svc.dispatch.cancel(_who(svc, request), _id(request, "call_id"), body.reason)
    return json_response(call_summary(moved.call))


@api.route(
    "POST",
    "/v1/calls/{call_id}/status",
    summary="Report visit progress",
    tag="calls",
    body=VisitIn,
    response=CallOut,
    roles=(Role.DOCTOR, Role.DISPATCHER, Role.ADMIN),
    errors=(404, 409),
)
async def visit_status(request: Request) -> Response:
    """The assigned doctor: ``en_route``, ``arrived``, ``in_progress``, ``completed`` (with
    ``price_final``). Staff may complete a visit in progress."""
    svc = services(request)
    body = await parse_body(request, VisitIn)
    if body.price_final is not None and body.status is not CallStatus.COMPLETED:
        raise ApiError(ErrorCode.INVALID_INPUT, "price_final: only with completed", field="price_final")
    moved = await svc.dispatch.visit(
        _who(svc, request), _id(request, "call_id"), body.status, body.price_final
    )
    return json_response(call_summary(moved.call))


@api.route(
    "POST",
    "/v1/calls/{call_id}/drop",
    summary="Send an assigned call back to searching",
    tag="calls",
    body=OptionalReasonIn,
    response=CallOut,
    roles=(Role.DOCTOR, Role.DISPATCHER, Role.ADMIN),
    errors=(404, 409),
)
async def drop_call(request: Request) -> Response:
    """The assigned doctor cannot go after all (or a dispatcher takes the call off them): the search
    starts again without them."""
    svc = services(request)
    body = await parse_body(request, OptionalReasonIn)
    moved = await svc.dispatch.drop(_who(svc, request), _id(request, "call_id"), body.reason)
    return json_response(call_summary(moved.call))


@api.route(
    "POST",
    "/v1/calls/{call_id}/assign",
    summary="Assign or reassign a call by hand",
    tag="dispatch",
    body=AssignIn,
    response=CallOut,
    roles=STAFF,
    errors=(404, 409),
)
async def assign_call(request: Request) -> Response:
    """Overrides the offer loop: open offers are withdrawn, a previous doctor is freed. The doctor must
    be verified and not on another call or offer (409 ``doctor_unavailable``)."""
    svc = services(request)
    who = _who(svc, request)
    body = await parse_body(request, AssignIn)
    moved = await svc.dispatch.assign(who, _id(request, "call_id"), body.doctor_id, body.reason)
    return json_response(call_summary(moved.call))


@api.route(
    "POST",
    "/v1/calls/{call_id}/relaunch",
    summary="Re-launch the search of an escalated call",
    tag="dispatch",
    response=CallOut,
    roles=STAFF,
    errors=(404, 409),
)
async def relaunch_call(request: Request) -> Response:
    """A fresh search round: doctors who declined before are asked again."""
    svc = services(request)
    who = _who(svc, request)
    if not who.staff:
        raise ApiError(ErrorCode.FORBIDDEN, "only dispatchers re-launch searches")
    moved = await svc.dispatch.relaunch(who, _id(request, "call_id"))
    return json_response(call_summary(moved.call))


@api.route(
    "POST",
    "/v1/offers/{offer_id}/accept",
    summary="Accept an offer",
    tag="offers",
    response=CallOut,
    roles=(Role.DOCTOR,),
    errors=(404, 409),
)
async def accept_offer(request: Request) -> Response:
    """The same as the ``offer.accept`` socket op. Too late: 409 ``offer_expired``; taken by another
    doctor or withdrawn: 409 ``offer_withdrawn``."""
    svc = services(request)
    moved = await svc.dispatch.accept(_who(svc, request), _id(request, "offer_id"))
    return json_response(call_summary(moved.call))


@api.route(
    "POST",
    "/v1/offers/{offer_id}/decline",
    summary="Decline an offer",
    tag="offers",
    body=OptionalReasonIn,
    roles=(Role.DOCTOR,),
    errors=(404, 409),
)
async def decline_offer(request: Request) -> Response:
    """The same as the ``offer.decline`` socket op: the call goes to the next candidate."""
    svc = services(request)
    body = await parse_body(request, OptionalReasonIn)
    await svc.dispatch.decline(_who(svc, request), _id(request, "offer_id"), body.reason)
    return json_response({"declined": True})


class RouteOut(BaseModel):
    """A GeoJSON Feature: a LineString of [lon, lat] positions and ``properties`` with ``length_m``
    (metres on the WGS84 ellipsoid), ``points``, ``started_at``/``ended_at`` (epoch ms)."""

    type: str
    geometry: dict[str, Any]
    properties: dict[str, Any]


@api.route(
    "GET",
    "/v1/calls/{call_id}/route",
    summary="The doctor's route on a call",
    tag="calls",
    response=RouteOut,
    errors=(404,),
)
async def call_route_geojson(request: Request) -> Response:
    """The assigned doctor's fixes while on the call, oldest first, and the route's length (PostGIS on
    PostgreSQL, GeographicLib on SQLite: the same ellipsoidal measure). The call's parties only."""
    svc = services(request)
    route = await call_route(svc.sessions, _who(svc, request), _id(request, "call_id"))
    return json_response(route)
