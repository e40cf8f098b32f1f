"""The dispatcher console: its page (``/console``), the map cells a view covers and where the live
doctors are (the console's first view).

The page is static (``server/static/console/``, served under ``/console/static/``) apart from a JSON
block with the map settings (tile URL, attribution, first view). Everything the page shows it reads
through the public REST API and the WebSocket (docs/console.md).
"""

from __future__ import annotations

import html
from pathlib import Path

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from geo.location_index import DEFAULT_BOX_LIMIT
from geo.map_cells import MAP_RESOLUTION, TooManyCells, cells_covering
from models.enums import Role
from realtime.errors import ErrorCode
from server.console_assets import PACKAGES, installed
from server.errors import ApiError
from server.http import json_response, parse_query
from server.routes import api
from server.routes.zones import parse_bbox
from server.schemas import Input
from server.services import services

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONSOLE_DIR = STATIC_DIR / "console"
STATIC_PREFIX = "/console/static"
SHARED_STATIC = {
    "/static/i18n": STATIC_DIR / "i18n",
    "/static/shared": STATIC_DIR / "shared",
    "/static/vendor": STATIC_DIR / "vendor",
}
"""What every browser app shares, served as the console's files are: the translation catalogues and
the modules (``shared/i18n.js``) and the pinned libraries (``vendor/``, server.console_assets)."""
STAFF = (Role.DISPATCHER, Role.ADMIN)
MAX_MAP_CELLS = 300
"""Most map cells one view may cover (~10,000 km² at resolution 6); the console asks to zoom in
beyond. Below ``TOT_WS_MAX_SUBSCRIPTIONS`` (500) with room for the other channels."""
CONFIG_MARKER = "<!--console-config-->"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; connect-src 'self' ws: wss:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
"""Scripts only from this server; images from anywhere (the tile server is a setting)."""


def _config_block(request: Request) -> str:
    settings = services(request).settings
    lat, lon, zoom = settings.console_map_view
    config = {
        "tileUrl": settings.console_tile_url,
        "tileAttribution": settings.console_tile_attribution,
        "view": {"lat": lat, "lon": lon, "zoom": zoom},
        "mapResolution": MAP_RESOLUTION,
        "maxMapCells": MAX_MAP_CELLS,
    }
    # "<" escaped so that no value can close the script element.
    text = orjson.dumps(config).decode().replace("<", "\\u003c")
    return f'<script type="application/json" id="console-config">{text}</script>'


MISSING_ASSETS = """<!doctype html><meta charset="utf-8"><title>TOT console</title>
<h1>The console's map library is not installed</h1>
<p>Run <code>scripts/demo</code> (or <code>python -m server.console_assets</code>) on the server: it
fetches {packages} from the npm registry and checks its hash.</p>"""


@api.route(
    "GET",
    "/console/sw.js",
    summary="The console's service worker (web push)",
    tag="console",
    roles=None,
    response_media_type="text/javascript",
)
async def console_service_worker(request: Request) -> Response:
    """Shows web push notifications (no offline shell), allowed to control ``/console`` itself."""
    return Response(
        (CONSOLE_DIR / "sw.js").read_text(encoding="utf-8"),
        media_type="text/javascript",
        headers={"Service-Worker-Allowed": "/console", "Cache-Control": "no-cache"},
    )


@api.route(
    "GET",
    "/console",
    summary="The dispatcher console (an HTML page)",
    tag="console",
    roles=None,
    response_media_type="text/html",
    alternate=(503,),
)
async def console_page(request: Request) -> Response:
    """The page itself is public; it signs in with ``POST /v1/auth/login`` and works only for
    dispatchers and admins. 503 when the map library was not installed (``server.console_assets``)."""
    missing = [f"{p.name}@{p.version}" for p in PACKAGES if not installed(p)]
    if missing:
        body = MISSING_ASSETS.format(packages=html.escape(", ".join(missing)))
        return HTMLResponse(body, status_code=503)
    page = (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(
        page.replace(CONFIG_MARKER, _config_block(request), 1),
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"},
    )


class CellsQuery(Input):
    """``bbox=west,south,east,north`` (degrees, as GeoJSON orders a bbox)."""

    model_config = ConfigDict(extra="forbid")

    bbox: str = Field(description="west,south,east,north in WGS84 degrees", examples=["37.5,55.7,37.7,55.8"])

    @field_validator("bbox")
    @classmethod
    def _check_bbox(cls, value: str) -> str:
        parse_bbox(value)
        return value


class CellsOut(BaseModel):
    """The map cells touching the box: subscribe to ``map:<cell>`` for each."""

    resolution: int
    cells: list[str]


@api.route(
    "GET",
    "/v1/map/cells",
    summary="The map channels that cover a box",
    tag="console",
    query=CellsQuery,
    response=CellsOut,
    roles=STAFF,
)
async def map_cells(request: Request) -> Response:
    """Dispatchers and admins: the H3 cells (resolution 6) whose area touches ``bbox``, sorted. Each is
    a channel ``map:<cell>`` carrying one ``map.doctors`` batch per tick (docs/protocol.md). More than
    300 cells: 422 ``too_many_cells`` (zoom in)."""
    query = parse_query(request, CellsQuery)
    west, south, east, north = parse_bbox(query.bbox)
    try:
        cells = cells_covering((south, west, north, east), MAX_MAP_CELLS)
    except TooManyCells as exc:
        raise ApiError(ErrorCode.TOO_MANY_CELLS, str(exc), field="bbox", limit=exc.limit) from None
    return json_response({"resolution": MAP_RESOLUTION, "cells": cells})


class ExtentOut(BaseModel):
    """Where the live doctors are: ``bbox`` is ``[west, south, east, north]`` (degrees), null when none."""

    doctors: int
    bbox: list[float] | None


WORLD = (-85.0, -180.0, 85.0, 180.0)
"""south, west, north, east: everything the location index can hold."""
TRIM_FROM = 50
"""With at least this many doctors the extent drops the outer 2 % on each side (a stray fix far away,
e.g. at 0,0, would otherwise zoom the first view out to the whole world)."""


def doctors_extent(points: list[tuple[float, float]]) -> list[float] | None:
    """``[west, south, east, north]`` around ``points`` (lat, lon), trimmed as :data:`TRIM_FROM` says;
    None for no points."""
    if not points:
        return None
    lats = sorted(p[0] for p in points)
    lons = sorted(p[1] for p in points)
    cut = len(points) // 50 if len(points) >= TRIM_FROM else 0
    last = len(points) - 1 - cut
    return [lons[cut], lats[cut], lons[last], lats[last]]


@api.route(
    "GET",
    "/v1/map/extent",
    summary="Where the live doctors are",
    tag="console",
    response=ExtentOut,
    roles=STAFF,
)
async def map_extent(request: Request) -> Response:
    """Dispatchers and admins: the box around the doctors with a fresh position
    (``TOT_CANDIDATE_MAX_AGE``), any status; the console opens there when there are no zones. Reads at
    most 5,000 doctors (the first by id)."""
    svc = services(request)
    found = await svc.engine.locations.within_box(
        *WORLD, limit=DEFAULT_BOX_LIMIT, max_age_ms=svc.settings.candidate_max_age_s * 1000
    )
    points = [(d.position.lat, d.position.lon) for d in found]
    return json_response({"doctors": len(points), "bbox": doctors_extent(points)})
