"""``GET /v1/calls/{id}/candidates``: the doctors a dispatcher may assign a call to, nearest first."""

from __future__ import annotations

import dataclasses
import uuid

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import Who
from dispatch.candidates import MAX_CANDIDATES, nearest_for_call
from geo.location_index import MAX_RADIUS_M
from models.enums import Role
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_query
from server.routes import api
from server.schemas import Input
from server.services import services

STAFF = (Role.DISPATCHER, Role.ADMIN)


class CandidatesQuery(Input):
    """``limit`` doctors (1-50, default 10) within ``radius_km`` (default 50); ``any_specialty=true``
    lists doctors of every specialty."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=10, ge=1, le=MAX_CANDIDATES)
    radius_km: float = Field(default=MAX_RADIUS_M / 1000, gt=0, le=MAX_RADIUS_M / 1000, allow_inf_nan=False)
    any_specialty: bool = False


class CandidateOut(BaseModel):
    """A doctor for the call: distance in metres, ETA in seconds, position in WGS84 degrees and the
    fix time in epoch ms; ``serves_zone`` is false for a doctor limited to other zones."""

    doctor_id: uuid.UUID
    name: str
    distance_m: float
    eta_s: float
    lat: float
    lon: float
    fix_ms: int
    rating: float | None
    serves_zone: bool
    specialties: list[str]
    reason: str | None = Field(
        default=None,
        description="`booked`: this call would make the doctor miss a booked visit (the loop skips them)",
    )
    booked_at_ms: int | None = Field(default=None, description="that booked visit's start, epoch ms")


class CandidateList(BaseModel):
    """Available doctors nearest to the call, nearest first."""

    items: list[CandidateOut]


@api.route(
    "GET",
    "/v1/calls/{call_id}/candidates",
    summary="Doctors to assign a call to, nearest first",
    tag="dispatch",
    query=CandidatesQuery,
    response=CandidateList,
    roles=STAFF,
    errors=(404,),
)
async def call_candidates(request: Request) -> Response:
    """Dispatchers and admins: the available doctors with a fresh position (``TOT_CANDIDATE_MAX_AGE``)
    nearest to the call, with its specialty unless ``any_specialty``, for ``POST
    /v1/calls/{id}/assign``. A doctor the call would make miss a booked visit has ``reason``
    ``booked`` (shown, not hidden: a dispatcher may override). Zones are shown (``serves_zone``),
    not enforced: a dispatcher may override."""
    svc = services(request)
    principal = svc.principal(request)
    query = parse_query(request, CandidatesQuery)
    try:
        call_id = uuid.UUID(request.path_params["call_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "call_id: not a UUID", field="call_id") from None
    call = await svc.calls.get(Who(principal.user_id, principal.role), call_id)
    settings = svc.settings
    found = await nearest_for_call(
        call,
        svc.engine.locations,
        svc.sessions,
        settings.dispatch().ranking,
        limit=query.limit,
        radius_m=query.radius_km * 1000,
        max_age_ms=settings.candidate_max_age_s * 1000,
        any_specialty=query.any_specialty,
        now=svc.calls.now(),
        visit_estimate_s=settings.visit_estimate_s,
    )
    return json_response({"items": [dataclasses.asdict(c) for c in found]})
