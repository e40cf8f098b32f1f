"""A loopback fake of a web push service (RFC 8030) that checks VAPID (RFC 8292) and decrypts
(RFC 8291), for tests and the demo.

**Subscriptions** are minted by the fake, as a browser would get them from its push service:
:meth:`FakePushService.mint` (or ``POST /mint`` with ``{"application_server_key"?: "<base64url>"}``)
makes a P-256 key pair and a 16-byte auth secret and answers the browser's
``PushSubscription.toJSON()``: ``{"endpoint": "<base>/push/<id>", "keys": {"p256dh", "auth"}}``. The
fake keeps the private key, so it can decrypt what is pushed there.

**A push** is ``POST /push/<id>`` as RFC 8030 section 5 says: body encrypted with
``Content-Encoding: aes128gcm``, a ``TTL`` header (required), ``Urgency`` (optional: very-low, low,
normal, high), ``Authorization: vapid t=<JWT>,k=<public key>``. The fake checks the JWT's ES256
signature with ``k``, ``aud`` = the endpoint's origin, ``exp`` in the future and at most 24 h ahead,
``sub`` a ``mailto:`` or ``https:`` URL, and ``k`` equal to the subscription's
``application_server_key`` when one was given at minting (403 otherwise, as push services do);
decrypts the body with the subscription's keys (400 when it cannot) and records a
:class:`PushMessage`. Answers ``201 Created`` with a ``Location``; an unknown subscription 404.

On demand: :meth:`FakePushService.fail_next` (e.g. 429 with ``Retry-After``, or 500) and
:meth:`FakePushService.gone` (the subscription answers 410 Gone from then on, as after the user
revoked it).

Serve it with ``server.notify.fake_telegram.serving`` / ``serving_in_thread`` (any ASGI app), or alone:
``python -m server.notify.fake_push --port 8083`` (prints each decrypted message as a JSON line); point
the server at it with ``TOT_PUSH_ALLOW_LOOPBACK=true``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.notify.vapid import SUBJECT, b64url, b64url_decode, origin_of, public_key_b64

MAX_EXP_S = 24 * 3600
URGENCIES = ("very-low", "low", "normal", "high")


@dataclass
class FakeSubscription:
    """A minted subscription: ``ident``, ``endpoint``, the keys the browser would give the app
    (``p256dh``, ``auth``, base64url) and the private key only the browser has."""

    ident: str
    endpoint: str
    p256dh: str
    auth: str
    private_key: ec.EllipticCurvePrivateKey
    application_server_key: str | None = None
    gone: bool = False

    def json(self) -> dict[str, Any]:
        """``PushSubscription.toJSON()``: what the app posts to ``/v1/push/subscriptions``."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One push received: the subscription ``ident``, ``headers`` (lower-case names), the decrypted
    ``payload`` (parsed JSON, or None when not JSON) and its ``raw`` bytes, the VAPID ``claims``, and
    ``at_ms`` (wall clock)."""

    ident: str
    headers: dict[str, str]
    payload: Any
    raw: bytes
    claims: dict[str, Any]
    at_ms: int


def decrypt(body: bytes, subscription: FakeSubscription) -> bytes:
    """The plaintext of an ``aes128gcm`` push to ``subscription`` (RFC 8291). Raises on bad input."""
    return bytes(
        http_ece.decrypt(
            body,
            private_key=subscription.private_key,
            auth_secret=b64url_decode(subscription.auth),
            version="aes128gcm",
        )
    )


def verify_vapid(header: str, endpoint: str, now_s: int) -> tuple[str, dict[str, Any]]:
    """``(k, claims)`` of a valid ``vapid t=...,k=...`` header for a push to ``endpoint``. Raises
    ``ValueError`` naming the problem (module docstring)."""
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError("Authorization: the vapid scheme is required")
    parts = dict(p.strip().split("=", 1) for p in rest.split(",") if "=" in p)
    token, key = parts.get("t"), parts.get("k")
    if not token or not key:
        raise ValueError("Authorization: t and k are required")
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(key))
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=["ES256"],
            audience=origin_of(endpoint),
            options={"require": ["exp", "aud"]},
        )
    except (ValueError, jwt.PyJWTError) as exc:
        raise ValueError(f"VAPID token: {exc}") from None
    if int(claims["exp"]) > now_s + MAX_EXP_S:
        raise ValueError("VAPID token: exp more than 24 hours ahead")
    if not SUBJECT.match(str(claims.get("sub", ""))):
        raise ValueError("VAPID token: sub must be a mailto: or https: URL")
    return key, claims


@dataclass
class FakePushService:
    """The fake's state (module docstring). ``messages``: every accepted push, in order;
    ``refused``: ``(status, reason)`` of every push refused for a protocol fault."""

    subscriptions: dict[str, FakeSubscription] = field(default_factory=dict)
    messages: list[PushMessage] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    attempts: int = 0
    echo: bool = False
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def mint(self, base_url: str, application_server_key: str | None = None) -> FakeSubscription:
        """A new subscription at ``base_url`` (the fake's own URL)."""
        ident = secrets.token_urlsafe(12)
        key = ec.generate_private_key(ec.SECP256R1())
        sub = FakeSubscription(
            ident=ident,
            endpoint=f"{base_url.rstrip('/')}/push/{ident}",
            p256dh=public_key_b64(key.public_key()),
            auth=b64url(secrets.token_bytes(16)),
            private_key=key,
            application_server_key=application_server_key,
        )
        self.subscriptions[ident] = sub
        return sub

    def fail_next(self, status: int, retry_after: str | None = None, times: int = 1) -> None:
        """The next ``times`` pushes (that pass the checks) answer ``status`` (with ``Retry-After``)."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        self.failures.extend([(status, headers)] * times)

    def gone(self, subscription: FakeSubscription) -> None:
        """From now on ``subscription`` answers 410 Gone."""
        subscription.gone = True

    def to(self, subscription: FakeSubscription) -> list[PushMessage]:
        """The messages ``subscription`` received, in order."""
        return [m for m in self.messages if m.ident == subscription.ident]

    async def wait_for(
        self, count: int, timeout_s: float = 10.0, where: Callable[[PushMessage], bool] | None = None
    ) -> list[PushMessage]:
        """Wait until ``count`` messages (that ``where`` accepts) arrived; returns them. Raises
        ``TimeoutError``. Polls every 20 ms: the fake may serve from another thread."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [m for m in self.messages if where is None or where(m)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} pushes arrived")
            await asyncio.sleep(0.02)

    def _refuse(self, status: int, reason: str) -> Response:
        self.refused.append((status, reason))
        return JSONResponse({"error": reason}, status_code=status)

    async def push(self, request: Request) -> Response:
        self.attempts += 1
        sub = self.subscriptions.get(request.path_params["ident"])
        if sub is None:
            return self._refuse(404, "no such subscription")
        if sub.gone:
            return Response(status_code=410)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("content-encoding") != "aes128gcm":
            return self._refuse(415, "Content-Encoding must be aes128gcm")
        ttl = headers.get("ttl", "")
        if not ttl.isdigit():
            return self._refuse(400, "TTL is required (whole seconds)")
        if headers.get("urgency", "normal") not in URGENCIES:
            return self._refuse(400, "Urgency: very-low, low, normal or high")
        try:
            key, claims = verify_vapid(headers.get("authorization", ""), sub.endpoint, int(time.time()))
        except ValueError as exc:
            return self._refuse(401, str(exc))
        if sub.application_server_key is not None and key != sub.application_server_key:
            return self._refuse(403, "VAPID key differs from the subscription's applicationServerKey")
        body = await request.body()
        try:
            raw = decrypt(body, sub)
        except Exception as exc:  # http_ece raises several kinds
            return self._refuse(400, f"cannot decrypt: {type(exc).__name__}")
        if self.failures:
            status, extra = self.failures.pop(0)
            return Response(status_code=status, headers=extra)
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        message = PushMessage(sub.ident, headers, payload, raw, claims, int(time.time() * 1000))
        self.messages.append(message)
        if self.echo:
            print(json.dumps({"subscription": sub.ident, "ttl": ttl, "payload": payload}), flush=True)
        number = next(self._ids)
        return Response(status_code=201, headers={"Location": f"/message/{number}"})

    async def mint_route(self, request: Request) -> JSONResponse:
        body = await request.json() if await request.body() else {}
        key = body.get("application_server_key") if isinstance(body, dict) else None
        base = f"{request.url.scheme}://{request.url.netloc}"
        sub = self.mint(base, key if isinstance(key, str) else None)
        return JSONResponse(sub.json(), status_code=201)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/push/{ident}", self.push, methods=["POST"]),
                Route("/mint", self.mint_route, methods=["POST"]),
            ]
        )


def main(argv: list[str] | None = None) -> None:
    """``python -m server.notify.fake_push [--port N]``: serve until interrupted, printing pushes."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8083)
    args = parser.parse_args(argv)
    print(
        f"fake push service on http://127.0.0.1:{args.port} (POST /mint for a subscription)", file=sys.stderr
    )
    uvicorn.run(FakePushService(echo=True).app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
