"""Accounts: register, log in, refresh tokens, read your own account."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated, Any
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response

from models.enums import SELF_REGISTRATION_ROLES, Role
from models.repositories import clinics as clinic_repo
from models.repositories import doctors as doctor_repo
from models.repositories import phone_codes as phone_repo
from models.repositories import users as user_repo
from models.users import valid_from
from realtime.errors import MESSAGES, ErrorCode
from server.abuse import client_address
from server.accounts import add_account
from server.auth.access import revoked
from server.auth.passwords import hash_password_off_loop, verify_password_off_loop
from server.auth.revocation import NoSuchAccount, RevokeReason, revoke
from server.auth.tokens import TokenError
from server.errors import ApiError
from server.http import json_response, parse_body
from server.notify.phone_codes import PhoneCodes
from server.notify.templates import from_accept_language
from server.phones import RAW_PHONE_PATTERN, looks_like_phone, normalise_phone
from server.routes import api
from server.schemas import (
    EMAIL_PATTERN,
    SPECIALTY_PATTERN,
    AuthOut,
    Input,
    TokensOut,
    UserOut,
    user_json,
)
from server.services import Services, services

log = logging.getLogger("tot.auth")

PASSWORD_MIN, PASSWORD_MAX = 8, 256


class RegisterIn(Input):
    """Self-registration. ``role`` may only be ``patient`` or ``doctor``; doctors also give a licence
    number and their specialties and start unverified."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(default=None, pattern=EMAIL_PATTERN, max_length=254)
    phone: str | None = Field(
        default=None,
        pattern=RAW_PHONE_PATTERN,
        description="as people write it (+7 999 123-45-67, 89991234567); stored in E.164 (server/phones.py)",
    )
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    full_name: str = Field(min_length=1, max_length=200)
    role: str = Field(default=Role.PATIENT.value, description="patient or doctor")
    licence_number: str | None = Field(default=None, min_length=3, max_length=64)
    specialties: list[Annotated[str, Field(pattern=SPECIALTY_PATTERN)]] = Field(
        default_factory=list, max_length=20
    )
    clinic_id: UUID | None = None

    @model_validator(mode="after")
    def _login_given(self) -> RegisterIn:
        if self.email is None and self.phone is None:
            raise ValueError("give an email or a phone number")
        return self


class RegisterOut(BaseModel):
    """The account; ``tokens`` null while its phone awaits the SMS code (``confirmation`` is then
    ``sms``: confirm with ``POST /v1/auth/phone/confirm``, which answers the tokens)."""

    user: UserOut
    tokens: TokensOut | None
    confirmation: str | None = Field(description="sms while the phone awaits its code, else null")


class LoginIn(Input):
    """``login`` is the account's email or its phone number (as people write it: normalised to E.164
    like registration's)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    login: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class RefreshIn(Input):
    """A refresh token from login, registration or an earlier refresh."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=10, max_length=4096)


def _doctor_fields(body: RegisterIn, role: Role) -> tuple[str, list[str]] | None:
    """The licence and specialties a doctor must give; raises 422 when missing or given by a patient."""
    if role is not Role.DOCTOR:
        for name in ("licence_number", "clinic_id"):
            if getattr(body, name) is not None:
                raise ApiError(ErrorCode.INVALID_INPUT, f"{name}: only doctors give this", field=name)
        if body.specialties:
            raise ApiError(
                ErrorCode.INVALID_INPUT, "specialties: only doctors give this", field="specialties"
            )
        return None
    if body.licence_number is None:
        raise ApiError(
            ErrorCode.INVALID_INPUT, "licence_number: required for doctors", field="licence_number"
        )
    if not body.specialties:
        raise ApiError(ErrorCode.INVALID_INPUT, "specialties: give at least one", field="specialties")
    return body.licence_number, body.specialties


def _phone(svc: Services, raw: str | None) -> str | None:
    """``raw`` in E.164, or None when not given; raises 422 ``invalid_input`` (field ``phone``) for a
    number ``phonenumbers`` finds impossible."""
    if raw is None:
        return None
    phone = normalise_phone(raw, svc.settings.sms_default_region)
    if phone is None:
        raise ApiError(ErrorCode.INVALID_INPUT, "phone: not a valid phone number", field="phone")
    return phone


def confirming(svc: Services) -> PhoneCodes | None:
    """The phone codes when confirmation is in effect (the setting on and an SMS gateway), else None."""
    codes = svc.notify.phone_codes if svc.notify is not None else None
    return codes if codes is not None and codes.enabled else None


