"""The one error shape of the REST API and the handlers that produce it.

Every 4xx/5xx response body is ``{"error": {"code": str, "message": str, "field"?: str, ...}}``. ``code``
is stable (clients branch on it; docs/api.md lists them); ``message`` is for humans; ``field`` names the
offending input field when there is one. Errors are logged once, here.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import sqlalchemy.exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dispatch.errors import DispatchError

log = logging.getLogger("tot.http")

_HTTP_CODES = {
    400: "bad_request",
    401: "auth_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}


class ApiError(Exception):
    """An error the API reports to the client as ``status`` with a stable ``code``.

    ``field`` names the input field at fault; ``extra`` adds keys to the error object (for example the
    current status of a call in a 409).
    """

    def __init__(
        self, http_status: int, code: str, message: str, *, field: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = http_status
        self.code = code
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body ``{"error": {...}}``."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.extra)
        return {"error": error}


def error_response(err: ApiError, headers: dict[str, str] | None = None) -> Response:
    """The HTTP response for ``err``."""
    return Response(
        orjson.dumps(err.body()), status_code=err.status, headers=headers, media_type="application/json"
    )


async def handle_api_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for :class:`ApiError`."""
    assert isinstance(exc, ApiError)
    log.info(
        "request refused",
        extra={"method": request.method, "path": request.url.path, "status": exc.status, "code": exc.code},
    )
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc, headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405/... in our error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.replace("_", " ")
    return await handle_api_error(request, ApiError(exc.status_code, code, message))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception: logged with its traceback, answered as a bare 500 (no internals leak)."""
    log.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
    return error_response(ApiError(500, "internal_error", "internal server error"))


BUSY_RETRY_AFTER_S = 1
"""``Retry-After`` of a 503 ``busy``: the pool wait already lasted ``TOT_DB_POOL_TIMEOUT``; a client
retrying at once would only lengthen the queue."""


async def handle_pool_timeout(request: Request, exc: Exception) -> Response:
    """No database connection came free within ``TOT_DB_POOL_TIMEOUT``: the server is overloaded. Shed
    the request with 503 ``busy`` and ``Retry-After`` rather than queue it further (load shedding);
    nothing of it was committed (it never had a connection)."""
    assert isinstance(exc, sqlalchemy.exc.TimeoutError)
    log.warning(
        "database pool exhausted; request shed", extra={"method": request.method, "path": request.url.path}
    )
    err = ApiError(503, "busy", "the server is busy; retry shortly")
    return error_response(err, {"Retry-After": str(BUSY_RETRY_AFTER_S)})


async def handle_dispatch_error(request: Request, exc: Exception) -> Response:
    """A refusal from the dispatch layer, in the API's error shape (same code, its HTTP status)."""
    assert isinstance(exc, DispatchError)
    return await handle_api_error(
        request, ApiError(exc.http_status, exc.code, exc.message, field=exc.field, **exc.extra)
    )


EXCEPTION_HANDLERS = {
    DispatchError: handle_dispatch_error,
    sqlalchemy.exc.TimeoutError: handle_pool_timeout,
    ApiError: handle_api_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
