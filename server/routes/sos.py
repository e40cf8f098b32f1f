"""SOS over REST (the socket ops ``sos``, ``sos.ack`` and ``sos.resolve`` do the same): a client whose
socket is down can still raise one."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import Who
from geo.limits import MAX_LAT
from models.enums import Role, SosKind
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.routes import api
from server.schemas import Input, Text
from server.services import services

STAFF = (Role.DISPATCHER, Role.ADMIN)


class SosIn(Input):
    """Doctors: ``danger`` or ``complex_call``, with their position (else the last one the server has).
    Patients: ``emergency`` with their ``call``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: SosKind
    lat: float | None = Field(default=None, ge=-MAX_LAT, le=MAX_LAT, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180, le=180, allow_inf_nan=False)
    call: uuid.UUID | None = None
    message: Text | None = Field(default=None, max_length=1000)


class ResolveIn(Input):
    """How it ended."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: Text = Field(min_length=1, max_length=2000)


class SosOut(BaseModel):
    """An alert; times in epoch milliseconds."""

    id: uuid.UUID
    kind: SosKind
    status: str
    raised_by: uuid.UUID
    call: uuid.UUID | None
    lat: float | None
    lon: float | None
    message: str | None
    created_at: int
    acknowledged_at: int | None
    acknowledged_by: uuid.UUID | None
    resolved_at: int | None
    resolved_by: uuid.UUID | None
    resolution_note: str | None
    audit: list[dict[str, Any]] | None = None
    delivered: dict[str, Any] | None = None


class SosList(BaseModel):
    """Alerts, newest first."""

    items: list[SosOut]


class SosQuery(Input):
    """``all=true`` includes resolved alerts."""

    model_config = ConfigDict(extra="forbid")

    all: bool = False
    limit: int = Field(default=100, ge=1, le=500)


def _who(request: Request) -> Who:
    principal = services(request).principal(request)
    return Who(principal.user_id, principal.role)


def _sos_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["sos_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "sos_id: not a UUID", field="sos_id") from None


@api.route(
    "POST",
    "/v1/sos",
    summary="Raise an SOS",
    tag="sos",
    body=SosIn,
    response=SosOut,
    status=201,
    roles=(Role.DOCTOR, Role.PATIENT),
    errors=(404, 409),
)
async def raise_sos(request: Request) -> Response:
    """Stored, then delivered at once to every dispatcher (``sos``) and to the doctors within
    ``TOT_SOS_RADIUS_KM``, and re-sent every ``TOT_SOS_REPEAT`` seconds until acknowledged. A patient's
    emergency also makes the call an emergency."""
    body = await parse_body(request, SosIn)
    if (body.lat is None) != (body.lon is None):
        raise ApiError(ErrorCode.INVALID_INPUT, "lat and lon go together", field="lat")
    alert = await services(request).sos.raise_alert(
        _who(request), body.kind, lat=body.lat, lon=body.lon, call_id=body.call, message=body.message
    )
    return json_response(alert, status_code=201)


@api.route("GET", "/v1/sos", summary="SOS alerts", tag="sos", query=SosQuery, response=SosList, roles=STAFF)
async def list_sos(request: Request) -> Response:
    """The dispatchers' queue: open and acknowledged alerts, newest first."""
    query = parse_query(request, SosQuery)
    items = await services(request).sos.list_open(
        _who(request), include_resolved=query.all, limit=query.limit
    )
    return json_response({"items": items})


@api.route(
    "GET",
    "/v1/sos/{sos_id}",
    summary="One SOS with its audit trail",
    tag="sos",
    response=SosOut,
    errors=(404,),
)
async def get_sos(request: Request) -> Response:
    """Staff, or whoever raised it; ``audit`` lists every step (raised, delivered, repeated,
    acknowledged, resolved) with who and when."""
    return json_response(await services(request).sos.get(_who(request), _sos_id(request)))


@api.route(
    "POST",
    "/v1/sos/{sos_id}/acknowledge",
    summary="Acknowledge an SOS",
    tag="sos",
    response=SosOut,
    roles=STAFF,
    errors=(404,),
)
async def acknowledge_sos(request: Request) -> Response:
    """The repeats stop; the raiser is told. Acknowledging twice is harmless."""
    return json_response(await services(request).sos.acknowledge(_who(request), _sos_id(request)))


@api.route(
    "POST",
    "/v1/sos/{sos_id}/resolve",
    summary="Resolve an SOS",
    tag="sos",
    body=ResolveIn,
    response=SosOut,
    roles=STAFF,
    errors=(404, 409),
)
async def resolve_sos(request: Request) -> Response:
    """Closes the alert with a note (acknowledging it first if nobody had)."""
    body = await parse_body(request, ResolveIn)
    return json_response(await services(request).sos.resolve(_who(request), _sos_id(request), body.note))
