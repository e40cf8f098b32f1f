"""The one error shape of the REST API and the handlers that produce it.

Every 4xx/5xx response body is ``{"error": {"code": str, "message": str, "field"?: str, ...}}``. ``code``
is stable (clients branch on it; docs/api.md lists them); ``message`` is for humans; ``field`` names the
offending input field when there is one. Errors are logged once, here, by code and field name: never
a request body, a message or a value (docs/api.md, "Text fields").
"""

from __future__ import annotations

import logging
import math

import orjson
import sqlalchemy.exc
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime.errors import CODE_OF_STATUS, MESSAGES, ErrorCode, Refusal
from server.logs import field_name

log = logging.getLogger("tot.http")


class ApiError(Refusal):
    """A refusal of the API layer itself (authentication, input shape, overload): the same catalogue
    and body as every :class:`~realtime.errors.Refusal`. Raises ``ValueError`` on a code outside it."""


class Throttled(ApiError):
    """A refusal that tells the client when to come back: ``retry_after_s`` goes into ``Retry-After``
    (whole seconds, at least 1). ``code`` is one with fixed texts in ``MESSAGES`` (``too_many_attempts``
    429, ``busy`` 503); the body carries both (``message``, ``message_ru``)."""

    def __init__(self, code: ErrorCode, retry_after_s: float) -> None:
        english, russian = MESSAGES[code]
        super().__init__(code, english, message_ru=russian)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


def error_response(err: Refusal, headers: dict[str, str] | None = None) -> Response:
    """The HTTP response for ``err``."""
    return Response(
        orjson.dumps(err.body()), status_code=err.http_status, headers=headers, media_type="application/json"
    )


def _log_refusal(request: Request, exc: Refusal) -> None:
    # The code and the field's name, never the message or the value: a message may quote input.
    log.info(
        "request refused",
        extra={
            "method": request.method,
            "path": request.url.path,
            "status": exc.http_status,
            "code": exc.code.value,
            "field": field_name(exc.field),
            # The client's address (through a trusted proxy, the one it forwarded: server/http_protocol.py).
            "client": request.client.host if request.client else None,
        },
    )


async def handle_refusal(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for every :class:`~realtime.errors.Refusal` (API and dispatch)."""
    assert isinstance(exc, Refusal)
    _log_refusal(request, exc)
    return error_response(exc, _headers(exc))


def _headers(exc: Refusal, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    if isinstance(exc, Throttled):
        headers = {**(headers or {}), "Retry-After": str(exc.retry_after_s)}
    if exc.http_status == 401:
        return {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return headers


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: every method served at this path by its most specific routes (those
    matching it with the fewest path parameters, so ``/v1/doctors/me`` is its own resource rather than
    ``/v1/doctors/{doctor_id}`` given "me", which answers 422). Starlette's own header names only the
    first route whose path matched, and the API mounts one route per method."""
    matches: list[tuple[int, set[str]]] = []
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            matches.append((len(route.param_convertors), route.methods))
    fewest = min((params for params, _ in matches), default=0)
    methods = set().union(*(m for params, m in matches if params == fewest))
    return ", ".join(sorted(methods))


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405/... in our error shape; a 405 carries ``Allow`` (RFC 9110, 15.5.6)."""
    assert isinstance(exc, HTTPException)
    code = CODE_OF_STATUS.get(exc.status_code, ErrorCode.HTTP_ERROR)
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else code.value.replace("_", " ")
    status = exc.status_code if code is ErrorCode.HTTP_ERROR else None
    err = ApiError(code, message, http_status=status)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    _log_refusal(request, err)
    return error_response(err, _headers(err, headers))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception: logged with its traceback, answered as a bare 500 (no internals leak)."""
    log.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
    return error_response(ApiError(ErrorCode.INTERNAL_ERROR, "internal server error"))


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
    err = ApiError(ErrorCode.BUSY, "the server is busy; retry shortly")
    return error_response(err, {"Retry-After": str(BUSY_RETRY_AFTER_S)})


async def handle_integrity_error(request: Request, exc: Exception) -> Response:
    """A database constraint refused a write. When the request's signed-in account no longer exists (its
    row was deleted while its token was still cached as valid: the write's foreign key to ``users``
    failed), that is a revoked token, 401 ``token_revoked``, and the account is held as deleted; any
    other constraint failure is a bug, 500 as :func:`handle_unexpected`."""
    from server.auth.access import revoked
    from server.services import services

    principal = getattr(request.state, "principal", None)
    if principal is not None:
        svc = services(request)
        try:
            gone = await svc.access.account_gone(principal.user_id)
        except Exception:
            log.exception("could not check the account after a constraint failure")
            gone = False
        if gone:
            err = revoked()
            _log_refusal(request, err)
            return error_response(err, _headers(err))
    return await handle_unexpected(request, exc)


EXCEPTION_HANDLERS = {
    sqlalchemy.exc.TimeoutError: handle_pool_timeout,
    sqlalchemy.exc.IntegrityError: handle_integrity_error,
    Refusal: handle_refusal,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
