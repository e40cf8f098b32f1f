"""Parsing of single settings' raw values (server/settings.py reads them): each function takes the
``Config`` and a setting's name and returns the checked value or raises :class:`SettingsError`, whose
message is one line naming the setting."""

from __future__ import annotations

import math
import re
from urllib.parse import urlsplit

from limits import parse_many
from starlette.config import Config

ENGINE_SCHEMES = ("memory", "redis", "rediss")
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")
LOG_FORMATS = ("text", "json")
EVENT_LOOPS = ("uvloop", "asyncio")
PUSH_SERVICE_HOSTS = (
    "fcm.googleapis.com",
    "push.services.mozilla.com",
    "notify.windows.com",
    "push.apple.com",
)
"""The push services of Chrome/Edge (FCM), Firefox (autopush), Windows (WNS) and Safari: the hosts
(and their subdomains) a subscription's endpoint may name by default (``TOT_PUSH_ENDPOINT_HOSTS``).
The server POSTs to that URL, so an open list would let anyone make it call any address."""
MIN_SECRET_KEY_LENGTH = 32  # HS256 wants a key at least as long as its 256-bit output (RFC 7518, 3.2)


class SettingsError(ValueError):
    """A setting is missing or malformed. ``str(err)`` is one line that names the setting."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.setting = name


def parse_positive_int(config: Config, name: str, default: int) -> int:
    raw = config(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"expected a whole number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(name, f"must be positive, got {value}")
    return value


def parse_non_negative_int(config: Config, name: str, default: int) -> int:
    raw = config(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"expected a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(name, f"must not be negative, got {value}")
    return value


SLOT_STEPS = (5, 10, 15, 20, 30, 60)
"""Slot grid steps in minutes: each divides an hour, so slots line up with the hours of every day."""


def parse_slot_step(config: Config) -> int:
    value = parse_positive_int(config, "TOT_SLOT_STEP_MIN", 15)
    if value not in SLOT_STEPS:
        raise SettingsError("TOT_SLOT_STEP_MIN", f"one of {', '.join(map(str, SLOT_STEPS))}, got {value}")
    return value


def parse_positive_float(config: Config, name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = config(name, default=str(default))
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0 or value < minimum:
        raise SettingsError(name, f"must be a finite number above {max(minimum, 0)}, got {raw}")
    return value


def parse_rate_limit(config: Config, name: str, default: str) -> str:
    """A ``limits`` rate string ("20/minute", "5 per hour", several joined by ";"), or "" for none
    (also "off")."""
    raw = str(config(name, default=default)).strip()
    if raw.lower() in ("", "off", "none"):
        return ""
    try:
        parse_many(raw)
    except ValueError:
        raise SettingsError(name, f"expected a rate like 20/minute or off, got {raw!r}") from None
    return raw


def parse_rings(config: Config) -> tuple[float, ...]:
    raw = str(config("TOT_SEARCH_RINGS_KM", default="2,5,10,20"))
    try:
        rings = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(
            "TOT_SEARCH_RINGS_KM", f"expected comma-separated kilometres, got {raw!r}"
        ) from None
    if not rings or any(not 0 < r <= 50 for r in rings) or list(rings) != sorted(set(rings)):
        raise SettingsError(
            "TOT_SEARCH_RINGS_KM", "give increasing radii between 0 and 50 km, e.g. 2,5,10,20"
        )
    return rings


def parse_origins(config: Config) -> tuple[str, ...]:
    raw = str(config("TOT_WS_ALLOWED_ORIGINS", default=""))
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(
                "TOT_WS_ALLOWED_ORIGINS", f"not an origin like https://host[:port]: {origin!r}"
            )
    return origins


def parse_scheme(config: Config, name: str, default: str, allowed: tuple[str, ...]) -> str:
    url = str(config(name, default=default))
    scheme = urlsplit(url).scheme
    if scheme not in allowed:
        raise SettingsError(
            name, f"unsupported URL scheme {scheme!r} in {url!r}; use one of: {', '.join(allowed)}"
        )
    return url


def parse_choice(config: Config, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(config(name, default=default)).lower()
    if value not in allowed:
        raise SettingsError(name, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


OSM_TILE_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
"""OpenStreetMap's standard tiles: the console's default street map (tile usage policy:
https://operations.osmfoundation.org/policies/tiles/; a busy deployment should use its own tiles)."""
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
TILES_OFF = ("", "off", "none")


def parse_tile_url(config: Config) -> str:
    """``TOT_CONSOLE_TILE_URL``: unset, OpenStreetMap's tiles; empty, ``off`` or ``none``: no tiles."""
    raw = str(config("TOT_CONSOLE_TILE_URL", default=OSM_TILE_URL)).strip()
    if raw.lower() in TILES_OFF:
        return ""
    if urlsplit(raw).scheme not in ("http", "https") or not all(p in raw for p in ("{z}", "{x}", "{y}")):
        raise SettingsError(
            "TOT_CONSOLE_TILE_URL", "expected an http(s) URL with {z}, {x} and {y}, or nothing (no tiles)"
        )
    return raw


def parse_tile_attribution(config: Config, tile_url: str) -> str:
    """``TOT_CONSOLE_TILE_ATTRIBUTION``, else OpenStreetMap's for its tiles (else none)."""
    given = str(config("TOT_CONSOLE_TILE_ATTRIBUTION", default="")).strip()
    return given or (OSM_ATTRIBUTION if tile_url == OSM_TILE_URL else "")


def parse_map_view(config: Config) -> tuple[float, float, int]:
    raw = str(config("TOT_CONSOLE_MAP_VIEW", default="55.7558,37.6173,11"))
    problem = "expected lat,lon,zoom (degrees and a zoom level 1-18), e.g. 55.7558,37.6173,11"
    try:
        lat_s, lon_s, zoom_s = raw.split(",")
        lat, lon, zoom = float(lat_s), float(lon_s), int(zoom_s)
    except ValueError:
        raise SettingsError("TOT_CONSOLE_MAP_VIEW", problem) from None
    if not (-85 <= lat <= 85 and -180 <= lon <= 180 and 1 <= zoom <= 18):
        raise SettingsError("TOT_CONSOLE_MAP_VIEW", problem)
    return lat, lon, zoom


def parse_telegram(config: Config) -> tuple[str, str, str]:
    """``(bot token, API URL, webhook secret)``; a token needs a secret (the webhook checks it)."""
    token = str(config("TOT_TELEGRAM_BOT_TOKEN", default="")).strip()
    api_url = str(config("TOT_TELEGRAM_API_URL", default="https://api.telegram.org")).strip().rstrip("/")
    if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).netloc:
        raise SettingsError("TOT_TELEGRAM_API_URL", f"expected an http(s) URL, got {api_url!r}")
    secret = str(config("TOT_TELEGRAM_WEBHOOK_SECRET", default="")).strip()
    if token and not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", secret):
        raise SettingsError(
            "TOT_TELEGRAM_WEBHOOK_SECRET",
            "required with TOT_TELEGRAM_BOT_TOKEN: 16-256 of A-Za-z0-9_- (Telegram's secret_token)",
        )
    return token, api_url, secret