@api.route(
    "POST",
    "/v1/auth/register",
    summary="Register as a patient or a doctor",
    tag="auth",
    body=RegisterIn,
    response=RegisterOut,
    status=201,
    roles=None,
    errors=(403, 409, 429),
)
async def register(request: Request) -> Response:
    """Creates the account and returns it with tokens. A phone is normalised to E.164
    (``phonenumbers``; numbers without ``+`` read in ``TOT_SMS_DEFAULT_REGION``). With phone
    confirmation in effect, an account given a phone gets no tokens yet (``tokens`` null,
    ``confirmation`` ``sms``): a six-digit code goes to the phone, and ``POST /v1/auth/phone/confirm``
    answers the tokens. An email or phone already in use is answered like a new account (201, the same
    shape; tokens, when given, belong to no account and the first use refuses them with 401), and the
    owner of a taken phone gets an SMS notice instead of a code: the answer does not tell a stranger
    which emails or phones exist (docs/api.md, "Registration and existing accounts"). A taken licence
    number is a 409 ``licence_exists``; asking for any role but patient or doctor is a 403
    ``role_not_allowed`` (staff accounts are created by an admin with the CLI). Too many tries from
    this address or for this email or phone, or too many codes for this phone: 429
    ``too_many_attempts`` with ``Retry-After``."""
    svc = services(request)
    body = await parse_body(request, RegisterIn)
    phone = _phone(svc, body.phone)
    address = client_address(request)
    await svc.auth_limits.admit("register", address, body.email or phone)
    codes = confirming(svc) if phone is not None else None
    if codes is not None:
        await svc.auth_limits.admit("phone_code", address, phone)
    try:
        role = Role(body.role)
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "role: must be patient or doctor", field="role") from None
    if role not in SELF_REGISTRATION_ROLES:
        raise ApiError(
            ErrorCode.ROLE_NOT_ALLOWED, "you can register only as a patient or a doctor", field="role"
        )
    doctor_fields = _doctor_fields(body, role)
    # Hashed before the session opens: a session holds the embedded database (models/sqlite_driver.py).
    async with svc.hash_gate.slot():
        password_hash = await hash_password_off_loop(body.password)
    licence, specialties = doctor_fields or (None, [])
    language = from_accept_language(request.headers.get("accept-language"))
    code: tuple[str, str] | None = None
    try:
        async with svc.sessions.begin() as session:
            if body.clinic_id is not None and await clinic_repo.get_clinic(session, body.clinic_id) is None:
                raise ApiError(ErrorCode.INVALID_INPUT, "clinic_id: no such clinic", field="clinic_id")
            if confirming(svc) is not None:
                # Nobody owns an account before its phone's code came back: a new registration with
                # its phone or its e-mail takes them over (a stranger cannot hold them hostage).
                await phone_repo.drop_unconfirmed(session, phone, user_repo.normalize_email(body.email))
            try:
                user, profile = await add_account(
                    session,
                    role=role,
                    full_name=body.full_name,
                    password_hash=password_hash,
                    email=body.email,
                    phone=phone,
                    licence_number=licence,
                    specialties=specialties,
                    clinic_id=body.clinic_id,
                    language=language,
                )
            except doctor_repo.DuplicateLicence:
                raise ApiError(
                    ErrorCode.LICENCE_EXISTS,
                    "this licence number is already registered",
                    field="licence_number",
                ) from None
            if codes is not None:
                user.phone_confirmed = False  # flushed with the code's row
                code = await codes.issue(session, user.id)
    except user_repo.DuplicateAccount as exc:
        # Rolled back; answered like a new account (docs/api.md). The owner of a taken phone is told.
        log.info("registration for a taken email or phone answered as new", extra={"role": role.value})
        if codes is not None and phone is not None and exc.field == "phone":
            await _notify_owner(svc, codes, phone)
        body_out = _phantom(svc, body, phone, role, licence, specialties, confirm=codes is not None)
        return json_response(body_out, status_code=201)
    if codes is not None and code is not None and phone is not None:
        codes.send_code(phone, user.id, code[0], code[1], language)
        return json_response(
            {"user": user_json(user, profile), "tokens": None, "confirmation": "sms"}, status_code=201
        )
    tokens = svc.tokens.issue(user.id, role, version=user.token_version)
    return json_response(
        {"user": user_json(user, profile), "tokens": tokens.as_json(), "confirmation": None}, status_code=201
    )


async def _notify_owner(svc: Services, codes: PhoneCodes, phone: str) -> None:
    """An SMS notice to the owner of a taken phone, in their language."""
    async with svc.sessions() as session:
        owner = await phone_repo.by_phone(session, phone)
    if owner is not None:
        codes.send_taken_notice(phone, owner.language)


def _phantom(
    svc: Services,
    body: RegisterIn,
    phone: str | None,
    role: Role,
    licence: str | None,
    specialties: list[str],
    *,
    confirm: bool,
) -> dict[str, Any]:
    """The 201 body a new account would get, for an account that is not created: a fresh id that no
    account has, the fields as given, and (without confirmation) tokens signed for that id (refused
    with 401 on first use)."""
    user_id = uuid4()
    user: dict[str, Any] = {
        "id": str(user_id),
        "email": user_repo.normalize_email(body.email),
        "phone": phone,
        "full_name": body.full_name,
        "role": role.value,
        "is_active": True,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "doctor": None,
    }
    if licence is not None:
        user["doctor"] = {
            "clinic_id": str(body.clinic_id) if body.clinic_id else None,
            "licence_number": licence,
            "specialties": specialties,
            "verified": False,
            "verified_at": None,
            "rating_avg": None,
            "rating_count": 0,
        }
    if confirm:
        return {"user": user, "tokens": None, "confirmation": "sms"}
    return {"user": user, "tokens": svc.tokens.issue(user_id, role).as_json(), "confirmation": None}


