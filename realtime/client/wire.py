"""The socket's wire details the client needs: the URL, close codes, the ``since`` field, and
helpers around a ``websockets`` connection."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from realtime.client.values import Position

WS_PATH = "/v1/ws"
CLOSE_TIMEOUT_S = 2.0
UNAUTHORIZED, ORIGIN_NOT_ALLOWED, TOKEN_REVOKED = 4401, 4403, 4410
NEW_TOKEN_CODES = frozenset({UNAUTHORIZED, TOKEN_REVOKED})
"""Closes that a new token may cure (a token callable gets one more try; a static token is refused)."""
RETRYABLE_SUBSCRIBE_ERRORS = frozenset({"unavailable", "rate_limited"})
"""Resubscribe errors retried on the same connection (with backoff); others lose the channel."""


def ws_url(url: str) -> str:
    """``http://host:port`` / ``ws://host:port`` (https/wss alike) -> ``ws://host:port/v1/ws``."""
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            url = secure + url[len(plain) :]
    url = url.rstrip("/")
    return url if url.endswith(WS_PATH) else url + WS_PATH


def since_field(position: Position) -> dict[str, Any]:
    return {"offset": position.offset, "epoch": position.epoch}


async def close_connection(ws: ClientConnection) -> None:
    """Closing handshake, discarding unread frames: a socket we stopped reading (backpressure) would
    not let the server's close frame through otherwise."""
    closing = asyncio.create_task(ws.close())
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass
    await closing


def retrieve(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.cancelled():
        future.exception()  # nobody may await a failed resubscribe: do not warn about it


def close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent, or 1006 (abnormal closure, RFC 6455 section 7.1.5)
    when the connection dropped without a close frame. (``ConnectionClosed.code``/``.reason`` are
    deprecated since websockets 13.1.)"""
    if exc.rcvd is None:
        return 1006, ""
    return exc.rcvd.code, exc.rcvd.reason
