"""The web push channel: notifications to the apps' service workers through the browsers' push
services (RFC 8030), encrypted for each subscription (RFC 8291, ``aes128gcm``) and signed (VAPID,
RFC 8292, ``server/notify/vapid.py``).

A person's address on this channel is their user id while they have at least one subscription
(``push_subscriptions``); :meth:`WebPushChannel.send` posts the message to every one of them:

- the body is the JSON of ``server/notify/push_payload.py``, encrypted with pywebpush's encoder
  (``http_ece``); headers ``Content-Encoding: aes128gcm``, ``TTL`` and ``Urgency`` from that module,
  ``Authorization: vapid t=...,k=...``;
- 201/200/202: delivered to the push service; 404 or 410: the subscription is gone and deleted;
  429: ``Retry-After`` (seconds or an HTTP date; 1 s when absent); 5xx and network errors: try again;
  other 4xx (400 bad headers, 403 a key the service does not know, 413 too large): refused.

Outcome of one send (one notification row): **sent** when at least one subscription took it (a
device that refused it then does not get it later: the row is sent at most once); otherwise
:class:`RetryAfter` with the longest wait any service asked for, else :class:`TransientError` when any
failure was transient, else :class:`PermanentError` (every subscription refused or gone).

Endpoints are checked when stored and again before each send (:func:`check_endpoint`): ``https`` to a
host of ``TOT_PUSH_ENDPOINT_HOSTS`` (the known push services, or ``*``), or ``http``/``https`` to a
loopback address when ``TOT_PUSH_ALLOW_LOOPBACK`` is on (the fake push service of the tests and the
demo). The server POSTs to that URL: an open list would let anyone make it call any address.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.push import PushSubscription
from models.repositories import push as push_repo
from realtime.clock import Clock, wall_clock_ms
from server.notify.channels import Message, PermanentError, RetryAfter, TransientError
from server.notify.push_payload import payload, ttl_s, urgency
from server.notify.vapid import Vapid

log = logging.getLogger("tot.notify")

NAME = "webpush"
LOOPBACK_NAMES = ("localhost",)


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, hosts: Sequence[str], allow_loopback: bool) -> str | None:
    """Why ``url`` may not be a push endpoint (None: it may; module docstring)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return "must be an https URL"
    if allow_loopback and _loopback(host):
        return None
    if parts.scheme != "https":
        return "must be an https URL"
    if "*" in hosts or any(host == h or host.endswith(f".{h}") for h in hosts):
        return None
    return "not a known push service (TOT_PUSH_ENDPOINT_HOSTS)"


def retry_after_s(value: str | None, now_ms: int) -> float:
    """A ``Retry-After`` header's wait in seconds: delta-seconds or an HTTP date (RFC 9110, 10.2.3);
    1 when absent or unreadable."""
    if not value:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - now_ms / 1000)


@dataclass(frozen=True, slots=True)
class _Outcome:
    subscription: uuid.UUID
    ok: bool = False
    gone: bool = False
    retry_after_s: float | None = None
    transient: bool = False
    error: str | None = None


class WebPushChannel:
    """The web push :class:`~server.notify.channels.Channel` (module docstring). ``sessions``: to read
    a person's subscriptions at send time and record outcomes; ``client``: an ``httpx.AsyncClient``
    (one is made otherwise; :meth:`close` closes it)."""

    name = NAME
    kinds: frozenset[str] | None = None
    address_interval_ms = 0

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vapid: Vapid,
        *,
        hosts: Sequence[str],
        allow_loopback: bool = False,
        rate_per_s: float = 100.0,
        timeout_s: float = 10.0,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.sessions = sessions
        self.vapid = vapid
        self.hosts = tuple(hosts)
        self.allow_loopback = allow_loopback
        self.rate_per_s = rate_per_s
        self.clock = clock
        # Imported here, once, at start-up and only when web push is on: pywebpush brings aiohttp and
        # requests along (a third of a second to import), which no other part of the server needs.
        from pywebpush import WebPusher, WebPushException

        self._encoder: Callable[[dict[str, Any]], Any] = WebPusher
        self._encode_errors: tuple[type[Exception], ...] = (WebPushException, ValueError)
        # Push services answer at once; no redirects (the endpoint was checked, its target would not be).
        self.client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

    def check(self, endpoint: str) -> str | None:
        """:func:`check_endpoint` with this channel's settings."""
        return check_endpoint(endpoint, self.hosts, self.allow_loopback)

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        return {p: str(p) for p in await push_repo.subscribed(session, people)}

    async def send(self, address: str, message: Message) -> str | None:
        """Push ``message`` to every subscription of person ``address``; returns ``<delivered>/<all>``
        (module docstring for the errors)."""
        async with self.sessions() as session:
            subscriptions = await push_repo.of_person(session, uuid.UUID(address))
        if not subscriptions:
            raise PermanentError("no_subscription")
        body = orjson.dumps(payload(message))
        now = self.clock()
        headers = {
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(ttl_s(message.kind, message.params, now)),
            "Urgency": urgency(message.kind),
        }
        outcomes = await asyncio.gather(*(self._post(s, body, headers) for s in subscriptions))
        async with self.sessions.begin() as session:
            for outcome in outcomes:
                if outcome.gone:
                    await push_repo.delete(session, outcome.subscription)
                else:
                    await push_repo.outcome(session, outcome.subscription, self.clock(), outcome.error)
        delivered = sum(o.ok for o in outcomes)
        if delivered:
            return f"{delivered}/{len(outcomes)}"
        waits = [o.retry_after_s for o in outcomes if o.retry_after_s is not None]
        if waits:
            raise RetryAfter(max(waits))
        if any(o.transient for o in outcomes):
            raise TransientError(next(o.error for o in outcomes if o.transient) or "transient")
        gone = sum(o.gone for o in outcomes)
        raise PermanentError(
            "gone" if gone == len(outcomes) else next(o.error or "refused" for o in outcomes)
        )

    async def _post(self, subscription: PushSubscription, body: bytes, headers: dict[str, str]) -> _Outcome:
        ident = subscription.id
        problem = self.check(subscription.endpoint)
        if problem is not None:
            return _Outcome(ident, error="endpoint_refused")
        info = {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
        try:
            encrypted = self._encoder(info).encode(body, "aes128gcm")["body"]
        except self._encode_errors:
            return _Outcome(ident, gone=True, error="bad_keys")  # it can never be delivered
        try:
            response = await self.client.post(
                subscription.endpoint,
                content=encrypted,
                headers={**headers, "Authorization": self.vapid.authorization(subscription.endpoint)},
            )
        except httpx.HTTPError as exc:
            return _Outcome(ident, transient=True, error=type(exc).__name__)
        status = response.status_code
        if status in (200, 201, 202):
            return _Outcome(ident, ok=True)
        if status in (404, 410):
            log.info("push subscription gone", extra={"subscription": str(ident), "status": status})
            return _Outcome(ident, gone=True, error=f"http {status}")
        if status == 429:
            wait = retry_after_s(response.headers.get("retry-after"), self.clock())
            return _Outcome(ident, retry_after_s=wait, error="http 429")
        if status >= 500:
            return _Outcome(ident, transient=True, error=f"http {status}")
        return _Outcome(ident, error=f"http {status}")

    async def close(self) -> None:
        await self.client.aclose()
