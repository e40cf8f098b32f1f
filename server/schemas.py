"""Shapes shared by the route modules (pydantic models, also used for the OpenAPI doc): the base of every
request body and query (:class:`Input`, which holds the text rule) and the shared response shapes."""

from __future__ import annotations

import datetime as dt
import re
import typing
import uuid
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, ValidationInfo, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from models.doctors import DoctorProfile
from models.users import User
from realtime.messages import LINE_PATTERN, TEXT_PATTERN, control_character

# E.164: a plus sign and 7-15 digits, first digit not zero (ITU-T E.164, section 6).
PHONE_PATTERN = r"^\+[1-9][0-9]{6,14}$"
# Pragmatic address check (one @, a dot in the domain, no spaces); mail delivery is the real test.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f]{2,}$"
SPECIALTY_PATTERN = r"^[a-z][a-z0-9_]{1,31}$"  # a subset of what the LocationIndex accepts
EMAIL_RE = re.compile(EMAIL_PATTERN)


class _Multiline:
    """The marker of :data:`Text` (see :class:`Input`)."""

    def __repr__(self) -> str:
        return "MULTILINE"


MULTILINE = _Multiline()
Text = Annotated[str, MULTILINE]
"""A string that may span lines: tab, line feed and carriage return allowed, other control characters
refused (chat text, symptoms, reasons, notes, comments). Any other ``str`` of an :class:`Input` is
single-line: no control character at all (names, emails, logins, passwords, addresses, ids...)."""


def _allows_newlines(annotation: Any) -> bool:
    """Whether ``annotation`` (``Text``, ``Text | None``, ``list[Text]``...) carries the multi-line marker."""
    if any(meta is MULTILINE for meta in getattr(annotation, "__metadata__", ())):
        return True
    return any(_allows_newlines(arg) for arg in typing.get_args(annotation))


def _strings(value: Any, path: tuple[str | int, ...]) -> typing.Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))


class Input(BaseModel):
    """The base of every REST request body and query model (``server/api.py`` refuses any other): the
    text rule of realtime/messages.py holds for every string field, declared or not, in one place.

    A value holding a control character (U+0000-U+001F, U+007F-U+009F) is refused with 422
    ``invalid_input`` naming the field (``specialties.2`` inside lists), before any other check of the
    field and on the raw value (before whitespace stripping), so nothing with it reaches the database or
    a log. Fields typed :data:`Text` also take tab, line feed and carriage return. The document states the
    rule as a ``pattern`` on string fields that have none of their own.
    """

    _multiline: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._multiline = frozenset(
            name
            for name, info in cls.model_fields.items()
            if any(meta is MULTILINE for meta in info.metadata) or _allows_newlines(info.annotation)
        )

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        multiline = name in cls._multiline
        for path, text in _strings(value, ()):
            code_point = control_character(text, multiline=multiline)
            if code_point is not None:
                # The message names the code point (and the item of a list), never the value.
                where = f" (item {'.'.join(str(p) for p in path)})" if path else ""
                raise PydanticCustomError(
                    "control_character",
                    "control character {code_point} is not allowed here{where}",
                    {"code_point": code_point, "where": where},
                )
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        for name, prop in target.get("properties", {}).items():
            field_name = next((n for n, f in cls.model_fields.items() if (f.alias or n) == name), name)
            _document_rule(prop, TEXT_PATTERN if field_name in cls._multiline else LINE_PATTERN)
        return json_schema


def _document_rule(schema: dict[str, Any], pattern: str) -> None:
    """Add ``pattern`` to every plain string schema inside ``schema`` (no pattern, format or enum yet)."""
    if schema.get("type") == "string" and not {"pattern", "format", "enum", "const"} & schema.keys():
        schema["pattern"] = pattern
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, ()):
            _document_rule(sub, pattern)
    if isinstance(schema.get("items"), dict):
        _document_rule(schema["items"], pattern)


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
