"""Accounts outside HTTP: the CLI's ``users create``, ``users disable|enable|set-role`` and the demo's
accounts.

Validation follows the REST registration (the same patterns), but any role is allowed: this path is for
operators with access to the database, not for the public.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import make_engine, make_sessionmaker
from models.doctors import DoctorProfile
from models.enums import Role
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from models.users import User
from server.auth.passwords import hash_password, hash_password_off_loop
from server.auth.revocation import NoSuchAccount, Revoked, RevokeReason, revoke_offline
from server.phones import normalise_phone
from server.schemas import EMAIL_PATTERN, PHONE_PATTERN, SPECIALTY_PATTERN

MIN_PASSWORD = 8


def _region() -> str:
    """How the CLI reads a phone without ``+``: ``TOT_SMS_DEFAULT_REGION`` as the server does."""
    return os.environ.get("TOT_SMS_DEFAULT_REGION", "RU").strip().upper() or "RU"


class AccountError(ValueError):
    """The account cannot be created; the message says why in one line."""


@dataclass
class NewAccount:
    """An account to create. ``licence_number`` and ``specialties`` are required for doctors."""

    role: str
    full_name: str
    password: str
    email: str | None = None
    phone: str | None = None
    licence_number: str | None = None
    specialties: list[str] = field(default_factory=list)
    verified: bool = False

    def validate(self) -> Role:
        """The role, after checking every field. Raises :class:`AccountError`."""
        try:
            role = Role(self.role)
        except ValueError:
            raise AccountError(f"unknown role {self.role!r}") from None
        if not self.email and not self.phone:
            raise AccountError("give --email or --phone")
        if self.email and not re.match(EMAIL_PATTERN, self.email):
            raise AccountError(f"not an email address: {self.email!r}")
        if self.phone:
            # As registration: any usual writing, stored in E.164 (server/phones.py).
            phone = normalise_phone(
                self.phone, os.environ.get("TOT_SMS_DEFAULT_REGION", "RU").strip().upper()
            )
            if phone is None or not re.match(PHONE_PATTERN, phone):
                raise AccountError(f"not a valid phone number: {self.phone!r} (e.g. +79991234567)")
            self.phone = phone
        if len(self.password) < MIN_PASSWORD:
            raise AccountError(f"password must be at least {MIN_PASSWORD} characters")
        if role is Role.DOCTOR:
            if not self.licence_number:
                raise AccountError("doctors need --licence")
            if not self.specialties:
                raise AccountError("doctors need at least one --specialty")
            bad = [s for s in self.specialties if not re.match(SPECIALTY_PATTERN, s)]
            if bad:
                raise AccountError(f"bad specialty code(s): {', '.join(bad)}")
        return role


async def add_account(
    session: AsyncSession,
    *,
    role: Role,
    full_name: str,
    password_hash: str,
    email: str | None = None,
    phone: str | None = None,
    licence_number: str | None = None,
    specialties: Sequence[str] = (),
    clinic_id: uuid.UUID | None = None,
    language: str = "ru",
) -> tuple[User, DoctorProfile | None]:
    """Insert a user (and, for doctors, an unverified profile) in ``session``; the one path for REST
    registration, the CLI and the demo. Fields are assumed validated; ``password_hash`` comes from
    ``hash_password_off_loop``, called *before* the session opens (an open session holds the embedded
    database, models/sqlite_driver.py, and argon2 takes tens of milliseconds).

    ``language``: of the person's notifications (registration: their ``Accept-Language``).

    Raises ``user_repo.DuplicateAccount`` (email or phone taken) or ``doctor_repo.DuplicateLicence``.
    """
    user = await user_repo.create_user(
        session,
        email=email,
        phone=phone,
        password_hash=password_hash,
        full_name=full_name,
        role=role,
        language=language,
    )
    if role is not Role.DOCTOR:
        return user, None
    assert licence_number is not None
    profile = await doctor_repo.create_profile(
        session, user_id=user.id, licence_number=licence_number, specialties=specialties, clinic_id=clinic_id
    )
    return user, profile


async def create_account(database_url: str, account: NewAccount) -> uuid.UUID:
    """Create ``account`` in the database at ``database_url`` and return its id.

    Raises :class:`AccountError` for bad fields or a taken email, phone or licence number.
    """
    role = account.validate()
    password_hash = await hash_password_off_loop(account.password)
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            try:
                user, profile = await add_account(
                    session,
                    role=role,
                    full_name=account.full_name,
                    password_hash=password_hash,
                    email=account.email,
                    phone=account.phone,
                    licence_number=account.licence_number,
                    specialties=account.specialties,
                )
            except user_repo.DuplicateAccount as exc:
                raise AccountError(str(exc)) from None
            except doctor_repo.DuplicateLicence:
                raise AccountError("this licence number is already registered") from None
            if profile is not None and account.verified:
                await doctor_repo.set_verified(session, profile, True, user.id)
            return user.id
    finally:
        await engine.dispose()


DEMO_DOCTOR_LICENCE = "DEMO-0001"
DEMO_DOCTOR_SPECIALTIES = ("therapist", "pediatrician")


async def ensure_demo_accounts(database_url: str, accounts: Iterable[tuple[str, str, str, str]]) -> None:
    """Create each ``(role, email, password, full_name)`` account unless its email exists. A doctor is
    made verified, with licence :data:`DEMO_DOCTOR_LICENCE` and :data:`DEMO_DOCTOR_SPECIALTIES` (one
    demo doctor: the licence is unique)."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            for role, email, password, name in accounts:
                if await user_repo.find_by_login(session, email) is None:
                    doctor = Role(role) is Role.DOCTOR
                    user, profile = await add_account(
                        session,
                        role=Role(role),
                        full_name=name,
                        password_hash=hash_password(password),  # a CLI step, no loop to keep free
                        email=email,
                        licence_number=DEMO_DOCTOR_LICENCE if doctor else None,
                        specialties=DEMO_DOCTOR_SPECIALTIES if doctor else (),
                    )
                    if profile is not None:
                        await doctor_repo.set_verified(session, profile, True, user.id)
    finally:
        await engine.dispose()


async def change_account(
    database_url: str,
    who: str,
    reason: RevokeReason,
    *,
    is_active: bool | None = None,
    role: Role | None = None,
) -> Revoked:
    """Disable, re-enable, delete or change the role of the account ``who`` (its id, email or phone) in the
    database at ``database_url``, revoking every token it holds (``server/auth/revocation.py``). The
    ``account.revoked`` event is left to the running servers' outbox relay, which publishes it within
    half a second: they then close the account's sockets. Raises :class:`AccountError` for an unknown
    account, a doctor role for an account without a doctor profile, or a deletion the database refuses
    (rows refer to the account)."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            try:
                user_id = uuid.UUID(who)
            except ValueError:
                phone = normalise_phone(who, _region())
                user = await user_repo.find_by_login(session, phone if "@" not in who and phone else who)
                if user is None:
                    raise AccountError(f"no account with the login {who!r}") from None
                user_id = user.id
            if role is Role.DOCTOR and await doctor_repo.get_profile(session, user_id) is None:
                raise AccountError("only an account with a doctor profile can be made a doctor")
            try:
                return await revoke_offline(session, user_id, reason, is_active=is_active, role=role)
            except NoSuchAccount:
                raise AccountError(f"no account with the id {who}") from None
            except sqlalchemy.exc.IntegrityError:
                referred = "calls, messages or ratings refer to this account: disable it instead"
                raise AccountError(referred) from None
    finally:
        await engine.dispose()
