"""Signed JWT access and refresh tokens (PyJWT, HS256 with ``TOT_SECRET_KEY``).

An access token carries ``sub`` (user UUID), ``role``, ``typ="access"``, ``ver`` (the account's token
version), ``iat``, ``exp`` (epoch seconds) and a random ``jti``. A refresh token carries ``sub``,
``typ="refresh"`` and ``ver``; refreshing reads the user again. A token whose ``ver`` is below what the
account accepts is revoked (server/auth/access.py: disabling, a role change, logout); a token without
``ver`` (issued before revocation existed) counts as version 0. Identity and role come only from a token
this module verified.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from models.enums import Role

ALGORITHM = "HS256"
ISSUER = "tot-dispatch"
LEEWAY_S = 5  # tolerated clock skew between processes, seconds

TokenType = Literal["access", "refresh"]


class TokenError(Exception):
    """A token was refused. ``code`` is ``token_expired`` or ``token_invalid``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: the user, their role (access tokens only), the type, expiry (s) and
    the account's token version it was issued at."""

    user_id: uuid.UUID
    role: Role | None
    type: TokenType
    expires_at: int
    version: int = 0


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An access and a refresh token with their lifetimes in seconds."""

    access_token: str
    refresh_token: str
    access_expires_in: int
    refresh_expires_in: int

    def as_json(self) -> dict[str, Any]:
        """The OAuth2-style JSON body (``token_type`` Bearer)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.access_expires_in,
            "refresh_expires_in": self.refresh_expires_in,
        }


class TokenService:
    """Issues and verifies tokens with one secret; lifetimes are seconds."""

    def __init__(self, secret_key: str, access_ttl_s: int, refresh_ttl_s: int) -> None:
        self._key = secret_key
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s

    def _encode(self, claims: dict[str, Any], ttl_s: int, now: float | None) -> str:
        issued = int(time.time() if now is None else now)
        payload = {**claims, "iss": ISSUER, "iat": issued, "exp": issued + ttl_s, "jti": secrets.token_hex(8)}
        return jwt.encode(payload, self._key, algorithm=ALGORITHM)

    def issue(
        self, user_id: uuid.UUID, role: Role, *, version: int = 0, now: float | None = None
    ) -> TokenPair:
        """A fresh access + refresh pair for the user at the account's token ``version``; ``now`` (epoch
        seconds) is for tests."""
        access = self._encode(
            {"sub": str(user_id), "role": role.value, "typ": "access", "ver": version}, self.access_ttl_s, now
        )
        refresh = self._encode(
            {"sub": str(user_id), "typ": "refresh", "ver": version}, self.refresh_ttl_s, now
        )
        return TokenPair(access, refresh, self.access_ttl_s, self.refresh_ttl_s)

    def verify(self, token: str, expected: TokenType) -> Claims:
        """The claims of ``token`` if its signature, expiry, issuer and type check out.

        Raises :class:`TokenError` with code ``token_expired`` past ``exp``, else ``token_invalid``.
        """
        try:
            payload = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iat", "sub", "typ", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "the token has expired; refresh it or log in again") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError("token_invalid", f"the token is not valid: {exc}") from None
        if payload.get("typ") != expected:
            raise TokenError("token_invalid", f"expected an {expected} token")
        try:
            user_id = uuid.UUID(str(payload["sub"]))
            role = Role(payload["role"]) if expected == "access" else None
            version = payload.get("ver", 0)
            if type(version) is not int or version < 0:
                raise ValueError("ver")
        except (KeyError, ValueError):
            raise TokenError("token_invalid", "the token's subject, role or version is malformed") from None
        return Claims(
            user_id=user_id, role=role, type=expected, expires_at=int(payload["exp"]), version=version
        )
