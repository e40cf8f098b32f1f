"""Response shapes shared by several route modules (pydantic models, also used for the OpenAPI doc)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.doctors import DoctorProfile
from models.users import User

# E.164: a plus sign and 7-15 digits, first digit not zero (ITU-T E.164, section 6).
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
# Pragmatic address check (one @, a dot in the domain, no spaces); mail delivery is the real test.
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$"
SPECIALTY_PATTERN = r"^[a-z][a-z0-9_]{1,31}$"  # a subset of what the LocationIndex accepts
EMAIL_RE = re.compile(EMAIL_PATTERN)


class DoctorProfileOut(BaseModel):
    """A doctor's professional profile. ``rating_avg`` is 1-5 or null before the first rating."""

    model_config = ConfigDict(from_attributes=True)

    clinic_id: uuid.UUID | None
    licence_number: str
    specialties: list[str]
    verified: bool
    verified_at: dt.datetime | None
    rating_avg: float | None
    rating_count: int


class UserOut(BaseModel):
    """An account as its owner and staff see it; ``doctor`` is set for doctors."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    phone: str | None
    full_name: str
    role: str
    is_active: bool
    created_at: dt.datetime
    doctor: DoctorProfileOut | None = None


class TokensOut(BaseModel):
    """Bearer tokens; ``expires_in`` and ``refresh_expires_in`` are seconds."""

    access_token: str
    refresh_token: str
    token_type: str = Field(default="Bearer")
    expires_in: int
    refresh_expires_in: int


class AuthOut(BaseModel):
    """The account and a fresh pair of tokens."""

    user: UserOut
    tokens: TokensOut


def user_json(user: User, profile: DoctorProfile | None = None) -> dict[str, Any]:
    """``UserOut`` as JSON-ready data."""
    out = UserOut.model_validate(user)
    if profile is not None:
        out.doctor = DoctorProfileOut.model_validate(profile)
    return out.model_dump(mode="json")
