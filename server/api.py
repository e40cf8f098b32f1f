"""The REST route registry: each endpoint declares its method, path, body, query, response and roles
once, and both the Starlette routes and the OpenAPI document are built from that declaration.

Why not hand-written OpenAPI: a description kept apart from the routes drifts; here a route cannot
exist without its description (and tests/unit/test_openapi.py checks that every mounted route is in the
document).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from models.enums import Role
from realtime.errors import ErrorCode

Handler = Callable[[Request], Awaitable[Response]]
_PATH_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST operation.

    ``roles`` is ``None`` for a public endpoint, an empty tuple for "any authenticated user", or the
    roles allowed. ``errors`` lists the error statuses the endpoint documents besides validation.
    """

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    roles: tuple[Role, ...] | None = ()
    errors: tuple[int, ...] = ()
    response_media_type: str = "application/json"
    extra_headers: tuple[str, ...] = field(default_factory=tuple)


class ErrorDetail(BaseModel):
    """The error object: a stable ``code``, a human ``message`` and, for bad input, the ``field``."""

    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx/5xx body."""

    error: ErrorDetail


class Api:
    """A collection of endpoints, mounted as routes and described as OpenAPI 3.1."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        roles: Sequence[Role] | None = (),
        errors: Sequence[int] = (),
        response_media_type: str = "application/json",
        extra_headers: Sequence[str] = (),
    ) -> Callable[[Handler], Handler]:
        """Decorator that registers ``handler`` for ``method path``."""

        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    summary=summary,
                    tag=tag,
                    body=body,
                    query=query,
                    response=response,
                    status=status,
                    roles=None if roles is None else tuple(roles),
                    errors=tuple(errors),
                    response_media_type=response_media_type,
                    extra_headers=tuple(extra_headers),
                )
            )
            return handler

        return register

    def routes(self) -> list[Route]:
        """One Starlette route per endpoint (Starlette answers 405 when only the path matches). The
        declared roles are enforced here, so the document and the behaviour cannot disagree."""
        return [Route(e.path, _guard(e), methods=[e.method], name=e.handler.__name__) for e in self.endpoints]

    def openapi(self, *, title: str, version: str) -> dict[str, Any]:
        """The OpenAPI 3.1 document of every registered endpoint."""
        components: dict[str, Any] = {}
        paths: dict[str, dict[str, Any]] = {}
        for e in self.endpoints:
            op = _operation(e, components)
            paths.setdefault(_PATH_PARAM.sub(r"{\1}", e.path), {})[e.method.lower()] = op
        components.setdefault("ErrorBody", _schema(ErrorBody, components))
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        }


def _guard(e: Endpoint) -> Handler:
    """``e.handler`` behind a role check when the endpoint names roles (401 without a valid token,
    403 with another role)."""
    if not e.roles:
        return e.handler
    roles = e.roles
    handler = e.handler

    async def guarded(request: Request) -> Response:
        from server.errors import ApiError
        from server.services import services

        principal = services(request).principal(request)
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise ApiError(ErrorCode.FORBIDDEN, f"this needs one of the roles: {allowed}")
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(e: Endpoint, components: dict[str, Any]) -> dict[str, Any]:
    doc = inspect.getdoc(e.handler) or ""
    roles = "public" if e.roles is None else ", ".join(r.value for r in e.roles) or "any authenticated user"
    op: dict[str, Any] = {
        "operationId": e.handler.__name__,
        "summary": e.summary,
        "description": f"{doc}\n\nRoles: {roles}.".strip(),
        "tags": [e.tag],
        "parameters": [],
    }
    for name in _PATH_PARAM.findall(e.path):
        op["parameters"].append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if e.query is not None:
        for name, f in e.query.model_fields.items():
            param_schema = e.query.model_json_schema()["properties"][name]
            op["parameters"].append(
                {
                    "name": f.alias or name,
                    "in": "query",
                    "required": f.is_required(),
                    "schema": param_schema,
                    "description": f.description or "",
                }
            )
    for header in e.extra_headers:
        op["parameters"].append(
            {"name": header, "in": "header", "required": False, "schema": {"type": "string"}}
        )
    if e.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(e.body, components)}},
        }
    success: dict[str, Any] = {"description": "success"}
    if e.response is not None:
        success["content"] = {e.response_media_type: {"schema": _schema(e.response, components)}}
    elif e.response_media_type != "application/json":
        success["content"] = {e.response_media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(e.status): success}
    error_statuses = set(e.errors)
    if e.body is not None or e.query is not None:
        error_statuses |= {400, 422}
    if e.roles is not None:
        error_statuses.add(401)
        if e.roles:
            error_statuses.add(403)
        op["security"] = [{"bearer": []}]
    for status in sorted(error_statuses):
        responses[str(status)] = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
    op["responses"] = responses
    return op
