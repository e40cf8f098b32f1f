"""``tot-dispatch demo`` with its notification fakes (server/demo_fakes.py): the real demo command
(``--no-replay``: no city data needed) starts the loopback Telegram Bot API, SMTP server and SMS
gateway, points the server at them, and what they receive lands in ``tot-demo-notifications.log``.

A newcomer's path: the demo patient opens the Telegram deep link (the fake's page presses Start), a
new patient signs up with a phone and confirms it with the code from the log, and a call nobody can
take escalates to the dispatchers' group in Telegram and to the dispatcher's e-mail.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import httpx

from server.demo_fakes import DEMO_DISPATCH_CHAT, NOTIFICATIONS_LOG
from tests.e2e.process import run_server

PATIENT = ("patient@demo.tot", "demo-patient-pass")


def entries(log: Path, key: str, where: Any = None, count: int = 1, timeout_s: float = 20.0) -> list[Any]:
    """The log's ``key`` entries ``where`` accepts, once there are ``count`` (waits for them)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = []
        if log.is_file():
            for line in log.read_text(encoding="utf-8").splitlines():
                entry = json.loads(line)
                if key in entry and (where is None or where(entry)):
                    found.append(entry)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} {key} entries in {log}, expected {count}")
        time.sleep(0.1)


def sent_to(entry: dict[str, Any]) -> int | None:
    """The chat a logged ``sendMessage`` went to (None for any other Bot API call)."""
    return int(entry["params"]["chat_id"]) if entry["telegram"] == "sendMessage" else None


def test_the_demo_shows_its_notifications(tmp_path: Path) -> None:
    env = {"TOT_SECRET_KEY": "", "TOT_LOG_LEVEL": "warning"}
    for name in ("TOT_TELEGRAM_BOT_TOKEN", "TOT_SMS_GATEWAY_URL", "TOT_SMTP_HOST"):
        env[name] = ""  # the fakes start only where the environment names no provider
    log = tmp_path / NOTIFICATIONS_LOG
    with run_server(["demo", "--no-replay"], env, tmp_path) as server:
        deadline = time.monotonic() + 10
        while "SMTP (fake)" not in server.output():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        assert str(log) in server.output()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            signed = client.post("/v1/auth/login", json={"login": PATIENT[0], "password": PATIENT[1]})
            assert signed.status_code == 200, signed.text
            auth = {"authorization": f"Bearer {signed.json()['tokens']['access_token']}"}

            # Telegram: the deep link opens the fake, whose page presses Start; the bot says so.
            link = client.post("/v1/telegram/link", headers=auth).json()
            assert link["url"].startswith("http://127.0.0.1:"), link
            page = httpx.get(link["url"], timeout=30)
            assert page.status_code == 200 and "<strong id=verdict>linked</strong>" in page.text, page.text
            assert client.get("/v1/telegram/link", headers=auth).json() == {"linked": True}
            entries(log, "telegram", lambda e: sent_to(e) is not None and "linked" in e["params"]["text"])

            # SMS: a phone sign-up's code is in the log; it confirms the account.
            phone = f"+7999{secrets.randbelow(10**7):07d}"
            body = {"phone": phone, "password": "demo-phone-pass", "full_name": "Demo Phone"}
            registered = client.post("/v1/auth/register", json=body)
            assert registered.status_code == 201 and registered.json()["confirmation"] == "sms"
            [sms] = entries(log, "sms", lambda e: e["sms"]["to"] == phone)
            code = re.search(r"\b(\d{6})\b", sms["sms"]["text"])
            assert code is not None
            confirmed = client.post("/v1/auth/phone/confirm", json={"phone": phone, "code": code.group(1)})
            assert confirmed.status_code == 200, confirmed.text

            # Nobody can take a call (no doctor on shift): the dispatchers' group and e-mail hear of it.
            call = {"address": "Tverskaya 7", "lat": 55.76, "lon": 37.61, "urgency": "urgent"}
            call["specialty"] = "therapist"
            made = client.post("/v1/calls", json=call, headers=auth)
            assert made.status_code == 201, made.text
            group = entries(log, "telegram", lambda e: sent_to(e) == DEMO_DISPATCH_CHAT)
            assert "Tverskaya 7" in group[0]["params"]["text"]
            mail = entries(log, "email", lambda e: "dispatcher@demo.tot" in e["email"]["to"])
            assert "Tverskaya 7" in mail[0]["email"]["text"]
    assert "Traceback" not in (tmp_path / "tot-demo.log").read_text()
