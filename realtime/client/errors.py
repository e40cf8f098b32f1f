"""The client's exceptions: a refused request, a lost connection, a refused client."""

from __future__ import annotations


class ClientError(Exception):
    """The server refused a request with an ``error`` frame (codes: ``realtime/protocol.py``)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field


class ConnectionLost(Exception):
    """No connection to send on, or it dropped before the answer. ``code``/``reason``: its close."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection lost (close code {code}, reason {reason!r})")
        self.code = code
        self.reason = reason


class AuthError(Exception):
    """The server refused this client: 4401 (``reason``: token_expired, token_invalid,
    auth_required), 4403 (origin not allowed) or 4410 (``token_revoked``: the account was disabled,
    deleted or changed, or logged out). The client does not retry (a token callable gets one more try
    after 4401 or 4410)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"refused by the server ({code} {reason})")
        self.code = code
        self.reason = reason
