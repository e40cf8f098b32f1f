"""Settings: defaults, and one-line errors that name the bad setting."""

from __future__ import annotations

import pytest

from realtime.session import DEFAULT_RECOVERY
from server.settings import SettingsError, load_settings

KEY = "k" * 40


def test_defaults_are_the_embedded_deployment() -> None:
    settings = load_settings(environ={"TOT_SECRET_KEY": KEY})
    assert settings.engine_url == "memory://"
    assert settings.database_url == "sqlite+aiosqlite:///./tot.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.access_token_ttl_s == 900
    assert settings.database_dialect == "sqlite"


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"TOT_ENGINE_URL": "kafka://x"}, "TOT_ENGINE_URL"),
        ({"TOT_DATABASE_URL": "mysql://x/y"}, "TOT_DATABASE_URL"),
        ({"TOT_DATABASE_URL": "postgresql://x/y"}, "TOT_DATABASE_URL"),  # sync driver: refused
        ({"TOT_PORT": "eighty"}, "TOT_PORT"),
        ({"TOT_SLOT_STEP_MIN": "7"}, "TOT_SLOT_STEP_MIN"),  # must divide an hour
        ({"TOT_PORT": "70000"}, "TOT_PORT"),
        ({"TOT_ACCESS_TOKEN_TTL": "0"}, "TOT_ACCESS_TOKEN_TTL"),
        ({"TOT_LOG_FORMAT": "xml"}, "TOT_LOG_FORMAT"),
        ({"TOT_EVENT_LOOP": "trio"}, "TOT_EVENT_LOOP"),
        ({"TOT_SECRET_KEY": "short"}, "TOT_SECRET_KEY"),
        ({"TOT_DB_POOL_SIZE": "0"}, "TOT_DB_POOL_SIZE"),
        ({"TOT_DB_POOL_TIMEOUT": "soon"}, "TOT_DB_POOL_TIMEOUT"),
        ({"TOT_DB_POOL_TIMEOUT": "0"}, "TOT_DB_POOL_TIMEOUT"),
        ({"TOT_WS_RECOVERY_ATTEMPTS": "0"}, "TOT_WS_RECOVERY_ATTEMPTS"),
        ({"TOT_WS_RECOVERY_TIMEOUT": "0"}, "TOT_WS_RECOVERY_TIMEOUT"),
    ],
)
def test_bad_settings_name_themselves_in_one_line(environ: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"TOT_SECRET_KEY": KEY, **environ})
    message = str(raised.value)
    assert message.startswith(f"{setting}: ")
    assert "\n" not in message
    assert raised.value.setting == setting


def test_secret_key_required_outside_the_demo() -> None:
    with pytest.raises(SettingsError, match=r"^TOT_SECRET_KEY: required"):
        load_settings(environ={})
    demo = load_settings(demo=True, environ={})
    assert demo.secret_key_generated and len(demo.secret_key) >= 32
    assert load_settings(require_secret=False, environ={}).secret_key == ""


def test_redis_and_postgres_urls_accepted() -> None:
    settings = load_settings(
        environ={
            "TOT_SECRET_KEY": KEY,
            "TOT_ENGINE_URL": "redis://cache:6379/0",
            "TOT_DATABASE_URL": "postgresql+asyncpg://u:p@db/tot",
        }
    )
    assert settings.engine_scheme == "redis"
    assert settings.database_dialect == "postgresql"


def test_database_pool_settings() -> None:
    assert load_settings(environ={"TOT_SECRET_KEY": KEY}).db_pool_size == 15
    settings = load_settings(
        environ={"TOT_SECRET_KEY": KEY, "TOT_DB_POOL_SIZE": "40", "TOT_DB_POOL_TIMEOUT": "2.5"}
    )
    assert (settings.db_pool_size, settings.db_pool_timeout_s) == (40, 2.5)


