"""Account administration (admins only): disable and re-enable accounts, change a role.

Each change revokes every token the account holds (``server/auth/revocation.py``): its REST requests are
refused with 401 ``token_revoked`` and its open sockets closed with 4410 on every process, within a
second. A re-enabled account signs in again; a changed role takes effect with the next sign-in.
"""

from __future__ import annotations

import uuid

from pydantic import ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from models.enums import Role
from models.repositories import doctors as doctor_repo
from realtime.errors import ErrorCode
from server.auth.revocation import NoSuchAccount, Revoked, RevokeReason, revoke
from server.errors import ApiError
from server.http import json_response, parse_body
from server.routes import api
from server.schemas import Input, UserOut, user_json
from server.services import Services, services


class RoleIn(Input):
    """The account's new role."""

    model_config = ConfigDict(extra="forbid")

    role: Role = Field(description="patient, doctor, dispatcher or admin")


def _user_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["user_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "user_id: not a UUID", field="user_id") from None


def _not_yourself(svc: Services, request: Request, user_id: uuid.UUID) -> None:
    if svc.principal(request).user_id == user_id:
        raise ApiError(
            ErrorCode.CONFLICT,
            "you cannot disable or demote your own account",
            message_ru="нельзя отключить или понизить свою учётную запись",
        )


async def _apply(
    svc: Services,
    user_id: uuid.UUID,
    reason: RevokeReason,
    *,
    is_active: bool | None = None,
    role: Role | None = None,
) -> Response:
    try:
        outcome: Revoked = await revoke(svc.publisher, user_id, reason, is_active=is_active, role=role)
    except NoSuchAccount:
        raise ApiError(
            ErrorCode.NOT_FOUND, "no such account", message_ru="нет такой учётной записи"
        ) from None
    # This process's own engine at once (the event does it too, on every process, when it arrives).
    await svc.access.revoked(user_id, outcome.valid_from)
    user = outcome.user
    assert user is not None
    profile = None
    if Role(user.role) is Role.DOCTOR:
        async with svc.sessions() as session:
            profile = await doctor_repo.get_profile(session, user.id)
    return json_response(user_json(user, profile))


@api.route(
    "POST",
    "/v1/admin/users/{user_id}/disable",
    summary="Disable an account",
    tag="admin",
    response=UserOut,
    roles=(Role.ADMIN,),
    errors=(409,),
)
async def disable_user(request: Request) -> Response:
    """The account can no longer sign in, and every token it holds is revoked at once: REST answers it
    401 ``token_revoked`` and its open sockets close with 4410. Disabling your own account is a 409
    ``conflict``."""
    svc = services(request)
    user_id = _user_id(request)
    _not_yourself(svc, request, user_id)
    return await _apply(svc, user_id, RevokeReason.DISABLED, is_active=False)


@api.route(
    "POST",
    "/v1/admin/users/{user_id}/enable",
    summary="Re-enable a disabled account",
    tag="admin",
    response=UserOut,
    roles=(Role.ADMIN,),
)
async def enable_user(request: Request) -> Response:
    """The account may sign in again (tokens from before it was disabled stay revoked)."""
    svc = services(request)
    return await _apply(svc, _user_id(request), RevokeReason.ENABLED, is_active=True)


@api.route(
    "PUT",
    "/v1/admin/users/{user_id}/role",
    summary="Change an account's role",
    tag="admin",
    body=RoleIn,
    response=UserOut,
    roles=(Role.ADMIN,),
    errors=(409,),
)
async def set_user_role(request: Request) -> Response:
    """Every token the account holds is revoked (the old role's rights end at once); it signs in again
    with the new role. A doctor made anything else keeps its doctor profile, unused; only an account
    with a doctor profile can be made a doctor. Changing your own role is a 409 ``conflict``."""
    svc = services(request)
    user_id = _user_id(request)
    body = await parse_body(request, RoleIn)
    _not_yourself(svc, request, user_id)
    if body.role is Role.DOCTOR:
        async with svc.sessions() as session:
            if await doctor_repo.get_profile(session, user_id) is None:
                raise ApiError(
                    ErrorCode.CONFLICT,
                    "a doctor needs a doctor profile (licence, specialties): register as a doctor",
                    message_ru="врачу нужен профиль врача (лицензия, специальности): "
                    "зарегистрируйтесь как врач",
                )
    return await _apply(svc, user_id, RevokeReason.ROLE_CHANGED, role=body.role)
