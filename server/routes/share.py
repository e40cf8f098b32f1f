"""Share links: the patient makes a read-only tracking link of their call for a relative
(``POST /v1/calls/{id}/share``); the relative opens ``/track/<token>`` without an account, and the page
polls ``GET /v1/track/{token}`` (the call's status and the assigned doctor's latest position).

The token is 32 random bytes (URL-safe base64, 43 characters); only its SHA-256 is stored
(models/share_links.py). A link dies with its call: once the call is completed or cancelled the
endpoint answers 410 ``link_expired`` and the page says the tracking has ended.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from dispatch.events import epoch_ms
from dispatch.lifecycle import FINAL
from geo.distance import haversine_m
from models.calls import Call
from models.enums import CallStatus, Role
from models.repositories import calls as call_repo
from models.share_links import ShareLink
from realtime.errors import ErrorCode
from server.errors import ApiError
from server.http import json_response
from server.routes import api
from server.routes.console import STATIC_DIR
from server.services import Services, services

TRACK_DIR = STATIC_DIR / "track"
TOKEN_BYTES = 32
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{43}$"
_TOKEN = re.compile(TOKEN_PATTERN)
TOKEN_PARAM = {"type": "string", "pattern": TOKEN_PATTERN}
ON_THE_WAY = frozenset({CallStatus.ASSIGNED, CallStatus.EN_ROUTE, CallStatus.ARRIVED, CallStatus.IN_PROGRESS})
"""The statuses in which the tracking shows the doctor's position (as ``call:<id>`` forwards it)."""
CONFIG_MARKER = "<!--track-config-->"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
NO_REFERRER = "no-referrer"
"""The token is in the page's URL: never send it to the tile server in a Referer."""


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256, 64 lowercase hex characters."""
    return hashlib.sha256(token.encode()).hexdigest()


class ShareOut(BaseModel):
    """A new link: ``token`` (shown once, never stored), ``path`` (``/track/<token>``) and the call."""

    token: str
    path: str
    call_id: uuid.UUID


class TrackDoctor(BaseModel):
    """The doctor's latest fix: WGS84 degrees, ``acc`` metres, ``ts`` epoch ms, ``distance_m`` straight
    line to the call's point (metres), ``eta_s`` the dispatch ranking's estimate (seconds)."""

    lat: float
    lon: float
    acc: float
    ts: int
    distance_m: float
    eta_s: int


class TrackOut(BaseModel):
    """What the relative sees: the call's status and point (degrees), its address, when it was made
    (epoch ms) and the doctor's position while the doctor is assigned (else null)."""

    status: CallStatus
    address: str
    lat: float
    lon: float
    created_at: int | None
    doctor: TrackDoctor | None


@api.route(
    "POST",
    "/v1/calls/{call_id}/share",
    summary="A read-only tracking link of your call for a relative",
    tag="share",
    response=ShareOut,
    status=201,
    roles=(Role.PATIENT,),
    errors=(404, 409),
)
async def create_share_link(request: Request) -> Response:
    """The call's patient only (anyone else: 404). Each request makes a new link; every link of a call
    works until the call is completed or cancelled. A final call: 409 ``invalid_transition``."""
    svc = services(request)
    principal = svc.principal(request)
    try:
        call_id = uuid.UUID(request.path_params["call_id"])
    except ValueError:
        raise ApiError(ErrorCode.INVALID_INPUT, "call_id: not a UUID", field="call_id") from None
    async with svc.sessions() as session:
        call = await call_repo.get_call(session, call_id)
    if call is None or call.patient_id != principal.user_id:
        raise ApiError(ErrorCode.NOT_FOUND, "no such call")
    if CallStatus(call.status) in FINAL:
        raise ApiError(ErrorCode.INVALID_TRANSITION, "the call is over", status=call.status, allowed=[])
    token = secrets.token_urlsafe(TOKEN_BYTES)
    async with svc.sessions.begin() as session:
        session.add(ShareLink(call_id=call.id, token_hash=token_hash(token), created_by=principal.user_id))
    return json_response(
        {"token": token, "path": f"/track/{token}", "call_id": str(call.id)}, status_code=201
    )


