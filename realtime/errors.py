"""The one catalogue of error codes, shared by the REST API and the WebSocket protocol.

A refusal anywhere in the server is a :class:`Refusal` carrying an :class:`ErrorCode`; the REST layer
answers it with the code's HTTP status (:data:`HTTP_STATUS`) and the body of docs/api.md, the socket
layer with an ``error`` frame of docs/protocol.md whose code is :meth:`ErrorCode.on_socket`. A code
outside the catalogue cannot be built (``ErrorCode("x")`` raises ``ValueError``): there is no silent
fallback to a generic code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every stable ``code`` the server sends, on REST (docs/api.md) and on the socket (docs/protocol.md).

    Comments say when each is used; :data:`HTTP_STATUS` gives the REST status of each code that REST
    can answer.
    """

    # --- authentication and access ---
    AUTH_REQUIRED = "auth_required"  # no token
    TOKEN_INVALID = "token_invalid"  # bad signature, wrong type, malformed, unknown account
    TOKEN_EXPIRED = "token_expired"  # the token's ``exp`` has passed
    TOKEN_REVOKED = "token_revoked"  # the account was disabled, deleted or its role changed, or logged out
    INVALID_CREDENTIALS = "invalid_credentials"  # wrong login or password (one answer for both)
    FORBIDDEN = "forbidden"  # the role or this user may not do this (route, op or channel)
    ROLE_NOT_ALLOWED = "role_not_allowed"  # self-registration asked for a staff role
    ACCOUNT_DISABLED = "account_disabled"
    PHONE_UNCONFIRMED = "phone_unconfirmed"  # a right password for an account whose phone awaits its code
    WRONG_CODE = "wrong_code"  # a phone code wrong, used, expired or dead after too many tries (one answer)
    # --- the request's shape ---
    BAD_REQUEST = "bad_request"  # Starlette's own 400
    INVALID_JSON = "invalid_json"  # a REST body that does not parse as JSON
    INVALID_INPUT = "invalid_input"  # a REST field missing, malformed or out of range (``field``)
    INVALID_FIELD = "invalid_field"  # the socket's name for the same (``field`` names it)
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"  # any other status Starlette raised itself (its status is kept)
    BAD_FRAME = "bad_frame"  # a socket frame that is not a JSON object, or a binary frame
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_OP = "unknown_op"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp_out_of_window"  # a location fix too old or from the future
    RATE_LIMITED = "rate_limited"
    # Login or registration refused before any password work: too many tries from this client address
    # or for this account (429 with Retry-After; server/abuse.py).
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    # --- channels (socket only) ---
    BAD_CHANNEL = "bad_channel"  # not a channel name the server knows
    DOCTOR_CHANNEL_REQUIRED = "doctor_channel_required"  # a doctor's ``call:`` before ``doctor:<id>``
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    # --- objects and their state ---
    NOT_FOUND = "not_found"  # no such resource, route or channel object
    CONFLICT = "conflict"  # the object changed meanwhile: read it again and retry
    INVALID_TRANSITION = "invalid_transition"  # the call's status does not allow this (``status``)
    NOT_COMPLETED = "not_completed"  # a rating for a visit that is not completed
    ALREADY_RATED = "already_rated"
    ACCOUNT_EXISTS = "account_exists"  # the email or phone (``field``) is taken
    LICENCE_EXISTS = "licence_exists"
    CLINIC_EXISTS = "clinic_exists"
    OFFER_EXPIRED = "offer_expired"  # an accept or decline after the offer's deadline
    OFFER_WITHDRAWN = "offer_withdrawn"  # another doctor took the call, or it was cancelled / assigned
    OFFER_DECLINED = "offer_declined"
    OFFER_ACCEPTED = "offer_accepted"
    DOCTOR_UNAVAILABLE = "doctor_unavailable"  # manual assignment to a doctor who is not free
    OUTSIDE_SERVICE_AREA = "outside_service_area"  # zones exist and the point lies in none of them
    TOO_MANY_CELLS = "too_many_cells"  # a map box needing more than the cell limit
    UNKNOWN_ZONE = "unknown_zone"
    LINK_EXPIRED = "link_expired"  # a share link whose call is over (completed or cancelled)
    # Planned visits (docs/planned-visits.md).
    SLOT_TAKEN = "slot_taken"  # the doctor's time is held by another booking (or travel to it)
    DAILY_LIMIT_REACHED = "daily_limit_reached"  # the doctor's day already has its most visits
    SERVICE_EXISTS = "service_exists"  # the clinic has a service of this name
    # --- the server ---
    UNAVAILABLE = "unavailable"  # the engine or database is unreachable right now: retry
    BUSY = "busy"  # no database connection came free within TOT_DB_POOL_TIMEOUT (overload)
    INTERNAL_ERROR = "internal_error"  # a bug, logged with its traceback

    def on_socket(self) -> ErrorCode:
        """The code an ``error`` frame carries for this refusal: itself, except ``invalid_input``, which
        the socket protocol has always called ``invalid_field`` (docs/protocol.md)."""
        return ErrorCode.INVALID_FIELD if self is ErrorCode.INVALID_INPUT else self


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.AUTH_REQUIRED: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.TOKEN_REVOKED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ROLE_NOT_ALLOWED: 403,
    ErrorCode.ACCOUNT_DISABLED: 403,
    ErrorCode.PHONE_UNCONFIRMED: 403,
    ErrorCode.WRONG_CODE: 422,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_INPUT: 422,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.NOT_COMPLETED: 409,
    ErrorCode.ALREADY_RATED: 409,
    ErrorCode.ACCOUNT_EXISTS: 409,
    ErrorCode.LICENCE_EXISTS: 409,
    ErrorCode.CLINIC_EXISTS: 409,
    ErrorCode.OFFER_EXPIRED: 409,
    ErrorCode.OFFER_WITHDRAWN: 409,
    ErrorCode.OFFER_DECLINED: 409,
    ErrorCode.OFFER_ACCEPTED: 409,
    ErrorCode.DOCTOR_UNAVAILABLE: 409,
    ErrorCode.OUTSIDE_SERVICE_AREA: 422,
    ErrorCode.TOO_MANY_CELLS: 422,
    ErrorCode.UNKNOWN_ZONE: 422,
    ErrorCode.LINK_EXPIRED: 410,
    ErrorCode.SLOT_TAKEN: 409,
    ErrorCode.DAILY_LIMIT_REACHED: 409,
    ErrorCode.SERVICE_EXISTS: 409,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.BUSY: 503,
    ErrorCode.INTERNAL_ERROR: 500,
}
"""The REST status of each code REST can answer (docs/api.md). Codes missing here are socket-only
(frames, channels, ``invalid_field``) or, for ``http_error``, keep the status Starlette raised."""

