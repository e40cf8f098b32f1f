"""The SMS channel: a small httpx adapter to one SMS gateway, and phone numbers normalised with
``phonenumbers``.

**The gateway interface** (what :class:`SmsGateway` speaks; a provider's own API sits behind a
gateway of this shape, and ``server/notify/fake_sms.py`` implements it for tests and the demo)::

    POST <TOT_SMS_GATEWAY_URL>/messages
    Authorization: Bearer <TOT_SMS_API_KEY>
    Content-Type: application/json
    {"to": "+79123456789", "text": "...", "idempotency_key": "notification:123"}

    201/200 {"id": "<gateway's message id>"}      accepted (a repeated idempotency_key answers the
                                                   first message's id and sends nothing)
    429     Retry-After: <seconds>                 wait, then again
    4xx     {"error": "..."}                       refused for good (bad number, no credit)
    5xx / no answer                                try again later

Only the kinds worth a text message go by SMS (``kinds``: the doctor's arrival and an unanswered SOS),
to people with a phone number that ``phonenumbers`` finds valid (E.164; numbers without ``+`` are read
in ``default_region``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from models.repositories import notifications as repo
from server.notify.channels import Message, PermanentError, RetryAfter, TransientError
from server.notify.rules import Kind
from server.phones import normalise_phone

__all__ = ["NAME", "SmsGateway", "normalise_phone"]

NAME = "sms"
MAX_TEXT = 640
"""Characters sent at most (ten Cyrillic SMS parts)."""


class SmsGateway:
    """The :class:`~server.notify.channels.Channel` for SMS through the gateway (module docstring).
    ``base_url``: the gateway; ``api_key``: its bearer token; ``client``: an ``httpx.AsyncClient`` to
    use (one is made otherwise; :meth:`close` closes it)."""

    name = NAME
    kinds: frozenset[str] | None = frozenset({Kind.CALL_ARRIVED.value, Kind.SOS_UNACKNOWLEDGED.value})
    address_interval_ms = 1_000

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        default_region: str = "RU",
        rate_per_s: float = 5.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.default_region = default_region
        self.rate_per_s = rate_per_s
        # No key, no header: "Bearer " with nothing after it is not a valid header value.
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        found = await repo.people(session, people)
        numbers = {p: normalise_phone(person.phone, self.default_region) for p, person in found.items()}
        return {p: n for p, n in numbers.items() if n}

    async def send(self, address: str, message: Message) -> str | None:
        body = {"to": address, "text": message.text[:MAX_TEXT], "idempotency_key": message.key}
        try:
            response = await self.client.post("/messages", json=body)
        except httpx.HTTPError as exc:
            raise TransientError(f"{type(exc).__name__}") from None
        if response.status_code == 429:
            try:
                wait = float(response.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            raise RetryAfter(wait)
        if response.status_code >= 500:
            raise TransientError(f"gateway {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"gateway {response.status_code}: {response.text[:120]}")
        try:
            ident = response.json().get("id")
        except ValueError:
            ident = None
        return None if ident is None else str(ident)

    async def close(self) -> None:
        await self.client.aclose()
