"""A doctor's schedule for planned visits over REST: set by the doctor, their clinic's admin or an
admin (``dispatch/doctor_schedules.py``); times of day as ``HH:MM`` in the schedule's IANA zone."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.doctor_schedules import DoctorPlan
from dispatch.events import epoch_ms
from dispatch.schedule_rules import DayException, Hours, Schedule, ScheduleError, hhmm, parse_hhmm
from models.enums import Role
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body
from server.routes import api
from server.routes.clinic_catalogue import who_of
from server.routes.zones import DOCTOR_ID_OR_ME
from server.schemas import Input
from server.services import services

EDITORS = (Role.DOCTOR, Role.CLINIC_ADMIN, Role.ADMIN)
HHMM = r"^\d\d:\d\d$"


class HoursIn(Input):
    """Working hours on a weekday (0 Monday - 6 Sunday), ``HH:MM`` to ``HH:MM`` (``24:00`` as an end)."""

    model_config = ConfigDict(extra="forbid")

    weekday: int = Field(ge=0, le=6)
    start: str = Field(pattern=HHMM)
    end: str = Field(pattern=HHMM)


class ExceptionIn(Input):
    """A date's exception: ``off`` (no weekly hours that date) and/or extra hours ``start``-``end``."""

    model_config = ConfigDict(extra="forbid")

    date: dt.date
    off: bool = False
    start: str | None = Field(default=None, pattern=HHMM)
    end: str | None = Field(default=None, pattern=HHMM)


class ScheduleIn(Input):
    """The whole schedule: IANA ``time_zone``, weekly hours, date exceptions, the services offered
    (ids of the doctor's clinic's services), the minimum notice in minutes, the most visits a day."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    time_zone: str = Field(min_length=1, max_length=64, examples=["Europe/Moscow"])
    weekly: list[HoursIn] = Field(max_length=70)
    exceptions: list[ExceptionIn] = Field(default_factory=list, max_length=400)
    service_ids: list[uuid.UUID] = Field(default_factory=list, max_length=200)
    min_notice_min: int = Field(default=0, ge=0, le=30 * 24 * 60)
    daily_limit: int | None = Field(default=None, ge=1, le=100)


class HoursOut(BaseModel):
    """Working hours on a weekday."""

    weekday: int
    start: str
    end: str


class ExceptionOut(BaseModel):
    """A date's exception."""

    date: dt.date
    off: bool
    start: str | None
    end: str | None


class ScheduleOut(BaseModel):
    """A doctor's schedule; ``updated_at`` epoch ms."""

    doctor_id: uuid.UUID
    time_zone: str
    weekly: list[HoursOut]
    exceptions: list[ExceptionOut]
    service_ids: list[uuid.UUID]
    min_notice_min: int
    daily_limit: int | None
    updated_at: int | None


def doctor_id_of(request: Request) -> uuid.UUID:
    """The path's ``doctor_id``: a UUID, or ``me`` for the signed-in user. Raises ``ApiError`` 422."""
    raw = request.path_params["doctor_id"]
    if raw == "me":
        return services(request).principal(request).user_id
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(
            ErrorCode.INVALID_INPUT, "doctor_id: not a UUID (or 'me')", field="doctor_id"
        ) from None


def _schedule(body: ScheduleIn) -> Schedule:
    """The body as rules; 422 naming a time of day that is not one."""
    try:
        weekly = tuple(
            Hours(
                h.weekday,
                parse_hhmm(h.start, f"weekly.{i}.start"),
                parse_hhmm(h.end, f"weekly.{i}.end", end=True),
            )
            for i, h in enumerate(body.weekly)
        )
        exceptions = tuple(
            DayException(
                e.date,
                e.off,
                None if e.start is None else parse_hhmm(e.start, f"exceptions.{i}.start"),
                None if e.end is None else parse_hhmm(e.end, f"exceptions.{i}.end", end=True),
            )
            for i, e in enumerate(body.exceptions)
        )
    except ScheduleError as exc:
        raise ApiError(ErrorCode.INVALID_INPUT, str(exc), field=exc.field) from None
    return Schedule(body.time_zone, weekly, exceptions, body.min_notice_min, body.daily_limit)


def _plan_json(plan: DoctorPlan) -> dict[str, Any]:
    s = plan.schedule
    return {
        "doctor_id": str(plan.doctor_id),
        "time_zone": s.time_zone,
        "weekly": [
            {"weekday": h.weekday, "start": hhmm(h.start_min), "end": hhmm(h.end_min)} for h in s.weekly
        ],
        "exceptions": [
            {
                "date": e.day.isoformat(),
                "off": e.off,
                "start": None if e.start_min is None else hhmm(e.start_min),
                "end": None if e.end_min is None else hhmm(e.end_min),
            }
            for e in s.exceptions
        ],
        "service_ids": [str(i) for i in plan.service_ids],
        "min_notice_min": s.min_notice_min,
        "daily_limit": s.daily_limit,
        "updated_at": epoch_ms(plan.updated_at),
    }


@api.route(
    "PUT",
    "/v1/doctors/{doctor_id}/schedule",
    summary="Set a doctor's schedule for planned visits",
    tag="planned visits",
    body=ScheduleIn,
    response=ScheduleOut,
    roles=EDITORS,
    errors=(404,),
    path_params={"doctor_id": DOCTOR_ID_OR_ME},
)
async def put_schedule(request: Request) -> Response:
    """The doctor (``me``), their clinic's admin (403 for another clinic's doctor) or an admin replaces
    the schedule whole. 422 naming the field: ``time_zone`` not an IANA name, hours with end <= start
    or overlapping (``weekly.N.end``), an unknown service, one of another clinic or of a specialty the
    doctor lacks (``service_ids.N``), an unverified doctor (``doctor_id``). Booked visits stay."""
    doctor_id = doctor_id_of(request)
    body = await parse_body(request, ScheduleIn)
    plan = (
        await services(request)
        .planned_visits()
        .schedules.put(who_of(request), doctor_id, _schedule(body), body.service_ids)
    )
    return json_response(_plan_json(plan))


@api.route(
    "GET",
    "/v1/doctors/{doctor_id}/schedule",
    summary="A doctor's schedule for planned visits",
    tag="planned visits",
    response=ScheduleOut,
    roles=EDITORS,
    errors=(404,),
    path_params={"doctor_id": DOCTOR_ID_OR_ME},
)
async def get_schedule(request: Request) -> Response:
    """Those who may set it read it; 404 before the first schedule."""
    plan = await services(request).planned_visits().schedules.get(who_of(request), doctor_id_of(request))
    return json_response(_plan_json(plan))