def parse_sms_url(config: Config) -> str:
    """``TOT_SMS_GATEWAY_URL``: an http(s) URL, or empty (SMS off)."""
    url = str(config("TOT_SMS_GATEWAY_URL", default="")).strip().rstrip("/")
    if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc):
        raise SettingsError("TOT_SMS_GATEWAY_URL", f"expected an http(s) URL or nothing, got {url!r}")
    return url


def parse_vapid(config: Config) -> tuple[str, str]:
    """``(TOT_VAPID_PRIVATE_KEY, TOT_VAPID_SUBJECT)``, both checked (the key may be empty: push off)."""
    from server.notify.vapid import SUBJECT, load_private_key

    key = str(config("TOT_VAPID_PRIVATE_KEY", default="")).strip()
    if key:
        try:
            load_private_key(key)
        except ValueError as exc:
            raise SettingsError(
                "TOT_VAPID_PRIVATE_KEY", f"{exc} (base64url, as web-push prints it)"
            ) from None
    subject = str(config("TOT_VAPID_SUBJECT", default="mailto:tot-dispatch@localhost")).strip()
    if not SUBJECT.match(subject):
        raise SettingsError(
            "TOT_VAPID_SUBJECT", f"expected mailto:someone@host or an https: URL, got {subject!r}"
        )
    return key, subject


def parse_push_hosts(config: Config) -> tuple[str, ...]:
    """``TOT_PUSH_ENDPOINT_HOSTS``: host names (a subscription's endpoint host must be one of them or
    a subdomain), or ``*`` for any."""
    raw = str(config("TOT_PUSH_ENDPOINT_HOSTS", default=",".join(PUSH_SERVICE_HOSTS)))
    hosts = tuple(h.strip().lower().strip(".") for h in raw.split(",") if h.strip())
    for host in hosts:
        if host != "*" and not re.fullmatch(r"[a-z0-9.-]+", host):
            raise SettingsError("TOT_PUSH_ENDPOINT_HOSTS", f"not a host name: {host!r}")
    return hosts


def parse_http_url(config: Config, name: str, default: str) -> str:
    """An http(s) URL without a trailing slash."""
    url = str(config(name, default=default)).strip().rstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise SettingsError(name, f"expected an http(s) URL, got {url!r}")
    return url


def parse_chat_id(config: Config, name: str) -> int | None:
    """A Telegram chat id (an integer; groups are negative), or None when unset."""
    raw = str(config(name, default="")).strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(
            name, f"expected a Telegram chat id (an integer such as -1001234567890), got {raw!r}"
        ) from None
