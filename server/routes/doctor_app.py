"""The doctor's app in the browser: its page (``/doctor``), web app manifest and service worker.

The page is static (``server/static/doctor/``, served under ``/doctor/static/``) apart from a JSON
block with its settings (map tiles, how old a location fix may get before the app calls it stale).
Everything else it reads and does through the public REST API and the WebSocket (docs/doctor-app.md);
the one endpoint added for it is here: ``GET /v1/offers/open`` (offers still waiting for the doctor,
read again after a reload).

The service worker is served from ``/doctor/sw.js`` with ``Service-Worker-Allowed: /doctor`` so that
its scope can be ``/doctor`` itself (the page has no trailing slash; a script's default scope would be
``/doctor/`` only).
"""

from __future__ import annotations

import datetime as dt
import html
import uuid
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from dispatch.events import call_summary, epoch_ms
from models.enums import Role
from models.repositories import calls as call_repo
from models.repositories import offers as offer_repo
from server.console_assets import PACKAGES, installed
from server.http import json_response
from server.routes import api
from server.routes.console import CSP, MISSING_ASSETS, STATIC_DIR
from server.services import services

DOCTOR_DIR = STATIC_DIR / "doctor"
STATIC_PREFIX = "/doctor/static"
SCOPE = "/doctor"
CONFIG_MARKER = "<!--doctor-config-->"
STALE_FRACTION = 0.5
"""A fix older than this part of ``TOT_DOCTOR_OFFLINE_AFTER`` is shown as stale: the doctor still has
time to move (or step outside) before the server takes them off shift."""


def mounts() -> list[BaseRoute]:
    """The app's static files, for the application's route list."""
    return [Mount(STATIC_PREFIX, StaticFiles(directory=DOCTOR_DIR, check_dir=False), name="doctor_static")]


def _config_block(request: Request) -> str:
    settings = services(request).settings
    offline_after_s = settings.doctor_offline_after_s
    config = {
        "tileUrl": settings.console_tile_url,
        "tileAttribution": settings.console_tile_attribution,
        # Seconds: when a fix is called stale, and how often the last fresh one is re-sent so that a
        # doctor standing still is not taken off shift (watchPosition fires only on movement).
        "staleAfterS": offline_after_s * STALE_FRACTION,
        "heartbeatS": offline_after_s / 4,
        # Milliseconds of fix time between two positions the server forwards to the call's patient: the
        # app sends a fix it took sooner again once this has passed, else a doctor who stopped right
        # after it would be shown where they were until the next heartbeat.
        "forwardMs": settings.position_forward_interval_ms,
    }
    text = orjson.dumps(config).decode().replace("<", "\\u003c")
    return f'<script type="application/json" id="doctor-config">{text}</script>'


def _read(name: str) -> str:
    return (DOCTOR_DIR / name).read_text(encoding="utf-8")


@api.route(
    "GET",
    "/doctor",
    summary="The doctor's app (an HTML page)",
    tag="apps",
    roles=None,
    response_media_type="text/html",
    alternate=(503,),
)
async def doctor_page(request: Request) -> Response:
    """The page itself is public; it signs in with ``POST /v1/auth/login`` and works only for doctors.
    503 when the map library was not installed (``server.console_assets``)."""
    missing = [f"{p.name}@{p.version}" for p in PACKAGES if not installed(p)]
    if missing:
        body = MISSING_ASSETS.format(packages=html.escape(", ".join(missing)))
        return HTMLResponse(body, status_code=503)
    page = _read("index.html").replace(CONFIG_MARKER, _config_block(request), 1)
    return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


@api.route(
    "GET",
    "/doctor/sw.js",
    summary="The doctor's app's service worker",
    tag="apps",
    roles=None,
    response_media_type="text/javascript",
)
async def doctor_service_worker(request: Request) -> Response:
    """The offline shell (docs/doctor-app.md), allowed to control ``/doctor``; never cached by HTTP, so
    a new version is picked up at the next visit."""
    return Response(
        _read("sw.js"),
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": SCOPE, "Cache-Control": "no-cache"},
    )


class ManifestIcon(BaseModel):
    """One icon of the manifest."""

    src: str
    sizes: str
    type: str
    purpose: str


class Manifest(BaseModel):
    """The web app manifest (W3C Web Application Manifest): what a phone needs to install the app."""

    name: str
    short_name: str
    id: str
    start_url: str
    scope: str
    display: str
    orientation: str
    background_color: str
    theme_color: str
    icons: list[ManifestIcon]


@api.route(
    "GET",
    "/doctor/manifest.webmanifest",
    summary="The doctor's app's web app manifest",
    tag="apps",
    roles=None,
    response=Manifest,
    response_media_type="application/manifest+json",
)
async def doctor_manifest(request: Request) -> Response:
    """Name, icon, start URL and scope (``/doctor``) for installing the app on a phone."""
    return Response(_read("manifest.webmanifest"), media_type="application/manifest+json")


class OpenOffer(BaseModel):
    """An offer waiting for the doctor's answer, as the ``offer.created`` event carried it: the offer's
    id, the call, distance (m), ETA (s) and ``deadline`` (epoch ms)."""

    offer: uuid.UUID
    call: dict[str, Any]
    distance_m: float | None
    eta_s: float | None
    deadline: int


class OpenOffers(BaseModel):
    """The doctor's open offers, soonest deadline first."""

    items: list[OpenOffer]


@api.route(
    "GET",
    "/v1/offers/open",
    summary="Your offers waiting for an answer",
    tag="calls",
    response=OpenOffers,
    roles=(Role.DOCTOR,),
)
async def open_offers(request: Request) -> Response:
    """Doctors: the offers made to you that are still pending and before their deadline, with their
    calls (the doctor's app shows them again after a reload, or after ``doctor:<id>`` lost events it
    could not recover). Accept or decline them as usual (``offer.accept`` / ``offer.decline``)."""
    svc = services(request)
    doctor_id = svc.principal(request).user_id
    now = dt.datetime.now(dt.UTC)
    items = []
    async with svc.sessions() as session:
        for offer in await offer_repo.open_offers_of_doctor(session, doctor_id, now):
            call = await call_repo.get_call(session, offer.call_id)
            if call is None:
                continue
            items.append(
                {
                    "offer": str(offer.id),
                    "call": call_summary(call),
                    "distance_m": None if offer.distance_m is None else round(offer.distance_m, 1),
                    "eta_s": None if offer.eta_s is None else round(offer.eta_s),
                    "deadline": epoch_ms(offer.deadline_at),
                }
            )
    return json_response({"items": items})
