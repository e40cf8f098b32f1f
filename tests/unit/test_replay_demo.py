"""The demo keeps the key it generated, so its tokens and the demo city's cached sign-ins survive a
restart (otherwise every run logs ~480 replay accounts in again: one argon2 verification each); its
first lines name the apps the server has, the demo accounts and the log file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from server.cli import DEMO_ACCOUNTS, DEMO_KEY_FILE, DEMO_VAPID_FILE, _demo_key, _demo_vapid
from server.demo import DEMO_PAGES, demo_banner
from server.routes import api
from server.settings import load_settings


def test_the_demo_key_is_generated_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = _demo_key(load_settings(demo=True, environ={}))
    assert first.secret_key_generated and len(first.secret_key) >= 32
    assert (tmp_path / DEMO_KEY_FILE).read_text().strip() == first.secret_key
    assert stat.S_IMODE((tmp_path / DEMO_KEY_FILE).stat().st_mode) == 0o600
    again = _demo_key(load_settings(demo=True, environ={}))  # a fresh random key, replaced by the kept one
    assert again.secret_key == first.secret_key


def test_a_configured_key_is_used_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    key = "k" * 40
    settings = _demo_key(load_settings(demo=True, environ={"TOT_SECRET_KEY": key}))
    assert settings.secret_key == key and not settings.secret_key_generated
    assert not (tmp_path / DEMO_KEY_FILE).exists()


def test_the_demo_vapid_key_is_generated_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = _demo_vapid(load_settings(demo=True, environ={}))
    assert (
        first.vapid_private_key
        and (tmp_path / DEMO_VAPID_FILE).read_text().strip() == first.vapid_private_key
    )
    assert stat.S_IMODE((tmp_path / DEMO_VAPID_FILE).stat().st_mode) == 0o600
    assert _demo_vapid(load_settings(demo=True, environ={})).vapid_private_key == first.vapid_private_key
    given = load_settings(demo=True, environ={"TOT_VAPID_PRIVATE_KEY": first.vapid_private_key[::-1]})
    assert _demo_vapid(given).vapid_private_key == first.vapid_private_key[::-1]


def test_the_banner_lists_the_apps_the_server_has_and_the_accounts() -> None:
    text = "\n".join(demo_banner("http://h:1", DEMO_ACCOUNTS, Path("/var/tmp/tot-demo.log")))
    routed = {route.path for route in api.routes()}
    assert "/console" in routed
    for name, path, _ in DEMO_PAGES:
        assert (f"{name}:" in text) == (path in routed), name  # the patient and doctor apps once routed
    assert "http://h:1/console  (sign in as dispatcher@demo.tot)" in text
    assert "http://h:1/app  (sign in as patient@demo.tot)" in text
    assert "http://h:1/doctor  (sign in as doctor@demo.tot)" in text
    for _, email, password, _ in DEMO_ACCOUNTS:
        assert f"login {email}" in text and f"password {password}" in text
    assert "Server log: /var/tmp/tot-demo.log" in text