MESSAGES: dict[ErrorCode, tuple[str, str]] = {
    ErrorCode.TOO_MANY_ATTEMPTS: (
        "too many attempts; retry after the time in Retry-After",
        "слишком много попыток; повторите через время из Retry-After",
    ),
    ErrorCode.BUSY: (
        "the server is busy; retry shortly",
        "сервер перегружен; повторите чуть позже",
    ),
    ErrorCode.PHONE_UNCONFIRMED: (
        "confirm your phone with the code sent by SMS first",
        "сначала подтвердите телефон кодом из SMS",
    ),
    ErrorCode.WRONG_CODE: (
        "wrong code, or it was used, expired or tried too often: ask for a new one",
        "неверный код, или он уже использован, истёк или исчерпал попытки: запросите новый",
    ),
    ErrorCode.TOKEN_REVOKED: (
        "access with this token was revoked (the account was disabled, deleted or changed, or you"
        " logged out); log in again",
        "доступ по этому токену отозван (учётная запись отключена, удалена или изменена, или выполнен выход);"
        " войдите снова",
    ),
    ErrorCode.SLOT_TAKEN: (
        "this time of the doctor is taken; choose another slot",
        "это время врача уже занято; выберите другое",
    ),
    ErrorCode.DAILY_LIMIT_REACHED: (
        "the doctor has no more visits free that day; choose another day",
        "у врача больше нет свободных визитов в этот день; выберите другой день",
    ),
}
"""The English and Russian texts of the codes whose message is fixed (shown to people as is): the REST
body carries the English one as ``message`` and the Russian one as ``message_ru`` (docs/api.md)."""

CODE_OF_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    409: ErrorCode.CONFLICT,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_INPUT,
}
"""The code of an error Starlette raised itself, by its status (anything else is ``http_error``)."""


class Refusal(Exception):
    """A refused request, with a stable code from the catalogue: the base of every domain and API error.

    ``code`` fixes the HTTP status (:data:`HTTP_STATUS`); ``http_status`` overrides it only for
    ``http_error``, whose status is Starlette's. ``field`` names the input at fault; ``extra`` adds keys
    to the error object (for example the current ``status`` of a call in a 409).

    Raises ``ValueError`` when built with a code outside the catalogue, a socket-only code, or a status
    that disagrees with the catalogue: a wrong code is a bug found where it is written.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        field: str | None = None,
        http_status: int | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        status = HTTP_STATUS.get(self.code)
        if self.code is ErrorCode.HTTP_ERROR:
            if http_status is None:
                raise ValueError("http_error needs the status Starlette raised")
            status = http_status
        elif status is None:
            raise ValueError(f"{self.code.value} is a socket-only code")
        elif http_status is not None and http_status != status:
            raise ValueError(f"{self.code.value} answers {status}, not {http_status}")
        self.http_status: int = status
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The REST body ``{"error": {"code": str, "message": str, "field"?: str, ...extra}}``."""
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.extra)
        return {"error": error}
