"""Service zones (for the console's map) and the zones a doctor is limited to.

Zones themselves are loaded with ``tot-dispatch zones import`` (an operator's job, not a REST one).
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shapely.geometry import mapping
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import Who
from dispatch.clinic_access import check_manages_doctor
from models.enums import Role
from models.repositories import doctors as doctor_repo
from models.repositories import zones as zone_repo
from models.zones import Zone
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.routes import api
from server.schemas import Input
from server.services import services

ZONE_EDITORS = (Role.ADMIN, Role.CLINIC_ADMIN)
ZONE_READERS = (Role.ADMIN, Role.DISPATCHER, Role.CLINIC_ADMIN, Role.DOCTOR)
MAX_DOCTOR_ZONES = 500


class ZoneQuery(Input):
    """``bbox=west,south,east,north`` (degrees, as GeoJSON orders a bbox): only zones touching it."""

    model_config = ConfigDict(extra="forbid")

    bbox: str | None = Field(
        default=None,
        description="west,south,east,north in WGS84 degrees; zones whose area intersects the box",
        examples=["37.5,55.7,37.7,55.8"],
    )

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bbox(value)
        return value


def parse_bbox(value: str) -> tuple[float, float, float, float]:
    """``"west,south,east,north"`` as floats. Raises ``ValueError`` unless it is four finite numbers
    with west <= east and south <= north inside WGS84 ranges (a box across the antimeridian is not
    supported)."""
    parts = value.split(",")
    if len(parts) != 4:
        raise ValueError("bbox is four comma-separated numbers: west,south,east,north")
    try:
        west, south, east, north = (float(p) for p in parts)
    except ValueError:
        raise ValueError("bbox is four comma-separated numbers: west,south,east,north") from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise ValueError("bbox numbers must be finite")
    if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise ValueError("bbox must have -180 <= west <= east <= 180 and -90 <= south <= north <= 90")
    return west, south, east, north


class ZoneOut(BaseModel):
    """A zone: ``area`` is a GeoJSON MultiPolygon (RFC 7946: longitude first, degrees);
    ``bbox`` is ``[west, south, east, north]`` around it."""

    id: uuid.UUID
    code: str
    name: str
    bbox: list[float]
    area: dict[str, Any]


class ZoneList(BaseModel):
    """Every zone (or those touching ``bbox``), by code."""

    items: list[ZoneOut]


class ZoneRefOut(BaseModel):
    """A zone without its geometry."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str


class DoctorZonesIn(Input):
    """The complete set of zones the doctor serves; an empty list means every zone."""

    model_config = ConfigDict(extra="forbid")

    zone_ids: list[uuid.UUID] = Field(max_length=MAX_DOCTOR_ZONES)


class DoctorZonesOut(BaseModel):
    """The zones a doctor is limited to. ``serves_everywhere`` is true when the list is empty."""

    doctor_id: uuid.UUID
    serves_everywhere: bool
    zones: list[ZoneRefOut]


def zone_json(zone: Zone) -> dict[str, Any]:
    """``ZoneOut`` as JSON-ready data (built directly: areas are large and need no validation)."""
    return {
        "id": str(zone.id),
        "code": zone.code,
        "name": zone.name,
        "bbox": list(zone.area.bounds),
        "area": mapping(zone.area),
    }


def _doctor_zones_json(doctor_id: uuid.UUID, zones: list[Zone]) -> dict[str, Any]:
    return DoctorZonesOut(
        doctor_id=doctor_id,
        serves_everywhere=not zones,
        zones=[ZoneRefOut.model_validate(z) for z in zones],
    ).model_dump(mode="json")


DOCTOR_ID_OR_ME: dict[str, Any] = {"anyOf": [{"type": "string", "format": "uuid"}, {"const": "me"}]}
"""A doctor's id, or ``me`` for the signed-in doctor."""


def _doctor_id(request: Request, me: uuid.UUID) -> uuid.UUID:
    raw = request.path_params["doctor_id"]
    if raw == "me":
        return me
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(
            ErrorCode.INVALID_INPUT, "doctor_id: not a UUID (or 'me')", field="doctor_id"
        ) from None


