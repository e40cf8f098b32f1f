"""Doctor profiles: read, update your own, verification by an admin."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from models.enums import Role
from models.repositories import clinics as clinic_repo
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.routes import api
from server.routes.pages import PageQuery
from server.schemas import SPECIALTY_PATTERN, Input, UserOut, user_json
from server.services import services

STAFF = (Role.ADMIN, Role.DISPATCHER, Role.CLINIC_ADMIN)


class DoctorListQuery(PageQuery):
    """Filters for the doctor list."""

    verified: bool | None = Field(default=None, description="only verified (true) or unverified (false)")
    clinic_id: uuid.UUID | None = Field(default=None, description="only this clinic's doctors")


class DoctorList(BaseModel):
    """A page of doctors."""

    items: list[UserOut]
    limit: int
    offset: int


class ProfileUpdateIn(Input):
    """Fields a doctor may change. A new licence number sends the profile back to unverified."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    specialties: list[Annotated[str, Field(pattern=SPECIALTY_PATTERN)]] | None = Field(
        default=None, min_length=1, max_length=20
    )
    clinic_id: uuid.UUID | None = None
    licence_number: str | None = Field(default=None, min_length=3, max_length=64)


class VerifyIn(Input):
    """``verified: false`` revokes a verification."""

    model_config = ConfigDict(extra="forbid")

    verified: bool = True


def _parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "id: not a UUID", field="id") from None


@api.route(
    "GET",
    "/v1/doctors",
    summary="List doctors",
    tag="doctors",
    query=DoctorListQuery,
    response=DoctorList,
    roles=STAFF,
)
async def list_doctors(request: Request) -> Response:
    """Newest first. Admins use ``verified=false`` to find doctors waiting for verification."""
    svc = services(request)
    principal = svc.principal(request)
    if principal.role not in STAFF:
        raise ApiError(ErrorCode.FORBIDDEN, "only staff can list doctors")
    query = parse_query(request, DoctorListQuery)
    async with svc.sessions() as session:
        rows = await doctor_repo.list_profiles(
            session,
            verified=query.verified,
            clinic_id=query.clinic_id,
            limit=query.limit,
            offset=query.offset,
        )
    return json_response(
        {"items": [user_json(u, p) for u, p in rows], "limit": query.limit, "offset": query.offset}
    )


async def _doctor(request: Request, doctor_id: uuid.UUID) -> Response:
    svc = services(request)
    principal = svc.principal(request)
    async with svc.sessions() as session:
        user = await user_repo.get_user(session, doctor_id)
        profile = await doctor_repo.get_profile(session, doctor_id) if user else None
    if user is None or profile is None:
        raise ApiError(ErrorCode.NOT_FOUND, "no such doctor")
    data = user_json(user, profile)
    if principal.user_id != doctor_id and principal.role not in STAFF:
        data["email"] = data["phone"] = None
    return json_response(data)


# Before /v1/doctors/{doctor_id}: the first route whose path matches serves the request.
@api.route(
    "GET",
    "/v1/doctors/me",
    summary="Your doctor profile",
    tag="doctors",
    response=UserOut,
    roles=(Role.DOCTOR,),
    errors=(404,),
)
async def get_own_doctor(request: Request) -> Response:
    """The signed-in doctor's account and profile (``PATCH`` on the same path updates it)."""
    return await _doctor(request, services(request).principal(request).user_id)


@api.route(
    "GET", "/v1/doctors/{doctor_id}", summary="One doctor", tag="doctors", response=UserOut, errors=(404,)
)
async def get_doctor(request: Request) -> Response:
    """Any authenticated user may read a doctor's name and profile (a patient sees who is coming);
    contact details are shown only to the doctor and to staff."""
    return await _doctor(request, _parse_id(request.path_params["doctor_id"]))


@api.route(
    "PATCH",
    "/v1/doctors/me",
    summary="Update your doctor profile",
    tag="doctors",
    body=ProfileUpdateIn,
    response=UserOut,
    roles=(Role.DOCTOR,),
    errors=(409,),
)
async def update_my_profile(request: Request) -> Response:
    """Specialties, clinic and licence number. ``verified`` and ids cannot be set here (422)."""
    svc = services(request)
    principal = svc.principal(request)
    if principal.role is not Role.DOCTOR:
        raise ApiError(ErrorCode.FORBIDDEN, "only doctors have a doctor profile")
    body = await parse_body(request, ProfileUpdateIn)
    async with svc.sessions.begin() as session:
        user = await user_repo.get_user(session, principal.user_id)
        profile = await doctor_repo.get_profile(session, principal.user_id)
        if user is None or profile is None:
            raise ApiError(ErrorCode.NOT_FOUND, "no doctor profile for this account")
        if body.specialties is not None:
            profile.specialties = sorted(set(body.specialties))
        if "clinic_id" in body.model_fields_set:
            if body.clinic_id is not None and await clinic_repo.get_clinic(session, body.clinic_id) is None:
                raise ApiError(ErrorCode.INVALID_INPUT, "clinic_id: no such clinic", field="clinic_id")
            profile.clinic_id = body.clinic_id
        if body.licence_number is not None and body.licence_number != profile.licence_number:
            if await doctor_repo.licence_taken(session, body.licence_number):
                raise ApiError(
                    ErrorCode.LICENCE_EXISTS,
                    "this licence number is already registered",
                    field="licence_number",
                )
            profile.licence_number = body.licence_number
            await doctor_repo.set_verified(session, profile, False, principal.user_id)
        await session.flush()
    return json_response(user_json(user, profile))


@api.route(
    "POST",
    "/v1/doctors/{doctor_id}/verify",
    summary="Verify (or un-verify) a doctor",
    tag="doctors",
    body=VerifyIn,
    response=UserOut,
    roles=(Role.ADMIN,),
    errors=(404,),
)
async def verify_doctor(request: Request) -> Response:
    """Only admins. A verified doctor can receive calls; who verified and when is recorded."""
    svc = services(request)
    principal = svc.principal(request)
    if principal.role is not Role.ADMIN:
        raise ApiError(ErrorCode.FORBIDDEN, "only admins verify doctors")
    doctor_id = _parse_id(request.path_params["doctor_id"])
    body = await parse_body(request, VerifyIn)
    async with svc.sessions.begin() as session:
        user = await user_repo.get_user(session, doctor_id)
        profile = await doctor_repo.get_profile(session, doctor_id)
        if user is None or profile is None:
            raise ApiError(ErrorCode.NOT_FOUND, "no such doctor")
        await doctor_repo.set_verified(session, profile, body.verified, principal.user_id)
    return json_response(user_json(user, profile))
