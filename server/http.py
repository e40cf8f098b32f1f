"""JSON in and out of REST handlers: orjson responses and validated request bodies."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from realtime.errors import ErrorCode
from server.errors import ApiError

MAX_BODY_BYTES = 256 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson (UUIDs, datetimes and dataclasses encode natively)."""
    return Response(
        orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


async def read_json(request: Request) -> Any:
    """The request body parsed as JSON.

    Raises ``ApiError`` 413 ``payload_too_large`` above :data:`MAX_BODY_BYTES`, 415 when the content type
    is not JSON, 400 ``invalid_json`` when it does not parse.
    """
    content_type = request.headers.get("content-type", "application/json").split(";", 1)[0].strip()
    if content_type != "application/json":
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(ErrorCode.PAYLOAD_TOO_LARGE, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        raise ApiError(ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None


def validation_error(exc: ValidationError) -> Exception:
    """The first pydantic error as an ``ApiError`` 422 ``invalid_input`` naming the field; a refused control
    character (server/schemas.py ``Input``) comes first, wherever it is, so the answer names it even when
    other fields are wrong too. The message never quotes the value (refusals are logged)."""
    errors = exc.errors(include_input=False, include_url=False)
    first = next((e for e in errors if e["type"] == "control_character"), errors[0])
    field = ".".join(str(part) for part in first.get("loc", ())) or None
    message = first.get("msg", "invalid input")
    if first.get("type") == "extra_forbidden":
        message = "unknown field (not accepted here)"
    return ApiError(
        ErrorCode.INVALID_INPUT,
        f"{field}: {message}" if field else message,
        field=field,
        errors=len(errors),
    )


async def parse_body(request: Request, model: type[ModelT]) -> ModelT:
    """The request body validated into ``model``; raises ``ApiError`` (400/413/415/422) otherwise."""
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(ErrorCode.INVALID_INPUT, "body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_query(request: Request, model: type[ModelT]) -> ModelT:
    """Query parameters validated into ``model``; raises ``ApiError`` 422 naming the parameter."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise validation_error(exc) from None
