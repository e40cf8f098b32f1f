"""Server settings, read once from the environment.

Every setting is a ``TOT_*`` environment variable (a ``.env`` file in the working directory is read too,
through Starlette's ``Config``). The README lists them all; this module is the single place that reads
them. A bad value raises :class:`SettingsError` whose message is one line naming the setting, so the CLI
can stop start-up with exactly that line.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from starlette.config import Config

from dispatch.outbox_settings import OutboxSettings
from dispatch.ranking import RankingSettings
from dispatch.settings import DispatchSettings
from dispatch.slots import Rules as SlotRules
from server.settings_values import (
    DATABASE_SCHEMES,
    ENGINE_SCHEMES,
    EVENT_LOOPS,
    LOG_FORMATS,
    MIN_SECRET_KEY_LENGTH,
    PUSH_SERVICE_HOSTS,
    SettingsError,
    parse_chat_id,
    parse_choice,
    parse_http_url,
    parse_map_view,
    parse_non_negative_int,
    parse_origins,
    parse_positive_float,
    parse_positive_int,
    parse_push_hosts,
    parse_rate_limit,
    parse_rings,
    parse_scheme,
    parse_slot_step,
    parse_sms_url,
    parse_telegram,
    parse_tile_attribution,
    parse_tile_url,
    parse_vapid,
)

__all__ = ["ENGINE_SCHEMES", "MIN_SECRET_KEY_LENGTH", "Settings", "SettingsError", "load_settings"]


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one server process.

    Durations are seconds. ``secret_key_generated`` is true when the demo generated a throwaway key
    (tokens then die with the process).
    """

    engine_url: str = "memory://"
    engine_prefix: str = "tot:"
    database_url: str = "sqlite+aiosqlite:///./tot.db"
    db_pool_size: int = 15
    db_pool_timeout_s: float = 5.0
    secret_key: str = field(default="", repr=False)
    secret_key_generated: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 30 * 24 * 3600
    log_level: str = "INFO"
    log_format: str = "text"
    event_loop: str = "uvloop"
    demo: bool = False
    ws_allowed_origins: tuple[str, ...] = ()
    ws_max_frame_bytes: int = 16 * 1024
    ws_idle_timeout_s: int = 60
    ws_send_queue_frames: int = 1000
    ws_send_timeout_s: int = 10
    ws_max_subscriptions: int = 500
    # A live subscription's recovery from history (realtime/session.py, RecoveryPolicy).
    ws_recovery_attempts: int = 3
    ws_recovery_timeout_s: float = 5.0
    location_max_past_s: int = 300
    location_max_future_s: int = 30
    position_forward_interval_ms: int = 1000
    doctor_offline_after_s: int = 60
    offer_timeout_s: float = 15.0
    search_rings_km: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0)
    broadcast_offers: int = 3
    max_offers_per_call: int = 10
    planned_lead_s: float = 3600.0
    visit_estimate_s: float = 3600.0
    road_factor: float = 1.4
    eta_speed_kmh: float = 30.0
    candidate_max_age_s: int = 60
    dispatch_step_retry_s: float = 10.0
    sos_radius_km: float = 3.0
    sos_repeat_s: float = 15.0
    # Planned visits (docs/planned-visits.md): slots start on this grid of minutes after local midnight.
    slot_step_min: int = 15
    # The live engine as a cache of the database (server/engine_care.py).
    engine_watch_interval_s: float = 0.5
    repair_interval_s: float = 5.0
    # The transactional outbox (dispatch/publisher.py, dispatch/outbox_relay.py).
    outbox_publish_timeout_ms: int = 500
    outbox_commit_lease_ms: int = 5_000
    outbox_relay_interval_ms: int = 500
    outbox_relay_lease_ms: int = 5_000
    outbox_relay_batch: int = 200
    outbox_retention_s: int = 600
    # The dispatcher console (docs/console.md).
    map_feed_interval_ms: int = 1000
    console_tile_url: str = ""
    """The console's base map tile URL template; "" for none (zones only)."""
    console_tile_attribution: str = ""
    console_map_view: tuple[float, float, int] = (55.7558, 37.6173, 11)
    # Abuse limits (server/abuse.py, docs/operations.md "Abuse limits"): ``limits`` rate strings such
    # as "20/minute", or "" for none.
    login_limit_address: str = "20/minute"
    login_limit_account: str = "100/hour"
    register_limit_address: str = "30/hour"
    register_limit_account: str = "5/hour"
    hash_concurrency: int = 1
    hash_queue: int = 16
    ws_max_per_user: int = 10
    ws_max_per_address: int = 1000
    http_header_timeout_s: float = 10.0
    http_keep_alive_timeout_s: int = 5
    forwarded_allow_ips: str = "127.0.0.1"
    # Notifications (server/notify/, docs/notifications.md). Telegram is off without a bot token.
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_webhook_secret: str = field(default="", repr=False)
    telegram_bot_username: str = ""
    telegram_link_ttl_s: int = 600
    telegram_rate_per_s: float = 30.0
    telegram_chat_interval_ms: int = 1000
    telegram_link_base: str = "https://t.me"
    """Where deep links point (``<base>/<bot>?start=<token>``): Telegram, or the demo's fake."""
    telegram_dispatch_chat: int | None = None
    """The dispatchers' Telegram group (its chat id, negative); None: no group (server/notify/group.py)."""
    telegram_dispatch_chat_language: str = "ru"
    telegram_group_interval_ms: int = 3000
    notify_sender_interval_ms: int = 200
    notify_max_attempts: int = 5
    notify_lease_ms: int = 30_000
    notify_coalesce_ms: int = 100
    # E-mail (off without a host) and SMS (off without a gateway URL).
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "tot-dispatch@localhost"
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_starttls: bool = False
    sms_gateway_url: str = ""
    sms_api_key: str = field(default="", repr=False)
    sms_default_region: str = "RU"
    # Web push (off without a VAPID key; server/notify/webpush.py).
    vapid_private_key: str = field(default="", repr=False)
    vapid_subject: str = "mailto:tot-dispatch@localhost"
    push_offer_after_ms: int = 1500
    push_endpoint_hosts: tuple[str, ...] = PUSH_SERVICE_HOSTS
    push_allow_loopback: bool = False
    # Phone confirmation at registration (server/phone_confirm.py): in effect with an SMS gateway.
    phone_confirmation: bool = True
    phone_code_ttl_s: int = 600
    phone_code_attempts: int = 5
    phone_code_limit_account: str = "1/minute;5/hour"
    phone_code_limit_address: str = "20/hour"
    # Test only: the domain clock shifted by the offset in this file (server/test_clock.py).
    test_clock_file: str = ""

    @property
    def engine_scheme(self) -> str:
        """``memory`` or ``redis``/``rediss``."""
        return urlsplit(self.engine_url).scheme

    def dispatch(self) -> DispatchSettings:
        """The dispatch loop's tunables."""
        return DispatchSettings(
            offer_timeout_s=self.offer_timeout_s,
            rings_m=tuple(r * 1000 for r in self.search_rings_km),
            broadcast_k=self.broadcast_offers,
            max_offers=self.max_offers_per_call,
            candidate_max_age_s=self.candidate_max_age_s,
            planned_lead_s=self.planned_lead_s,
            visit_estimate_s=self.visit_estimate_s,
            step_retry_s=self.dispatch_step_retry_s,
            ranking=RankingSettings(road_factor=self.road_factor, speed_mps=self.eta_speed_kmh / 3.6),
        )

    def slot_rules(self) -> SlotRules:
        """The planned visits' slot rules: the grid step, the 30-day horizon, the ranking's ETA model."""
        return SlotRules(step_min=self.slot_step_min, ranking=self.dispatch().ranking)

    def outbox(self) -> OutboxSettings:
        """The outbox's tunables (the others keep their defaults)."""
        return OutboxSettings(
            publish_timeout_ms=self.outbox_publish_timeout_ms,
            commit_lease_ms=self.outbox_commit_lease_ms,
            relay_interval_ms=self.outbox_relay_interval_ms,
            relay_lease_ms=self.outbox_relay_lease_ms,
            relay_batch=self.outbox_relay_batch,
            retention_s=self.outbox_retention_s,
        )

    @property
    def database_dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return urlsplit(self.database_url).scheme.split("+", 1)[0]


