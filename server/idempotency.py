"""The ``Idempotency-Key`` header of the creating POSTs (``POST /v1/calls``, ``POST /v1/bookings``)."""

from __future__ import annotations

from starlette.requests import Request

from realtime.errors import ErrorCode
from realtime.messages import control_character
from server.errors import ApiError

IDEMPOTENCY_MAX = 128


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (1-128 characters), or None. Raises ``ApiError`` 422 naming
    the header for a key of another length or with a control character (it is stored with the call:
    the text rule of docs/api.md holds for it too)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_MAX:
        raise ApiError(ErrorCode.INVALID_INPUT, "Idempotency-Key: 1-128 characters", field="Idempotency-Key")
    if (code_point := control_character(key)) is not None:
        raise ApiError(
            ErrorCode.INVALID_INPUT,
            f"Idempotency-Key: control character {code_point} is not allowed here",
            field="Idempotency-Key",
        )
    return key
