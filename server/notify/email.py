"""The e-mail channel: plain-text messages over SMTP with aiosmtplib.

A person's address is their account's e-mail. Offers are not e-mailed (their deadline is seconds);
every other kind is. Each message carries ``Message-ID: <notification-<row id>@<host>>`` (the row's
stable key), so a receiving system that de-duplicates by Message-ID sees one message however often it
is handed over. Errors: an SMTP 4xx (and connection failures, timeouts) -> ``TransientError``; a 5xx
(a refused recipient, a rejected message) -> ``PermanentError``. Pace: none per address; ``rate_per_s``
per process (``TOT_SMTP_RATE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

from models.repositories import notifications as repo
from server.notify.channels import Message, PermanentError, TransientError
from server.notify.rules import Kind

NAME = "email"


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """``host``/``port`` of the SMTP server; ``sender``: the From address; ``username``/``password``:
    for AUTH (empty: none); ``starttls``: upgrade the connection; ``timeout_s``: per message."""

    host: str
    port: int = 25
    sender: str = "tot-dispatch@localhost"
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_s: float = 10.0


class EmailChannel:
    """The e-mail :class:`~server.notify.channels.Channel` (module docstring)."""

    name = NAME
    kinds: frozenset[str] | None = frozenset(k.value for k in Kind if k is not Kind.OFFER_CREATED)
    address_interval_ms = 0

    def __init__(self, settings: SmtpSettings, *, rate_per_s: float = 10.0) -> None:
        self.settings = settings
        self.rate_per_s = rate_per_s
        self.domain = settings.sender.rpartition("@")[2] or "localhost"

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        found = await repo.people(session, people)
        return {p: person.email for p, person in found.items() if person.email}

    def compose(self, address: str, message: Message) -> EmailMessage:
        """The e-mail for ``message`` to ``address``."""
        mail = EmailMessage()
        mail["From"] = self.settings.sender
        mail["To"] = address
        mail["Subject"] = message.subject or message.text.split("\n", 1)[0][:120]
        if message.key:
            mail["Message-ID"] = f"<{message.key.replace(':', '-')}@{self.domain}>"
        mail.set_content(message.text)
        return mail

    async def send(self, address: str, message: Message) -> str | None:
        """Hand the message to the SMTP server; returns its Message-ID."""
        mail = self.compose(address, message)
        s = self.settings
        try:
            await aiosmtplib.send(
                mail,
                hostname=s.host,
                port=s.port,
                username=s.username or None,
                password=s.password or None,
                start_tls=s.starttls,
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(f"recipient refused: {str(exc)[:120]}") from None
        except aiosmtplib.SMTPResponseException as exc:
            error = f"SMTP {exc.code}: {exc.message[:120]}"
            raise (PermanentError(error) if 500 <= exc.code < 600 else TransientError(error)) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"{type(exc).__name__}: {str(exc)[:120]}") from None
        return str(mail["Message-ID"]) if mail["Message-ID"] else None
