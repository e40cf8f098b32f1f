"""Telegram: the bot's webhook and the account link of a signed-in person (docs/notifications.md)."""

from __future__ import annotations

import hmac
import logging

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from models.repositories import telegram as telegram_repo
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, read_json
from server.notify.service import Notify
from server.routes import api
from server.services import services

log = logging.getLogger("tot.notify")

SECRET_HEADER = "x-telegram-bot-api-secret-token"


class WebhookOut(BaseModel):
    """``handled``: what the bot did (``linked``, ``done``, ``expired``, ``not_linked``...);
    ``replayed``: the ``update_id`` was handled before and nothing was done."""

    ok: bool
    handled: str
    replayed: bool = False


class LinkOut(BaseModel):
    """A one-time deep link: ``url`` (``https://t.me/<bot>?start=<token>``), ``token`` and
    ``expires_at`` (epoch ms)."""

    url: str
    token: str
    expires_at: int


class LinkState(BaseModel):
    """Whether the signed-in person has linked a Telegram chat."""

    linked: bool


def _telegram(request: Request) -> Notify:
    notify = services(request).notify
    if notify is None or notify.links is None or notify.updates is None:
        raise ApiError(ErrorCode.NOT_FOUND, "Telegram is not configured on this server")
    return notify


@api.route(
    "POST",
    "/v1/telegram/webhook",
    summary="Telegram's webhook (updates from the Bot API)",
    tag="telegram",
    response=WebhookOut,
    roles=None,
    errors=(400, 401, 404),
)
async def telegram_webhook(request: Request) -> Response:
    """Called by Telegram with an Update. The ``X-Telegram-Bot-Api-Secret-Token`` header must be the
    configured secret (401 ``token_invalid`` otherwise); an ``update_id`` seen before is answered
    ``replayed`` and changes nothing."""
    notify = _telegram(request)
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), notify.settings.telegram_webhook_secret.encode()):
        raise ApiError(ErrorCode.TOKEN_INVALID, "wrong webhook secret token")
    update = await read_json(request)
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        raise ApiError(ErrorCode.INVALID_INPUT, "update_id: an integer is required", field="update_id")
    async with notify.sessions.begin() as session:
        first = await telegram_repo.first_sight(session, update["update_id"], notify.clock())
    if not first:
        return json_response({"ok": True, "handled": "ignored", "replayed": True})
    assert notify.updates is not None
    handled = await notify.updates.handle(update)
    log.info("telegram update", extra={"update_id": update["update_id"], "handled": handled})
    return json_response({"ok": True, "handled": handled, "replayed": False})


@api.route(
    "POST",
    "/v1/telegram/link",
    summary="A one-time link to connect your Telegram",
    tag="telegram",
    response=LinkOut,
    status=201,
    errors=(404,),
)
async def telegram_link(request: Request) -> Response:
    """A deep link for the signed-in person, single use, valid ``TOT_TELEGRAM_LINK_TTL`` seconds: opened
    in Telegram, it links that chat to the account (an earlier chat is replaced)."""
    notify = _telegram(request)
    principal = services(request).principal(request)
    assert notify.links is not None
    issued = await notify.links.issue(principal.user_id)
    username = await notify.bot_username()
    return json_response(
        {
            "url": f"{notify.settings.telegram_link_base}/{username}?start={issued.token}",
            "token": issued.token,
            "expires_at": issued.expires_ms,
        },
        status_code=201,
    )


@api.route(
    "GET",
    "/v1/telegram/link",
    summary="Whether your Telegram is linked",
    tag="telegram",
    response=LinkState,
    errors=(404,),
)
async def telegram_link_state(request: Request) -> Response:
    notify = _telegram(request)
    principal = services(request).principal(request)
    assert notify.links is not None
    return json_response({"linked": await notify.links.chat_of(principal.user_id) is not None})


@api.route(
    "DELETE",
    "/v1/telegram/link",
    summary="Unlink your Telegram",
    tag="telegram",
    response=LinkState,
    errors=(404,),
)
async def telegram_unlink(request: Request) -> Response:
    """Nothing more is sent to the chat; ``linked`` is false afterwards (also when it was not linked)."""
    notify = _telegram(request)
    principal = services(request).principal(request)
    assert notify.links is not None
    await notify.links.unlink(principal.user_id)
    return json_response({"linked": False})