async def _live_call(svc: Services, token: str) -> Call:
    """The call of a live link. Raises 404 ``not_found`` (no such link) or 410 ``link_expired``."""
    if not _TOKEN.match(token):
        raise ApiError(ErrorCode.NOT_FOUND, "no such link")
    async with svc.sessions() as session:
        call_id = await session.scalar(
            sa.select(ShareLink.call_id).where(ShareLink.token_hash == token_hash(token))
        )
        call = None if call_id is None else await call_repo.get_call(session, call_id)
    if call is None:
        raise ApiError(ErrorCode.NOT_FOUND, "no such link")
    if CallStatus(call.status) in FINAL:
        raise ApiError(
            ErrorCode.LINK_EXPIRED, "the call is over: this link no longer works", status=call.status
        )
    return call


async def _doctor(svc: Services, call: Call) -> dict[str, Any] | None:
    if call.doctor_id is None or CallStatus(call.status) not in ON_THE_WAY:
        return None
    position = await svc.engine.locations.get(str(call.doctor_id))
    if position is None:
        return None
    distance = haversine_m(position.lat, position.lon, call.lat, call.lon)
    return {
        "lat": position.lat,
        "lon": position.lon,
        "acc": position.accuracy_m,
        "ts": position.ts_ms,
        "distance_m": round(distance, 1),
        "eta_s": round(svc.settings.dispatch().ranking.eta_s(distance)),
    }


@api.route(
    "GET",
    "/v1/track/{token}",
    summary="A shared call's status and doctor (no account)",
    tag="share",
    response=TrackOut,
    roles=None,
    errors=(404, 410),
    path_params={"token": TOKEN_PARAM},
)
async def track(request: Request) -> Response:
    """Public: the token is the credential. Unknown token: 404 ``not_found``; the call completed or
    cancelled: 410 ``link_expired``. The doctor's position is the latest the server holds (the page
    polls every few seconds); null until a doctor is assigned and after the visit."""
    svc = services(request)
    call = await _live_call(svc, request.path_params["token"])
    body = {
        "status": call.status,
        "address": call.address,
        "lat": call.lat,
        "lon": call.lon,
        "created_at": epoch_ms(call.created_at),
        "doctor": await _doctor(svc, call),
    }
    return json_response(body, headers={"Cache-Control": "no-store", "Referrer-Policy": NO_REFERRER})


@api.route(
    "GET",
    "/track/{token}",
    summary="The relative's tracking page (HTML)",
    tag="share",
    roles=None,
    response_media_type="text/html",
    errors=(404, 410),
    path_params={"token": TOKEN_PARAM},
)
async def track_page(request: Request) -> Response:
    """Public. 200 while the call runs. An unknown link (404 ``not_found``) or a call that is over
    (410 ``link_expired``): the JSON error body, or, for a browser (``Accept`` names ``text/html``),
    the page with that status, saying so in the reader's language."""
    svc = services(request)
    settings = svc.settings
    lat, lon, zoom = settings.console_map_view
    config: dict[str, Any] = {
        "tileUrl": settings.console_tile_url,
        "tileAttribution": settings.console_tile_attribution,
        "view": {"lat": lat, "lon": lon, "zoom": zoom},
        "ended": None,
    }
    status = 200
    try:
        await _live_call(svc, request.path_params["token"])
    except ApiError as exc:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        config["ended"] = exc.code.value
        status = exc.http_status
    text = orjson.dumps(config).decode().replace("<", "\\u003c")
    page = (TRACK_DIR / "index.html").read_text(encoding="utf-8")
    block = f'<script type="application/json" id="track-config">{text}</script>'
    return HTMLResponse(
        page.replace(CONFIG_MARKER, block, 1),
        status_code=status,
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Referrer-Policy": NO_REFERRER},
    )
