"""Chat on a call over REST (the socket ops ``chat.send`` / ``chat.read`` do the same)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from dispatch.calls import Who
from dispatch.chat import MAX_TEXT
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.routes import api
from server.schemas import Input, Text
from server.services import services


class MessageIn(Input):
    """A chat line. ``client_msg_id`` is the sender's own id for it: sending it again is harmless."""

    model_config = ConfigDict(extra="forbid")

    client_msg_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    text: Text = Field(min_length=1, max_length=MAX_TEXT)


class Sender(BaseModel):
    """Who wrote it."""

    id: uuid.UUID
    role: str | None
    name: str | None


class MessageOut(BaseModel):
    """A stored message; times in epoch milliseconds."""

    id: uuid.UUID
    call: uuid.UUID
    sender: Sender
    client_msg_id: str
    text: str
    at: int
    read_at: int | None


class MessagePage(BaseModel):
    """Messages oldest first; ``next`` is the cursor for the following page (null at the end)."""

    items: list[MessageOut]
    next: str | None


class HistoryQuery(Input):
    """``after``: the last message id of the previous page; ``limit``: 1-200."""

    model_config = ConfigDict(extra="forbid")

    after: uuid.UUID | None = None
    limit: int = Field(default=50, ge=1, le=200)


class ReadIn(Input):
    """Everything from others up to and including ``up_to`` has been read."""

    model_config = ConfigDict(extra="forbid")

    up_to: uuid.UUID


class ReadOut(BaseModel):
    """How many messages were newly marked read."""

    read: int


def _call_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["call_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "call_id: not a UUID", field="call_id") from None


@api.route(
    "GET",
    "/v1/calls/{call_id}/messages",
    summary="A call's chat",
    tag="chat",
    query=HistoryQuery,
    response=MessagePage,
    errors=(404,),
)
async def chat_history(request: Request) -> Response:
    """The call's patient, its assigned doctor and staff; pages oldest first with a cursor."""
    svc = services(request)
    principal = svc.principal(request)
    query = parse_query(request, HistoryQuery)
    items, nxt = await svc.chat.history(
        Who(principal.user_id, principal.role), _call_id(request), query.after, query.limit
    )
    return json_response({"items": items, "next": nxt})


@api.route(
    "POST",
    "/v1/calls/{call_id}/messages",
    summary="Send a chat message",
    tag="chat",
    body=MessageIn,
    response=MessageOut,
    status=201,
    errors=(404, 409),
    alternate=(200,),
)
async def chat_send(request: Request) -> Response:
    """Stored, then delivered live as ``chat.message`` on ``call:<id>``. A resend with the same
    ``client_msg_id`` returns the stored message with 200 and delivers nothing twice."""
    svc = services(request)
    principal = svc.principal(request)
    body = await parse_body(request, MessageIn)
    sent = await svc.chat.send(
        Who(principal.user_id, principal.role), _call_id(request), body.client_msg_id, body.text
    )
    return json_response(sent.message, status_code=201 if sent.created else 200)


@api.route(
    "POST",
    "/v1/calls/{call_id}/messages/read",
    summary="Mark chat messages read",
    tag="chat",
    body=ReadIn,
    response=ReadOut,
    errors=(404,),
)
async def chat_read(request: Request) -> Response:
    """A read receipt: published as ``chat.read`` on ``call:<id>`` when anything changed."""
    svc = services(request)
    principal = svc.principal(request)
    body = await parse_body(request, ReadIn)
    changed = await svc.chat.read(Who(principal.user_id, principal.role), _call_id(request), body.up_to)
    return json_response({"read": changed})
