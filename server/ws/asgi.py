"""The application as served: WebSocket connections to ``/v1/ws`` go straight to the gateway."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from server.ws.gateway import WS_PATH, Gateway


def asgi_app(app: Starlette) -> ASGIApp:
    """``app`` with WebSocket connections to ``/v1/ws`` handed straight to the gateway.

    Starlette would pass them through its middleware and router, whose frames stay suspended for the
    connection's whole life: ~4.4 KB per idle connection measured here (loadtests/bench_ingest.py),
    for layers that do nothing to a WebSocket (the metrics middleware and the error pages are for
    HTTP; the gateway catches its own errors). Everything else, the lifespan included, goes to ``app``.
    """

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == scope.get("root_path", "") + WS_PATH:
            scope["app"] = app
            gateway: Gateway = app.state.gateway
            await gateway.serve(WebSocket(scope, receive, send), receive, send)
        else:
            await app(scope, receive, send)

    return asgi
