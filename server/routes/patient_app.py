"""The patient's app: its page (``/app``), its web app manifest and its service worker.

Like the console (server/routes/console.py) the page is static (``server/static/patient/``, served
under ``/app/static/``) apart from a JSON block with the map settings; everything it shows it reads
through the public REST API and the WebSocket (docs/patient-app.md). The service worker lives at
``/app/sw.js`` and is allowed the scope ``/app`` (``Service-Worker-Allowed``), so that it controls the
page ``/app`` itself and not only what lies below ``/app/``.
"""

from __future__ import annotations

import html

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from server.console_assets import PACKAGES, installed
from server.routes import api
from server.routes.console import MISSING_ASSETS, STATIC_DIR
from server.services import services

PATIENT_DIR = STATIC_DIR / "patient"
STATIC_PREFIX = "/app/static"
SCOPE = "/app"
CONFIG_MARKER = "<!--app-config-->"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; connect-src 'self' ws: wss:; worker-src 'self'; "
    "manifest-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""Scripts only from this server; images from anywhere (the tile server is a setting)."""


def map_config(request: Request) -> dict[str, object]:
    """The map settings the browser pages share with the console: tiles, attribution, first view."""
    settings = services(request).settings
    lat, lon, zoom = settings.console_map_view
    return {
        "tileUrl": settings.console_tile_url,
        "tileAttribution": settings.console_tile_attribution,
        "view": {"lat": lat, "lon": lon, "zoom": zoom},
    }


class ManifestIcon(BaseModel):
    """One icon of the manifest: URL, sizes (``any`` for SVG), MIME type, purpose."""

    src: str
    sizes: str
    type: str
    purpose: str


class ManifestOut(BaseModel):
    """The web app manifest (W3C Web App Manifest): what an installed app is called and opens."""

    name: str
    short_name: str
    description: str
    start_url: str
    scope: str
    id: str
    display: str
    background_color: str
    theme_color: str
    icons: list[ManifestIcon]


@api.route(
    "GET",
    "/app",
    summary="The patient's app (an HTML page)",
    tag="patient app",
    roles=None,
    response_media_type="text/html",
    alternate=(503,),
)
async def patient_page(request: Request) -> Response:
    """Public page; it signs up and in with ``/v1/auth/register`` and ``/v1/auth/login`` and works for
    patients only. 503 when the map library was not installed (``server.console_assets``)."""
    missing = [f"{p.name}@{p.version}" for p in PACKAGES if not installed(p)]
    if missing:
        body = MISSING_ASSETS.format(packages=html.escape(", ".join(missing)))
        return HTMLResponse(body, status_code=503)
    text = orjson.dumps(map_config(request)).decode().replace("<", "\\u003c")
    page = (PATIENT_DIR / "index.html").read_text(encoding="utf-8")
    block = f'<script type="application/json" id="app-config">{text}</script>'
    return HTMLResponse(
        page.replace(CONFIG_MARKER, block, 1),
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


@api.route(
    "GET",
    "/app/sw.js",
    summary="The patient app's service worker (scope /app)",
    tag="patient app",
    roles=None,
    response_media_type="text/javascript",
)
async def patient_service_worker(request: Request) -> Response:
    """An offline shell: caches the app's static files (docs/patient-app.md). ``Service-Worker-Allowed:
    /app`` lets it control ``/app`` itself; ``no-cache`` so a new version is seen on the next visit."""
    return Response(
        (PATIENT_DIR / "sw.js").read_bytes(),
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": SCOPE, "Cache-Control": "no-cache"},
    )


@api.route(
    "GET",
    "/app/manifest.webmanifest",
    summary="The patient app's web app manifest",
    tag="patient app",
    roles=None,
    response=ManifestOut,
    response_media_type="application/manifest+json",
)
async def patient_manifest(request: Request) -> Response:
    """What a phone needs to install the app: name, icons, start URL and scope ``/app``."""
    return Response(
        (PATIENT_DIR / "manifest.webmanifest").read_bytes(),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )
