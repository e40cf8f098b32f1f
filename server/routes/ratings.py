"""Rating a completed visit."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import Who
from dispatch.ratings import MAX_COMMENT
from models.enums import Role
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body
from server.routes import api
from server.schemas import Input, Text
from server.services import services


class RatingIn(Input):
    """A score from 1 to 5 and an optional comment."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    score: int = Field(ge=1, le=5, strict=True)
    comment: Text | None = Field(default=None, max_length=MAX_COMMENT)


class RatingOut(BaseModel):
    """A stored rating (time in epoch milliseconds)."""

    id: uuid.UUID
    call: uuid.UUID
    doctor: uuid.UUID
    score: int
    comment: str | None
    at: int


@api.route(
    "POST",
    "/v1/calls/{call_id}/rating",
    summary="Rate a completed visit",
    tag="calls",
    body=RatingIn,
    response=RatingOut,
    status=201,
    roles=(Role.PATIENT,),
    errors=(404, 409),
)
async def rate_call(request: Request) -> Response:
    """The call's patient, once, after completion (409 ``not_completed`` / ``already_rated``). The
    doctor's average and count update at once and feed the ranking of candidates."""
    svc = services(request)
    principal = svc.principal(request)
    body = await parse_body(request, RatingIn)
    try:
        call_id = uuid.UUID(request.path_params["call_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "call_id: not a UUID", field="call_id") from None
    rating = await svc.ratings.rate(Who(principal.user_id, principal.role), call_id, body.score, body.comment)
    return json_response(rating, status_code=201)
