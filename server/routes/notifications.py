"""The inbox: a person's own notifications, newest first; and the staff view of what was sent for a
call (docs/notifications.md)."""

from __future__ import annotations

import uuid

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from models.enums import Role
from models.repositories import calls as call_repo
from models.repositories import notifications as repo
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_query
from server.notify.channels import INBOX
from server.notify.templates import render
from server.routes import api
from server.schemas import Input
from server.services import services


class InboxQuery(Input):
    """``before``: the ``next`` cursor of the previous page (none: from the newest); ``limit``: 1-100."""

    model_config = ConfigDict(extra="forbid")

    # Ids are BIGINT: a larger cursor cannot name a row (and PostgreSQL refuses it as out of range).
    before: int | None = Field(default=None, ge=1, le=2**63 - 1)
    limit: int = Field(default=20, ge=1, le=100)


class InboxItem(BaseModel):
    """One notification: ``kind`` (offer, assigned, en_route, arrived, cancelled, escalated,
    sos_unanswered), its ``text`` in the person's language, ``call`` it is about, ``at`` (epoch ms)."""

    id: int
    kind: str
    text: str
    call: uuid.UUID | None
    at: int


class InboxPage(BaseModel):
    """``items`` newest first; ``next``: the cursor of the next (older) page, null at the end."""

    items: list[InboxItem]
    next: int | None


@api.route(
    "GET",
    "/v1/notifications",
    summary="Your notifications",
    tag="notifications",
    query=InboxQuery,
    response=InboxPage,
)
async def inbox(request: Request) -> Response:
    """The signed-in person's own notifications (whatever channels also carried them)."""
    svc = services(request)
    principal = svc.principal(request)
    query = parse_query(request, InboxQuery)
    async with svc.sessions() as session:
        rows = await repo.inbox(session, principal.user_id, INBOX, query.before, query.limit + 1)
        person = (await repo.people(session, [principal.user_id])).get(principal.user_id)
    language = person.language if person else None
    zone = person.time_zone if person else None
    page = rows[: query.limit]
    items = [
        {
            "id": row.id,
            "kind": row.kind,
            "text": render(row.kind, language, orjson.loads(row.params), zone),
            "call": None if row.call_id is None else str(row.call_id),
            "at": row.created_ms,
        }
        for row in page
    ]
    return json_response({"items": items, "next": page[-1].id if len(rows) > query.limit else None})


class SentItem(BaseModel):
    """One (event, person, channel) about a call: ``status`` queued, sending, sent, failed or
    suppressed; ``last_error`` the reason of a failure or a suppression; times epoch ms."""

    id: int
    person: uuid.UUID | None = Field(description="null for a group chat (the dispatchers' Telegram group)")
    channel: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    created_at: int
    sent_at: int | None


class SentList(BaseModel):
    items: list[SentItem]


@api.route(
    "GET",
    "/v1/calls/{call_id}/notifications",
    summary="What was sent about a call",
    tag="notifications",
    response=SentList,
    roles=(Role.DISPATCHER, Role.ADMIN),
    errors=(404,),
)
async def call_notifications(request: Request) -> Response:
    """Every notification about the call, oldest first, on every channel (the inbox included)."""
    svc = services(request)
    try:
        call_id = uuid.UUID(request.path_params["call_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "call_id: not a UUID", field="call_id") from None
    async with svc.sessions() as session:
        if await call_repo.get_call(session, call_id) is None:
            raise ApiError(ErrorCode.NOT_FOUND, "no such call")
        rows = await repo.of_call(session, call_id)
    items = [
        {
            "id": r.id,
            "person": str(r.person_id) if r.person_id else None,
            "channel": r.channel,
            "kind": r.kind,
            "status": r.status,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "created_at": r.created_ms,
            "sent_at": r.sent_ms,
        }
        for r in rows
    ]
    return json_response({"items": items})
