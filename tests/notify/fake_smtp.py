"""A fake SMTP server (aiosmtpd, on 127.0.0.1 in a thread of its own) that records what it is handed
and can refuse the next messages with a given reply (``451 ...`` for a temporary failure, ``550 ...``
for a permanent one)."""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from server.notify.fake_telegram import free_port


@dataclass
class FakeSmtp:
    """``messages``: parsed messages received, in order; ``refusals``: replies for the next ones."""

    messages: list[email.message.EmailMessage] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusals:
            return self.refusals.pop(0)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@contextlib.contextmanager
def smtp_serving(fake: FakeSmtp) -> Iterator[int]:
    """Serve ``fake`` on 127.0.0.1; yields the port."""
    port = free_port()
    controller = Controller(fake, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()