def test_recovery_retry_settings() -> None:
    """Defaults as realtime/session.py's DEFAULT_RECOVERY (docs/protocol.md: 3 reads of at most 5 s)."""
    defaults = load_settings(environ={"TOT_SECRET_KEY": KEY})
    pair = (defaults.ws_recovery_attempts, defaults.ws_recovery_timeout_s)
    assert pair == (DEFAULT_RECOVERY.attempts, DEFAULT_RECOVERY.attempt_timeout_s) == (3, 5.0)
    settings = load_settings(
        environ={"TOT_SECRET_KEY": KEY, "TOT_WS_RECOVERY_ATTEMPTS": "5", "TOT_WS_RECOVERY_TIMEOUT": "0.5"}
    )
    assert (settings.ws_recovery_attempts, settings.ws_recovery_timeout_s) == (5, 0.5)


def test_tokens_in_logged_paths_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from server.logs import configure_logging

    configure_logging()
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:1", "/v1/ws?token=eyJ.a.b&x=1"
    )
    err = capsys.readouterr().err
    assert "eyJ.a.b" not in err
    assert "/v1/ws?token=[redacted]&x=1" in err


def test_telegram_is_off_by_default_and_a_token_needs_a_webhook_secret() -> None:
    base = {"TOT_SECRET_KEY": "k" * 32}
    assert load_settings(environ=base).telegram_bot_token == ""
    with pytest.raises(SettingsError, match="TOT_TELEGRAM_WEBHOOK_SECRET"):
        load_settings(environ={**base, "TOT_TELEGRAM_BOT_TOKEN": "1:x"})
    with pytest.raises(SettingsError, match="TOT_TELEGRAM_API_URL"):
        load_settings(environ={**base, "TOT_TELEGRAM_API_URL": "ftp://x"})
    on = load_settings(
        environ={
            **base,
            "TOT_TELEGRAM_BOT_TOKEN": "1:x",
            "TOT_TELEGRAM_WEBHOOK_SECRET": "s" * 16,
            "TOT_TELEGRAM_API_URL": "http://127.0.0.1:8081/",
            "TOT_TELEGRAM_BOT_USERNAME": "@tot_bot",
        }
    )
    assert (on.telegram_api_url, on.telegram_bot_username) == ("http://127.0.0.1:8081", "tot_bot")


def test_web_push_is_off_by_default_and_its_settings_are_checked() -> None:
    from server.notify.vapid import generate_private_key

    settings = load_settings(environ={"TOT_SECRET_KEY": KEY})
    assert settings.vapid_private_key == "" and not settings.push_allow_loopback
    assert "fcm.googleapis.com" in settings.push_endpoint_hosts and settings.push_offer_after_ms == 1500
    key = generate_private_key()
    on = load_settings(
        environ={
            "TOT_SECRET_KEY": KEY,
            "TOT_VAPID_PRIVATE_KEY": key,
            "TOT_PUSH_ENDPOINT_HOSTS": "push.example.org, *",
        }
    )
    assert on.vapid_private_key == key and on.push_endpoint_hosts == ("push.example.org", "*")
    for environ, setting in (
        ({"TOT_VAPID_PRIVATE_KEY": "not-a-key"}, "TOT_VAPID_PRIVATE_KEY"),
        ({"TOT_VAPID_SUBJECT": "ops@example.org"}, "TOT_VAPID_SUBJECT"),
        ({"TOT_PUSH_ENDPOINT_HOSTS": "https://push.example.org"}, "TOT_PUSH_ENDPOINT_HOSTS"),
        ({"TOT_PUSH_OFFER_AFTER_MS": "0"}, "TOT_PUSH_OFFER_AFTER_MS"),
        ({"TOT_PUSH_ALLOW_LOOPBACK": "yes"}, "TOT_PUSH_ALLOW_LOOPBACK"),
    ):
        with pytest.raises(SettingsError) as raised:
            load_settings(environ={"TOT_SECRET_KEY": KEY, **environ})
        assert raised.value.setting == setting and "\n" not in str(raised.value)
