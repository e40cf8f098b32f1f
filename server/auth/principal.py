"""Who a request acts as, taken only from a verified bearer token.

Nothing a client can set by hand is read for identity: not the body, not ``X-User-*`` headers, not
cookies. The MVP this project replaces trusted an ``X-User-Role`` header; tests pin that it is ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from models.enums import Role
from realtime.errors import ErrorCode
from server.auth.tokens import TokenError, TokenService
from server.errors import ApiError


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user of a request: id, role and the account's token version from the token."""

    user_id: uuid.UUID
    role: Role
    token_version: int = 0

    def is_staff(self) -> bool:
        """Dispatchers and admins see and act on every call."""
        return self.role in (Role.DISPATCHER, Role.ADMIN)


def bearer_token(conn: HTTPConnection) -> str | None:
    """The token from ``Authorization: Bearer <token>``, else the ``token`` query parameter (browsers
    cannot set headers on a WebSocket), else ``None``."""
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return conn.query_params.get("token") or None


def authenticate(conn: HTTPConnection, tokens: TokenService) -> Principal:
    """The principal of a request or socket.

    Raises ``ApiError`` 401 with code ``auth_required`` (no token), ``token_expired`` or ``token_invalid``.
    """
    token = bearer_token(conn)
    if token is None:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "send a bearer token in the Authorization header")
    try:
        claims = tokens.verify(token, "access")
    except TokenError as exc:
        raise ApiError(exc.code, exc.message) from None
    assert claims.role is not None  # access tokens always carry a role
    return Principal(user_id=claims.user_id, role=claims.role, token_version=claims.version)


def require_role(principal: Principal, *roles: Role) -> None:
    """Raises ``ApiError`` 403 ``forbidden`` unless the principal has one of ``roles``."""
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise ApiError(ErrorCode.FORBIDDEN, f"this needs one of the roles: {allowed}")