def load_settings(
    *, demo: bool = False, require_secret: bool = True, environ: dict[str, str] | None = None
) -> Settings:
    """Read and validate every ``TOT_*`` setting.

    ``demo`` allows a missing ``TOT_SECRET_KEY``: a random one is generated and flagged, so the caller
    can say so. Commands that sign no tokens (``migrate``, ``users``) pass ``require_secret=False``.
    ``environ`` replaces ``os.environ`` (tests).

    Raises :class:`SettingsError` naming the first bad or missing setting.
    """
    env_file = ".env" if environ is None and os.path.exists(".env") else None
    config = Config(env_file=env_file, environ=os.environ if environ is None else environ)

    engine_url = parse_scheme(config, "TOT_ENGINE_URL", "memory://", ENGINE_SCHEMES)
    engine_prefix = str(config("TOT_ENGINE_PREFIX", default="tot:"))
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,40}", engine_prefix):
        raise SettingsError(
            "TOT_ENGINE_PREFIX", "use 1-40 letters, digits or _.:- (no braces: they are hash tags)"
        )
    database_url = parse_scheme(config, "TOT_DATABASE_URL", "sqlite+aiosqlite:///./tot.db", DATABASE_SCHEMES)

    secret_key = str(config("TOT_SECRET_KEY", default=""))
    generated = False
    if not secret_key and demo:
        secret_key, generated = secrets.token_hex(32), True
    elif not secret_key and require_secret:
        raise SettingsError(
            "TOT_SECRET_KEY",
            "required (set a random string of at least 32 characters, e.g. `openssl rand -hex 32`)",
        )
    elif secret_key and len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise SettingsError("TOT_SECRET_KEY", f"must be at least {MIN_SECRET_KEY_LENGTH} characters long")

    port = parse_positive_int(config, "TOT_PORT", 8000)
    if port > 65535:
        raise SettingsError("TOT_PORT", f"must be at most 65535, got {port}")
    tile_url = parse_tile_url(config)
    telegram_token, telegram_api_url, telegram_secret = parse_telegram(config)
    vapid_key, vapid_subject = parse_vapid(config)

    return Settings(
        engine_url=engine_url,
        engine_prefix=engine_prefix,
        database_url=database_url,
        db_pool_size=parse_positive_int(config, "TOT_DB_POOL_SIZE", 15),
        db_pool_timeout_s=parse_positive_float(config, "TOT_DB_POOL_TIMEOUT", 5.0, minimum=0.001),
        secret_key=secret_key,
        secret_key_generated=generated,
        host=str(config("TOT_HOST", default="127.0.0.1")),
        port=port,
        access_token_ttl_s=parse_positive_int(config, "TOT_ACCESS_TOKEN_TTL", 15 * 60),
        refresh_token_ttl_s=parse_positive_int(config, "TOT_REFRESH_TOKEN_TTL", 30 * 24 * 3600),
        log_level=parse_choice(
            config, "TOT_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")
        ).upper(),
        log_format=parse_choice(config, "TOT_LOG_FORMAT", "text", LOG_FORMATS),
        event_loop=parse_choice(config, "TOT_EVENT_LOOP", "uvloop", EVENT_LOOPS),
        demo=demo,
        ws_allowed_origins=parse_origins(config),
        ws_max_frame_bytes=parse_positive_int(config, "TOT_WS_MAX_FRAME_BYTES", 16 * 1024),
        ws_idle_timeout_s=parse_positive_int(config, "TOT_WS_IDLE_TIMEOUT", 60),
        ws_send_queue_frames=parse_positive_int(config, "TOT_WS_SEND_QUEUE", 1000),
        ws_send_timeout_s=parse_positive_int(config, "TOT_WS_SEND_TIMEOUT", 10),
        ws_max_subscriptions=parse_positive_int(config, "TOT_WS_MAX_SUBSCRIPTIONS", 500),
        ws_recovery_attempts=parse_positive_int(config, "TOT_WS_RECOVERY_ATTEMPTS", 3),
        ws_recovery_timeout_s=parse_positive_float(config, "TOT_WS_RECOVERY_TIMEOUT", 5.0, minimum=0.01),
        location_max_past_s=parse_positive_int(config, "TOT_LOCATION_MAX_PAST", 300),
        location_max_future_s=parse_positive_int(config, "TOT_LOCATION_MAX_FUTURE", 30),
        position_forward_interval_ms=parse_positive_int(config, "TOT_POSITION_FORWARD_INTERVAL_MS", 1000),
        doctor_offline_after_s=parse_positive_int(config, "TOT_DOCTOR_OFFLINE_AFTER", 60),
        offer_timeout_s=parse_positive_float(config, "TOT_OFFER_TIMEOUT", 15.0),
        search_rings_km=parse_rings(config),
        broadcast_offers=parse_positive_int(config, "TOT_BROADCAST_OFFERS", 3),
        max_offers_per_call=parse_positive_int(config, "TOT_MAX_OFFERS_PER_CALL", 10),
        planned_lead_s=parse_positive_float(config, "TOT_PLANNED_LEAD_TIME", 3600.0),
        visit_estimate_s=parse_positive_float(config, "TOT_VISIT_ESTIMATE_MIN", 60.0) * 60,
        road_factor=parse_positive_float(config, "TOT_ROAD_FACTOR", 1.4, minimum=1.0),
        eta_speed_kmh=parse_positive_float(config, "TOT_ETA_SPEED_KMH", 30.0),
        candidate_max_age_s=parse_positive_int(config, "TOT_CANDIDATE_MAX_AGE", 60),
        dispatch_step_retry_s=parse_positive_float(config, "TOT_DISPATCH_STEP_RETRY", 10.0),
        sos_radius_km=parse_positive_float(config, "TOT_SOS_RADIUS_KM", 3.0),
        sos_repeat_s=parse_positive_float(config, "TOT_SOS_REPEAT", 15.0),
        slot_step_min=parse_slot_step(config),
        engine_watch_interval_s=parse_positive_float(config, "TOT_ENGINE_WATCH_INTERVAL", 0.5, minimum=0.01),
        repair_interval_s=parse_positive_float(config, "TOT_REPAIR_INTERVAL", 5.0, minimum=0.1),
        outbox_publish_timeout_ms=parse_positive_int(config, "TOT_OUTBOX_PUBLISH_TIMEOUT_MS", 500),
        outbox_commit_lease_ms=parse_positive_int(config, "TOT_OUTBOX_COMMIT_LEASE_MS", 5_000),
        outbox_relay_interval_ms=parse_positive_int(config, "TOT_OUTBOX_RELAY_INTERVAL_MS", 500),
        outbox_relay_lease_ms=parse_positive_int(config, "TOT_OUTBOX_RELAY_LEASE_MS", 5_000),
        outbox_relay_batch=parse_positive_int(config, "TOT_OUTBOX_RELAY_BATCH", 200),
        outbox_retention_s=parse_positive_int(config, "TOT_OUTBOX_RETENTION", 600),
        map_feed_interval_ms=parse_positive_int(config, "TOT_MAP_FEED_INTERVAL_MS", 1000),
        console_tile_url=tile_url,
        console_tile_attribution=parse_tile_attribution(config, tile_url),
        console_map_view=parse_map_view(config),
        # The demo's city signs in and registers its hundreds of accounts from 127.0.0.1: no address
        # limits there unless asked for.
        login_limit_address=parse_rate_limit(config, "TOT_LOGIN_LIMIT_ADDRESS", "" if demo else "20/minute"),
        login_limit_account=parse_rate_limit(config, "TOT_LOGIN_LIMIT_ACCOUNT", "100/hour"),
        register_limit_address=parse_rate_limit(
            config, "TOT_REGISTER_LIMIT_ADDRESS", "" if demo else "30/hour"
        ),
        register_limit_account=parse_rate_limit(config, "TOT_REGISTER_LIMIT_ACCOUNT", "5/hour"),
        # One argon2 hash keeps up to four cores busy (its four lanes run on threads of their own).
        hash_concurrency=parse_positive_int(
            config, "TOT_HASH_CONCURRENCY", max(1, (os.cpu_count() or 1) // 4)
        ),
        hash_queue=parse_positive_int(config, "TOT_HASH_QUEUE", 16),
        ws_max_per_user=parse_positive_int(config, "TOT_WS_MAX_PER_USER", 10),
        ws_max_per_address=parse_positive_int(config, "TOT_WS_MAX_PER_ADDRESS", 100_000 if demo else 1000),
        http_header_timeout_s=parse_positive_float(config, "TOT_HTTP_HEADER_TIMEOUT", 10.0, minimum=0.1),
        http_keep_alive_timeout_s=parse_positive_int(config, "TOT_HTTP_KEEP_ALIVE_TIMEOUT", 5),
        forwarded_allow_ips=str(config("TOT_FORWARDED_ALLOW_IPS", default="127.0.0.1")).strip(),
        telegram_bot_token=telegram_token,
        telegram_api_url=telegram_api_url,
        telegram_webhook_secret=telegram_secret,
        telegram_bot_username=str(config("TOT_TELEGRAM_BOT_USERNAME", default="")).strip().lstrip("@"),
        telegram_link_ttl_s=parse_positive_int(config, "TOT_TELEGRAM_LINK_TTL", 600),
        telegram_rate_per_s=parse_positive_float(config, "TOT_TELEGRAM_RATE", 30.0),
        telegram_chat_interval_ms=parse_positive_int(config, "TOT_TELEGRAM_CHAT_INTERVAL_MS", 1000),
        telegram_link_base=parse_http_url(config, "TOT_TELEGRAM_LINK_BASE", "https://t.me"),
        telegram_dispatch_chat=parse_chat_id(config, "TOT_TELEGRAM_DISPATCH_CHAT"),
        telegram_dispatch_chat_language=parse_choice(
            config, "TOT_TELEGRAM_DISPATCH_CHAT_LANGUAGE", "ru", ("ru", "en")
        ),
        telegram_group_interval_ms=parse_positive_int(config, "TOT_TELEGRAM_GROUP_INTERVAL_MS", 3000),
        notify_sender_interval_ms=parse_positive_int(config, "TOT_NOTIFY_SENDER_INTERVAL_MS", 200),
        notify_max_attempts=parse_positive_int(config, "TOT_NOTIFY_MAX_ATTEMPTS", 5),
        notify_lease_ms=parse_positive_int(config, "TOT_NOTIFY_LEASE_MS", 30_000),
        notify_coalesce_ms=parse_non_negative_int(config, "TOT_NOTIFY_COALESCE_MS", 100),
        smtp_host=str(config("TOT_SMTP_HOST", default="")).strip(),
        smtp_port=parse_positive_int(config, "TOT_SMTP_PORT", 25),
        smtp_from=str(config("TOT_SMTP_FROM", default="tot-dispatch@localhost")).strip(),
        smtp_username=str(config("TOT_SMTP_USERNAME", default="")),
        smtp_password=str(config("TOT_SMTP_PASSWORD", default="")),
        smtp_starttls=parse_choice(config, "TOT_SMTP_STARTTLS", "false", ("true", "false")) == "true",
        sms_gateway_url=parse_sms_url(config),
        sms_api_key=str(config("TOT_SMS_API_KEY", default="")),
        sms_default_region=str(config("TOT_SMS_DEFAULT_REGION", default="RU")).strip().upper(),
        vapid_private_key=vapid_key,
        vapid_subject=vapid_subject,
        push_offer_after_ms=parse_positive_int(config, "TOT_PUSH_OFFER_AFTER_MS", 1500),
        push_endpoint_hosts=parse_push_hosts(config),
        push_allow_loopback=parse_choice(config, "TOT_PUSH_ALLOW_LOOPBACK", "false", ("true", "false"))
        == "true",
        phone_confirmation=parse_choice(config, "TOT_PHONE_CONFIRMATION", "true", ("true", "false"))
        == "true",
        phone_code_ttl_s=parse_positive_int(config, "TOT_PHONE_CODE_TTL", 600),
        phone_code_attempts=parse_positive_int(config, "TOT_PHONE_CODE_ATTEMPTS", 5),
        phone_code_limit_account=parse_rate_limit(config, "TOT_PHONE_CODE_LIMIT_ACCOUNT", "1/minute;5/hour"),
        phone_code_limit_address=parse_rate_limit(
            config, "TOT_PHONE_CODE_LIMIT_ADDRESS", "" if demo else "20/hour"
        ),
        test_clock_file=str(config("TOT_TEST_CLOCK_FILE", default="")).strip(),
    )
