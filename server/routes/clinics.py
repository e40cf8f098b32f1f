"""Clinics: created by admins, listed for everyone signed in (doctors pick theirs)."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from models.enums import Role
from models.repositories import clinics as clinic_repo
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.routes import api
from server.routes.pages import PageQuery
from server.schemas import PHONE_PATTERN, Input
from server.services import services


class ClinicIn(Input):
    """A new clinic."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    phone: str | None = Field(default=None, pattern=PHONE_PATTERN)


class ClinicOut(BaseModel):
    """A clinic."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    address: str | None
    phone: str | None
    created_at: dt.datetime


class ClinicList(BaseModel):
    """A page of clinics, by name."""

    items: list[ClinicOut]
    limit: int
    offset: int


@api.route(
    "POST",
    "/v1/clinics",
    summary="Create a clinic",
    tag="clinics",
    body=ClinicIn,
    response=ClinicOut,
    status=201,
    roles=(Role.ADMIN,),
    errors=(409,),
)
async def create_clinic(request: Request) -> Response:
    """Only admins. A clinic name is unique (409 ``clinic_exists``)."""
    svc = services(request)
    principal = svc.principal(request)
    if principal.role is not Role.ADMIN:
        raise ApiError(ErrorCode.FORBIDDEN, "only admins create clinics")
    body = await parse_body(request, ClinicIn)
    async with svc.sessions.begin() as session:
        try:
            clinic = await clinic_repo.create_clinic(
                session, name=body.name, address=body.address, phone=body.phone
            )
        except clinic_repo.DuplicateClinic:
            raise ApiError(ErrorCode.CLINIC_EXISTS, "a clinic with this name exists", field="name") from None
    return json_response(ClinicOut.model_validate(clinic).model_dump(mode="json"), status_code=201)


@api.route("GET", "/v1/clinics", summary="List clinics", tag="clinics", query=PageQuery, response=ClinicList)
async def list_clinics(request: Request) -> Response:
    """Every signed-in user may list clinics."""
    svc = services(request)
    svc.principal(request)
    query = parse_query(request, PageQuery)
    async with svc.sessions() as session:
        clinics = await clinic_repo.list_clinics(session, limit=query.limit, offset=query.offset)
    items = [ClinicOut.model_validate(c).model_dump(mode="json") for c in clinics]
    return json_response({"items": items, "limit": query.limit, "offset": query.offset})