@api.route("GET", "/v1/zones", summary="List service zones", tag="zones", query=ZoneQuery, response=ZoneList)
async def list_zones(request: Request) -> Response:
    """Every signed-in user. Each zone comes with its area as GeoJSON, for drawing on a map. With no
    zones at all the whole world is the service area (see docs/architecture.md)."""
    svc = services(request)
    svc.principal(request)
    query = parse_query(request, ZoneQuery)
    bbox = parse_bbox(query.bbox) if query.bbox is not None else None
    async with svc.sessions() as session:
        zones = await zone_repo.list_zones(session, bbox=bbox)
    return json_response({"items": [zone_json(z) for z in zones]})


@api.route(
    "GET",
    "/v1/doctors/{doctor_id}/zones",
    summary="The zones a doctor serves",
    tag="zones",
    response=DoctorZonesOut,
    roles=ZONE_READERS,
    errors=(404,),
    path_params={"doctor_id": DOCTOR_ID_OR_ME},
)
async def get_doctor_zones(request: Request) -> Response:
    """Staff read any doctor's zones; a doctor reads their own (``/v1/doctors/me/zones`` works too).
    An empty list means the doctor serves every zone."""
    svc = services(request)
    principal = svc.principal(request)
    doctor_id = _doctor_id(request, principal.user_id)
    if principal.role not in ZONE_READERS or (
        principal.role is Role.DOCTOR and principal.user_id != doctor_id
    ):
        raise ApiError(ErrorCode.FORBIDDEN, "only staff and the doctor themselves see a doctor's zones")
    async with svc.sessions() as session:
        if await doctor_repo.get_profile(session, doctor_id) is None:
            raise ApiError(ErrorCode.NOT_FOUND, "no such doctor")
        zones = await zone_repo.get_doctor_zones(session, doctor_id)
    return json_response(_doctor_zones_json(doctor_id, zones))


@api.route(
    "PUT",
    "/v1/doctors/{doctor_id}/zones",
    summary="Limit a doctor to zones",
    tag="zones",
    body=DoctorZonesIn,
    response=DoctorZonesOut,
    roles=ZONE_EDITORS,
    errors=(404,),
    path_params={"doctor_id": DOCTOR_ID_OR_ME},
)
async def set_doctor_zones(request: Request) -> Response:
    """Admins, and clinic admins for their own clinic's doctors (403 for another clinic's). Replaces
    the doctor's zones with ``zone_ids`` (an empty list: the doctor serves every zone). Unknown zone ids
    are refused whole with 422 ``unknown_zone``, listing them in ``zone_ids``. Takes effect for the next
    candidate search."""
    svc = services(request)
    principal = svc.principal(request)
    if principal.role not in ZONE_EDITORS:
        raise ApiError(ErrorCode.FORBIDDEN, "only admins and clinic admins set a doctor's zones")
    doctor_id = _doctor_id(request, principal.user_id)
    body = await parse_body(request, DoctorZonesIn)
    async with svc.sessions.begin() as session:
        if principal.role is Role.CLINIC_ADMIN:  # their own clinic's doctors only (403 otherwise)
            await check_manages_doctor(session, Who(principal.user_id, principal.role), doctor_id)
        try:
            await zone_repo.set_doctor_zones(session, doctor_id, body.zone_ids)
        except zone_repo.NoSuchDoctor:
            raise ApiError(ErrorCode.NOT_FOUND, "no such doctor") from None
        except zone_repo.UnknownZones as exc:
            raise ApiError(
                ErrorCode.UNKNOWN_ZONE,
                f"zone_ids: no such zone: {', '.join(str(z) for z in exc.missing)}",
                field="zone_ids",
                zone_ids=[str(z) for z in exc.missing],
            ) from None
        zones = await zone_repo.get_doctor_zones(session, doctor_id)
    return json_response(_doctor_zones_json(doctor_id, zones))
