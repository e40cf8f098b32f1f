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
from server.schemas import Input

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
    alternate: tuple[int, ...] = ()
    path_params: tuple[tuple[str, dict[str, Any]], ...] = ()


UUID_PARAM: dict[str, Any] = {"type": "string", "format": "uuid"}
"""A path parameter: the routes parse ids with ``uuid.UUID`` and refuse anything else with 422."""


class ErrorDetail(BaseModel):
    """The error object: a stable ``code``, a human ``message`` and, for bad input, the ``field``."""

    code: str
    message: str
    field: str | None = None
    message_ru: str | None = None
    """The message in Russian, for the codes whose text is fixed (``too_many_attempts``, ``busy`` from
    the hash queue: ``realtime.errors.MESSAGES``)."""


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
        alternate: Sequence[int] = (),
        path_params: dict[str, dict[str, Any]] | None = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator that registers ``handler`` for ``method path``. Raises ``TypeError`` when ``body``
        or ``query`` is not an :class:`~server.schemas.Input` (the model that holds the text rule)."""
        for model in (body, query):
            if model is not None and not issubclass(model, Input):
                raise TypeError(f"{model.__name__} must subclass server.schemas.Input (the text rule)")

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
                    alternate=tuple(alternate),
                    path_params=tuple((path_params or {}).items()),
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
    """``e.handler`` behind the token check when the endpoint is not public (401 without a valid,
    unrevoked token: ``Services.authorize``) and a role check when it names roles (403 with another
    role)."""
    if e.roles is None:
        return e.handler
    roles = e.roles
    handler = e.handler

    async def guarded(request: Request) -> Response:
        from server.errors import ApiError
        from server.services import services

        principal = await services(request).authorize(request)
        if roles and principal.role not in roles:
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


def _query_parameters(model: type[BaseModel], components: dict[str, Any]) -> list[dict[str, Any]]:
    """The query parameters of ``model``: its field schemas with their ``$defs`` moved to the components,
    without the ``null`` branch of optional fields (an absent parameter is the null), and lists as one
    comma-separated value (``style: form, explode: false``, as the routes split them)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    params = []
    for name, f in model.model_fields.items():
        alias = f.alias or name
        prop = dict(schema["properties"][alias])
        branches = [b for b in prop.pop("anyOf", ()) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches
        if prop.get("default", 0) is None:
            del prop["default"]
        param: dict[str, Any] = {
            "name": alias,
            "in": "query",
            "required": f.is_required(),
            "schema": prop,
            "description": f.description or "",
        }
        if prop.get("type") == "array":
            param.update(style="form", explode=False)
        params.append(param)
    return params


def _error_statuses(e: Endpoint) -> set[int]:
    """Every error status ``e`` can answer: its own ``errors``; 400/413/415/422 with a body (bad JSON,
    too large, not JSON, a field refused); 422 with a query or an id in the path, and 404 with an id;
    401 signed in, 403 with roles; 500 (a bug) and 503 (``busy``: no database connection came free)
    anywhere."""
    statuses = set(e.errors) | {500, 503}
    if e.body is not None:
        statuses |= {400, 413, 415, 422}
    if e.query is not None:
        statuses.add(422)
    if _PATH_PARAM.search(e.path):
        statuses |= {404, 422}
    if e.roles is not None:
        statuses.add(401)
        if e.roles:
            statuses.add(403)
    return statuses


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
    path_schemas = dict(e.path_params)
    for name in _PATH_PARAM.findall(e.path):
        op["parameters"].append(
            {"name": name, "in": "path", "required": True, "schema": path_schemas.get(name, UUID_PARAM)}
        )
    if e.query is not None:
        op["parameters"].extend(_query_parameters(e.query, components))
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
    for status in e.alternate:
        responses[str(status)] = {**success, "description": "see the description"}
    if e.roles is not None:
        op["security"] = [{"bearer": []}]
    for status in sorted(_error_statuses(e) - set(e.alternate)):
        responses[str(status)] = {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
    if 401 in _error_statuses(e):
        responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    op["responses"] = dict(sorted(responses.items()))
    return op
