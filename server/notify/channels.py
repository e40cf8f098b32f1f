"""The channel interface: how a notification leaves (Telegram, e-mail, SMS; web push plugs in here).

A :class:`Channel` has a ``name`` (``notifications.channel``), the kinds it carries (``kinds``; None:
every kind), how to find people's addresses (:meth:`Channel.addresses`: a Telegram chat id, an e-mail
address, an E.164 phone number) and how to send one :class:`Message` (:meth:`Channel.send`, which
returns the provider's id of the message or raises one of the errors below). Pace: ``address_interval_ms``
between two messages to one address (all processes together, ``server/notify/throttle.py``) and
``rate_per_s`` messages per second for the whole provider (per process).

The ``inbox`` channel is not a :class:`Channel`: every notification has an inbox row, made ``sent`` at
once (``GET /v1/notifications`` reads them).

Errors: :class:`RetryAfter` (the provider asked to wait ``seconds``: Telegram's 429
``parameters.retry_after``), :class:`TransientError` (try again later, with backoff: a timeout, a 5xx)
and :class:`PermanentError` (never again: a blocked bot, a bad address).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

INBOX = "inbox"
"""The channel name of the in-app inbox rows."""


@dataclass(frozen=True, slots=True)
class Button:
    """An action under a message: ``label`` shown, ``data`` sent back (Telegram callback data: at most
    64 bytes)."""

    label: str
    data: str


@dataclass(frozen=True, slots=True)
class Message:
    """What to send: ``text``, a ``subject`` line (e-mail), ``buttons`` in rows; ``key``: a stable
    idempotency key (``notification:<row id>``) for providers that accept one. ``kind``, ``params``
    (the rules' values), ``call_id`` and ``language`` (``ru``/``en``) let a channel build a structured
    payload of its own (web push)."""

    text: str
    subject: str = ""
    buttons: Sequence[Sequence[Button]] = field(default_factory=tuple)
    key: str = ""
    kind: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    language: str = ""


class ChannelError(Exception):
    """A send failed; ``str(err)`` is short and names no person (it is stored as ``last_error``)."""


class RetryAfter(ChannelError):
    """The provider asked us to wait ``seconds`` before sending again (HTTP 429)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry_after={seconds:g}")
        self.seconds = seconds


class TransientError(ChannelError):
    """Worth another try later (timeouts, 5xx, a connection refused)."""


class PermanentError(ChannelError):
    """Never worth another try (the person blocked the bot, the address is invalid)."""


class Channel(Protocol):
    """One way out (module docstring)."""

    name: str
    kinds: frozenset[str] | None
    address_interval_ms: int
    rate_per_s: float

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The address of each of ``people`` reachable on this channel (absent: not reachable)."""
        ...

    async def send(self, address: str, message: Message) -> str | None:
        """Send ``message`` to ``address``; returns the provider's message id (or None). Raises
        :class:`RetryAfter`, :class:`TransientError` or :class:`PermanentError`."""
        ...
