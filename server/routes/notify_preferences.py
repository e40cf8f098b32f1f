"""A person's notification preferences: language, time zone, quiet hours, channels per kind
(docs/notifications.md, "Preferences and quiet hours")."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from models.repositories import notifications as repo
from server.http import json_response, parse_body
from server.notify.rules import Kind
from server.notify.templates import LANGUAGES
from server.routes import api
from server.schemas import Input
from server.services import services

CHANNELS = ("telegram", "email", "sms", "webpush")
"""Channels a preference may name (web push: for the apps' service workers, to come)."""
KINDS = ("*", *(k.value for k in Kind))
HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ChannelChoice(Input):
    """``kind`` (``*``: every kind) on ``channel``: ``enabled``."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(
        description="*, offer, assigned, en_route, arrived, cancelled, escalated, sos_unanswered"
    )
    channel: str = Field(description="telegram, email, sms or webpush")
    enabled: bool

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"one of {', '.join(KINDS)}")
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str) -> str:
        if value not in CHANNELS:
            raise ValueError(f"one of {', '.join(CHANNELS)}")
        return value


class QuietHours(Input):
    """Local times ``HH:MM`` in the person's time zone; may cross midnight (22:00-07:00)."""

    model_config = ConfigDict(extra="forbid")

    start: str = Field(pattern=HHMM.pattern)
    end: str = Field(pattern=HHMM.pattern)


class PreferencesIn(Input):
    """What to change; a field left out stays as it is. ``quiet_hours`` null: none. ``channels``
    replaces every channel choice."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(default=None, description="ru or en")
    time_zone: str | None = Field(default=None, max_length=64, description="an IANA zone, e.g. Europe/Moscow")
    quiet_hours: QuietHours | None = None
    channels: list[ChannelChoice] | None = Field(default=None, max_length=64)

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and value not in LANGUAGES:
            raise ValueError(f"one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError("not an IANA time zone") from None
        return value


class ChannelChoiceOut(BaseModel):
    kind: str
    channel: str
    enabled: bool


class QuietHoursOut(BaseModel):
    start: str
    end: str


class PreferencesOut(BaseModel):
    """The person's preferences; quiet hours never hold back an offer, an SOS or the doctor's arrival."""

    language: str
    time_zone: str | None
    quiet_hours: QuietHoursOut | None
    channels: list[ChannelChoiceOut]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


async def _read(request: Request) -> dict[str, Any]:
    svc = services(request)
    principal = svc.principal(request)
    async with svc.sessions() as session:
        person = (await repo.people(session, [principal.user_id]))[principal.user_id]
        choices = await repo.preference_rows(session, principal.user_id)
    quiet = None
    if person.quiet_start_min is not None and person.quiet_end_min is not None:
        quiet = {"start": _hhmm(person.quiet_start_min), "end": _hhmm(person.quiet_end_min)}
    return {
        "language": person.language,
        "time_zone": person.time_zone,
        "quiet_hours": quiet,
        "channels": [{"kind": c.kind, "channel": c.channel, "enabled": c.enabled} for c in choices],
    }


@api.route(
    "GET",
    "/v1/notifications/preferences",
    summary="Your notification preferences",
    tag="notifications",
    response=PreferencesOut,
)
async def get_preferences(request: Request) -> Response:
    return json_response(await _read(request))


@api.route(
    "PUT",
    "/v1/notifications/preferences",
    summary="Change your notification preferences",
    tag="notifications",
    body=PreferencesIn,
    response=PreferencesOut,
)
async def put_preferences(request: Request) -> Response:
    """Changes what the body gives (see ``PreferencesIn``); answers the preferences as stored."""
    svc = services(request)
    principal = svc.principal(request)
    body = await parse_body(request, PreferencesIn)
    given = body.model_fields_set
    values: dict[str, Any] = {}
    if "language" in given and body.language is not None:
        values["language"] = body.language
    if "time_zone" in given:
        values["time_zone"] = body.time_zone
    if "quiet_hours" in given:
        quiet = body.quiet_hours
        values["quiet_start_min"] = None if quiet is None else _minutes(quiet.start)
        values["quiet_end_min"] = None if quiet is None else _minutes(quiet.end)
    async with svc.sessions.begin() as session:
        await repo.update_person(session, principal.user_id, **values)
        if body.channels is not None:
            unique = {(c.kind, c.channel): c.enabled for c in body.channels}
            await repo.replace_preferences(
                session, principal.user_id, [(k, c, e) for (k, c), e in unique.items()]
            )
    return json_response(await _read(request))
