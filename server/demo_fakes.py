"""The demo's notification providers: the loopback fakes of the Telegram Bot API, an SMTP server and
the SMS gateway, started in the demo's process so that its notifications are visible without any
account anywhere.

:func:`start_demo_fakes` serves each fake on a free 127.0.0.1 port in a thread of its own and sets the
``TOT_*`` variables that point the server at them, **only for the providers the environment leaves
unset** (a demo given a real bot token keeps it). Everything the fakes receive is appended, one JSON
object a line, to ``tot-demo-notifications.log`` in the working directory
(:data:`NOTIFICATIONS_LOG`): ``{"telegram": "sendMessage", "params": {...}}``,
``{"sms": {"to", "text", ...}}``, ``{"email": {"to", "subject", "text"}}``.

What this turns on in the demo: Telegram (deep links point at the fake, whose page presses Start
for you: ``TOT_TELEGRAM_LINK_BASE``), the dispatchers' group (a made-up chat id), e-mail to every
account's address, and SMS with phone confirmation at registration (the code is in the log).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import importlib.util
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.notify.fake_sms import FakeSmsGateway
from server.notify.fake_telegram import BOT_USERNAME, FakeBotApi, free_port, serving_in_thread

NOTIFICATIONS_LOG = Path("tot-demo-notifications.log")
DEMO_BOT_TOKEN = "100000001:DEMO-fake-bot-token"
DEMO_DISPATCH_CHAT = -1000000000001
"""The dispatchers' group in the demo (a made-up chat id of the fake)."""


class _Sink:
    """Appends lines to the log file from any thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


class _SmtpHandler:
    """aiosmtpd's handler: each message becomes a log line."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = parsed.get_body(preferencelist=("plain",)) if hasattr(parsed, "get_body") else None
        text = body.get_content() if body is not None else ""
        line = {"to": list(envelope.rcpt_tos), "subject": str(parsed.get("Subject", "")), "text": text}
        self.sink(json.dumps({"email": line}, ensure_ascii=False))
        return "250 OK"


@dataclass
class DemoFakes:
    """What :func:`start_demo_fakes` started: ``env`` (the variables it set), ``lines`` (what to print),
    ``telegram`` (the Bot API fake, or None)."""

    env: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    telegram: FakeBotApi | None = None

    def point_webhook(self, server_url: str) -> None:
        """Tell the Bot API fake where the server's webhook is (Telegram learns it from setWebhook)."""
        if self.telegram is not None:
            self.telegram.webhook_url = f"{server_url}/v1/telegram/webhook"
            self.telegram.webhook_secret = self.env["TOT_TELEGRAM_WEBHOOK_SECRET"]


def _unset(*names: str) -> bool:
    return not any(os.environ.get(name) for name in names)


@contextlib.contextmanager
def start_demo_fakes(log: Path = NOTIFICATIONS_LOG) -> Iterator[DemoFakes]:
    """Start the fakes the environment does not replace and set ``os.environ`` for them (module
    docstring); stops them on exit."""
    sink = _Sink(log.resolve())
    fakes = DemoFakes()
    with contextlib.ExitStack() as stack:
        if _unset("TOT_TELEGRAM_BOT_TOKEN"):
            bot = FakeBotApi(echo=True, sink=sink)
            url = stack.enter_context(serving_in_thread(bot))
            fakes.telegram = bot
            fakes.env.update(
                {
                    "TOT_TELEGRAM_BOT_TOKEN": DEMO_BOT_TOKEN,
                    "TOT_TELEGRAM_WEBHOOK_SECRET": secrets.token_urlsafe(24),
                    "TOT_TELEGRAM_API_URL": url,
                    "TOT_TELEGRAM_BOT_USERNAME": BOT_USERNAME,
                    "TOT_TELEGRAM_LINK_BASE": url,
                    "TOT_TELEGRAM_DISPATCH_CHAT": str(DEMO_DISPATCH_CHAT),
                }
            )
            fakes.lines.append(f"  {'Telegram (fake):':<20} {url}  (deep links open here and press Start)")
        if _unset("TOT_SMS_GATEWAY_URL"):
            url = stack.enter_context(serving_in_thread(FakeSmsGateway(echo=True, sink=sink)))
            fakes.env["TOT_SMS_GATEWAY_URL"] = url
            fakes.lines.append(f"  {'SMS gateway (fake):':<20} {url}  (phone sign-ups get their code here)")
        if _unset("TOT_SMTP_HOST") and importlib.util.find_spec("aiosmtpd") is not None:
            # aiosmtpd comes with the dev extra (scripts/demo installs it); without it, no e-mail.
            from aiosmtpd.controller import Controller

            port = free_port()
            controller = Controller(_SmtpHandler(sink), hostname="127.0.0.1", port=port)
            controller.start()
            stack.callback(controller.stop)
            fakes.env.update({"TOT_SMTP_HOST": "127.0.0.1", "TOT_SMTP_PORT": str(port)})
            fakes.lines.append(f"  {'SMTP (fake):':<20} 127.0.0.1:{port}")
        if fakes.env:
            fakes.lines.insert(
                0, f"Notifications go to loopback fakes; what they receive is in {log.resolve()}:"
            )
        os.environ.update(fakes.env)
        yield fakes