@api.route(
    "POST",
    "/v1/auth/login",
    summary="Log in with email or phone and password",
    tag="auth",
    body=LoginIn,
    response=AuthOut,
    roles=None,
    errors=(401, 403, 429),
)
async def login(request: Request) -> Response:
    """A wrong login or password is the same 401 ``invalid_credentials`` (no account enumeration); a
    deactivated account is a 403 ``account_disabled``; the right password of an account whose phone
    awaits its SMS code a 403 ``phone_unconfirmed``. A phone login is normalised like registration's.
    Too many tries from this address or for this login: 429 ``too_many_attempts`` with
    ``Retry-After``; too many password checks under way in this process: 503 ``busy`` with
    ``Retry-After`` (server/abuse.py)."""
    svc = services(request)
    body = await parse_body(request, LoginIn)
    login = body.login
    if looks_like_phone(login):
        login = normalise_phone(login, svc.settings.sms_default_region) or login
    await svc.auth_limits.admit("login", client_address(request), login)
    svc.hash_gate.check()  # a full gate refuses before the database is read: shedding stays cheap
    async with svc.sessions() as session:
        user = await user_repo.find_by_login(session, login)
        profile = (
            await doctor_repo.get_profile(session, user.id)
            if user is not None and user.role == Role.DOCTOR
            else None
        )
    # Verified after the session closed: it holds the embedded database (models/sqlite_driver.py).
    async with svc.hash_gate.slot():
        verified = await verify_password_off_loop(user.password_hash if user else None, body.password)
    if not verified or user is None:
        raise ApiError(ErrorCode.INVALID_CREDENTIALS, "wrong login or password")
    if not user.is_active:
        raise ApiError(ErrorCode.ACCOUNT_DISABLED, "this account is disabled")
    if not user.phone_confirmed and confirming(svc) is not None:
        english, russian = MESSAGES[ErrorCode.PHONE_UNCONFIRMED]
        raise ApiError(ErrorCode.PHONE_UNCONFIRMED, english, message_ru=russian)
    tokens = svc.tokens.issue(user.id, Role(user.role), version=user.token_version)
    return json_response({"user": user_json(user, profile), "tokens": tokens.as_json()})


@api.route(
    "POST",
    "/v1/auth/refresh",
    summary="Trade a refresh token for a new token pair",
    tag="auth",
    body=RefreshIn,
    response=TokensOut,
    roles=None,
    errors=(401, 403),
)
async def refresh(request: Request) -> Response:
    """The account is read again, so a role change or deactivation applies from here on. An expired
    refresh token is a 401 ``token_expired``; a revoked one (the account was disabled, deleted or its
    role changed since, or it logged out) a 401 ``token_revoked``; any other bad token a 401
    ``token_invalid``."""
    svc = services(request)
    body = await parse_body(request, RefreshIn)
    try:
        claims = svc.tokens.verify(body.refresh_token, "refresh")
    except TokenError as exc:
        raise ApiError(exc.code, exc.message) from None
    async with svc.sessions() as session:
        user = await user_repo.get_user(session, claims.user_id)
    if user is None:
        raise revoked()
    if not user.is_active:
        raise ApiError(ErrorCode.ACCOUNT_DISABLED, "this account is disabled")
    if claims.version < valid_from(user.token_version, user.is_active):
        raise revoked()
    return json_response(svc.tokens.issue(user.id, Role(user.role), version=user.token_version).as_json())


@api.route(
    "POST",
    "/v1/auth/logout",
    summary="Log out: revoke every token of your account",
    tag="auth",
    status=204,
)
async def logout(request: Request) -> Response:
    """Revokes every access and refresh token of the account, on every device (tokens carry the
    account's version, not a per-device id): refreshing them answers 401 ``token_revoked``, and the
    account's open sockets close with 4410. Sign in again to get new ones."""
    svc = services(request)
    principal = svc.principal(request)
    try:
        outcome = await revoke(svc.publisher, principal.user_id, RevokeReason.LOGOUT)
    except NoSuchAccount:
        raise revoked() from None
    await svc.access.revoked(principal.user_id, outcome.valid_from)
    return Response(status_code=204)


@api.route("GET", "/v1/me", summary="Your own account", tag="auth", response=UserOut)
async def me(request: Request) -> Response:
    """The account the bearer token belongs to, with the doctor profile for doctors."""
    svc = services(request)
    principal = svc.principal(request)
    async with svc.sessions() as session:
        user = await user_repo.get_user(session, principal.user_id)
        if user is None:
            raise revoked()
        profile = await doctor_repo.get_profile(session, user.id) if principal.role is Role.DOCTOR else None
    return json_response(user_json(user, profile))
