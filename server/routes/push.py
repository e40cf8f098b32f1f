"""Web push: the VAPID public key the apps subscribe with, and a signed-in person's own push
subscriptions (docs/notifications.md, "Web push"; docs/api.md)."""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response

from models.push import PushSubscription
from models.repositories import push as push_repo
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response, parse_body, parse_query
from server.notify.vapid import b64url_decode
from server.notify.webpush import WebPushChannel
from server.routes import api
from server.schemas import Input
from server.services import services

MAX_ENDPOINT = 1000


class PushKeys(Input):
    """The subscription's keys as ``PushSubscription.toJSON()`` gives them (base64url): ``p256dh``
    the browser's P-256 public key (65 bytes, uncompressed), ``auth`` its 16-byte secret."""

    model_config = ConfigDict(extra="forbid")

    p256dh: str = Field(max_length=128)
    auth: str = Field(max_length=64)

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        try:
            raw = b64url_decode(value)
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        except ValueError:
            raise ValueError("base64url of an uncompressed P-256 public key") from None
        if len(raw) != 65:
            raise ValueError("base64url of an uncompressed P-256 public key")
        return value

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        try:
            raw = b64url_decode(value)
        except ValueError:
            raw = b""
        if len(raw) != 16:
            raise ValueError("base64url of 16 bytes")
        return value


class SubscriptionIn(Input):
    """``PushSubscription.toJSON()`` of the browser (``expirationTime`` is read and ignored) and, if
    the app likes, a ``user_agent`` to tell this device from the person's others (else the request's
    ``User-Agent``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    endpoint: str = Field(min_length=8, max_length=MAX_ENDPOINT)
    keys: PushKeys
    expirationTime: int | None = None  # the browser's name for it
    user_agent: str | None = Field(default=None, max_length=300)


class EndpointQuery(Input):
    """The subscription to delete, by its ``endpoint``."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(min_length=8, max_length=MAX_ENDPOINT)


class SubscriptionOut(BaseModel):
    """A stored subscription: times epoch ms; ``last_error`` of the last failed delivery."""

    id: uuid.UUID
    endpoint: str
    user_agent: str | None
    created_at: int
    last_success_at: int | None
    last_failure_at: int | None
    last_error: str | None


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class KeyOut(BaseModel):
    """``public_key``: the VAPID public key, base64url of the uncompressed P-256 point: the apps'
    ``applicationServerKey``."""

    public_key: str


class Deleted(BaseModel):
    deleted: bool


def _channel(request: Request) -> WebPushChannel:
    notify = services(request).notify
    if notify is None or notify.webpush is None:
        raise ApiError(ErrorCode.NOT_FOUND, "web push is not configured on this server")
    return notify.webpush


@api.route(
    "GET",
    "/v1/push/key",
    summary="The VAPID public key to subscribe to web push with",
    tag="notifications",
    response=KeyOut,
    roles=None,
    errors=(404,),
)
async def push_key(request: Request) -> Response:
    """404 ``not_found`` when web push is off (no ``TOT_VAPID_PRIVATE_KEY``): the apps hide it."""
    return json_response({"public_key": _channel(request).vapid.public_key})


def _out(row: PushSubscription) -> dict[str, object]:
    return {
        "id": str(row.id),  # asyncpg hands back its own UUID type from INSERT ... RETURNING
        "endpoint": row.endpoint,
        "user_agent": row.user_agent,
        "created_at": row.created_ms,
        "last_success_at": row.last_success_ms,
        "last_failure_at": row.last_failure_ms,
        "last_error": row.last_error,
    }


@api.route(
    "GET",
    "/v1/push/subscriptions",
    summary="Your web push subscriptions",
    tag="notifications",
    response=SubscriptionList,
    errors=(404,),
)
async def list_subscriptions(request: Request) -> Response:
    _channel(request)
    svc = services(request)
    async with svc.sessions() as session:
        rows = await push_repo.of_person(session, svc.principal(request).user_id)
    return json_response({"items": [_out(r) for r in rows]})


@api.route(
    "POST",
    "/v1/push/subscriptions",
    summary="Subscribe this browser to web push",
    tag="notifications",
    body=SubscriptionIn,
    response=SubscriptionOut,
    status=201,
    errors=(404,),
)
async def subscribe(request: Request) -> Response:
    """Stores the subscription for the signed-in person (an endpoint stored before is updated and
    becomes theirs). The endpoint must be ``https`` at a known push service (``TOT_PUSH_ENDPOINT_HOSTS``;
    loopback too with ``TOT_PUSH_ALLOW_LOOPBACK``): 422 ``invalid_input`` naming ``endpoint`` otherwise."""
    body = await parse_body(request, SubscriptionIn)  # bad input is refused first, push on or off
    channel = _channel(request)
    svc = services(request)
    problem = channel.check(body.endpoint)
    if problem is not None:
        raise ApiError(ErrorCode.INVALID_INPUT, f"endpoint: {problem}", field="endpoint")
    agent = body.user_agent or request.headers.get("user-agent", "")[:300] or None
    now = channel.clock()
    async with svc.sessions.begin() as session:
        row = await push_repo.subscribe(
            session,
            svc.principal(request).user_id,
            body.endpoint,
            body.keys.p256dh,
            body.keys.auth,
            agent,
            now,
        )
        out = _out(row)
    return json_response(out, status_code=201)


@api.route(
    "DELETE",
    "/v1/push/subscriptions",
    summary="Unsubscribe a browser from web push",
    tag="notifications",
    query=EndpointQuery,
    response=Deleted,
    errors=(404,),
)
async def unsubscribe(request: Request) -> Response:
    """Deletes the signed-in person's subscription of ``endpoint``; ``deleted: false`` when they had
    none (someone else's is never touched)."""
    query = parse_query(request, EndpointQuery)
    _channel(request)
    svc = services(request)
    async with svc.sessions.begin() as session:
        deleted = await push_repo.unsubscribe(session, svc.principal(request).user_id, query.endpoint)
    return json_response({"deleted": deleted})
