"""Errors of the dispatch layer, with stable codes the REST and WebSocket layers pass on."""

from __future__ import annotations

from typing import Any


class DispatchError(Exception):
    """A refused dispatch operation.

    ``code`` is stable (docs/api.md); ``http_status`` is the HTTP status the REST layer answers with
    (the WebSocket layer sends an error frame with the same code); ``extra`` goes into the error body
    (e.g. the call's current ``status`` for a 409).
    """

    def __init__(
        self, http_status: int, code: str, message: str, *, field: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra


def not_found(what: str) -> DispatchError:
    """404 ``not_found``."""
    return DispatchError(404, "not_found", f"no such {what}")


def forbidden(message: str) -> DispatchError:
    """403 ``forbidden``."""
    return DispatchError(403, "forbidden", message)
