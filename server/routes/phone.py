"""Phone confirmation at registration: confirm with the SMS code, or ask for another one
(``server/notify/phone_codes.py``; docs/api.md, "Phone confirmation")."""

from __future__ import annotations

import logging

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from models.enums import Role
from models.repositories import doctors as doctor_repo
from realtime.errors import MESSAGES, ErrorCode
from server.abuse import client_address
from server.errors import ApiError
from server.http import json_response, parse_body
from server.notify.phone_codes import CODE_DIGITS, PhoneCodes
from server.phones import RAW_PHONE_PATTERN, normalise_phone
from server.routes import api
from server.routes.auth import confirming
from server.schemas import AuthOut, Input, user_json
from server.services import Services, services

log = logging.getLogger("tot.auth")


class ConfirmIn(Input):
    """The phone as registered (any usual writing) and the six-digit code it received."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(pattern=RAW_PHONE_PATTERN)
    code: str = Field(pattern=rf"^[0-9]{{{CODE_DIGITS}}}$")


class ResendIn(Input):
    """The phone as registered."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(pattern=RAW_PHONE_PATTERN)


class ResendOut(BaseModel):
    """Always ``accepted: true`` (whether a code was sent is not told); ``expires_in``: seconds a new
    code lives."""

    accepted: bool
    expires_in: int


def _codes(svc: Services) -> PhoneCodes:
    codes = confirming(svc)
    if codes is None:
        raise ApiError(ErrorCode.NOT_FOUND, "phone confirmation is off")
    return codes


def _e164(svc: Services, raw: str) -> str:
    phone = normalise_phone(raw, svc.settings.sms_default_region)
    if phone is None:
        raise ApiError(ErrorCode.INVALID_INPUT, "phone: not a valid phone number", field="phone")
    return phone


@api.route(
    "POST",
    "/v1/auth/phone/confirm",
    summary="Confirm a new account's phone with its SMS code",
    tag="auth",
    body=ConfirmIn,
    response=AuthOut,
    roles=None,
    errors=(404, 429),
)
async def confirm_phone(request: Request) -> Response:
    """Spends the code and answers the account with its first tokens. One refusal for everything
    else, 422 ``wrong_code``: a wrong code (it counts one of ``TOT_PHONE_CODE_ATTEMPTS`` tries, after
    which the code is dead), a code already used, expired or replaced by a newer one, a phone with no
    account awaiting a code; so the answer tells a stranger nothing about the phone. Tries are limited
    like logins (429 ``too_many_attempts``); 404 when confirmation is off."""
    svc = services(request)
    body = await parse_body(request, ConfirmIn)
    codes = _codes(svc)
    phone = _e164(svc, body.phone)
    await svc.auth_limits.admit("confirm", client_address(request), phone)
    user = await codes.confirm(phone, body.code)
    if user is None:
        log.info("phone code refused")
        english, russian = MESSAGES[ErrorCode.WRONG_CODE]
        raise ApiError(ErrorCode.WRONG_CODE, english, field="code", message_ru=russian)
    async with svc.sessions() as session:
        profile = await doctor_repo.get_profile(session, user.id) if user.role == Role.DOCTOR else None
    tokens = svc.tokens.issue(user.id, Role(user.role), version=user.token_version)
    return json_response({"user": user_json(user, profile), "tokens": tokens.as_json()})


@api.route(
    "POST",
    "/v1/auth/phone/resend",
    summary="Send a new SMS code to a phone awaiting confirmation",
    tag="auth",
    body=ResendIn,
    response=ResendOut,
    status=202,
    roles=None,
    errors=(404, 429),
)
async def resend_code(request: Request) -> Response:
    """A new code (the earlier one dies) for the account awaiting confirmation of this phone. Always
    202 ``accepted``, whether or not such an account exists. Limited per phone and per client address
    (``TOT_PHONE_CODE_LIMIT_ACCOUNT``, ``TOT_PHONE_CODE_LIMIT_ADDRESS``: 429 ``too_many_attempts``,
    counted with registrations that sent a code); 404 when confirmation is off."""
    svc = services(request)
    body = await parse_body(request, ResendIn)
    codes = _codes(svc)
    phone = _e164(svc, body.phone)
    await svc.auth_limits.admit("phone_code", client_address(request), phone)
    await codes.resend(phone)
    return json_response({"accepted": True, "expires_in": codes.ttl_ms // 1000}, status_code=202)
