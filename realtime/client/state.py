"""The client's state and its transitions shared by every part: the current connection, pending
requests, the event queue for the app, and stopping for good."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from realtime.client.errors import ConnectionLost
from realtime.client.values import ClientEvent, Position
from realtime.client.wire import ws_url

TokenSource = str | Callable[[], Awaitable[str]]
"""A bearer access token, or an async callable returning a fresh one (called on every (re)connect;
raise :class:`~realtime.client.errors.AuthError` from it to stop the client, any other exception is
retried)."""


@dataclass(slots=True)
class Pending:
    """A request awaiting its answer (by ``ref``)."""

    future: asyncio.Future[dict[str, Any]]
    since: Position | None = None  # subscribe requests: the ``since`` sent
    resubscribe: bool = False


class ClientState:
    """The fields of :class:`~realtime.client.TotClient` (its constructor: see there) and the state
    changes every part of it makes."""

    def __init__(
        self,
        url: str,
        token: TokenSource,
        *,
        reconnect: bool = True,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        ping_interval_s: float | None = None,
        request_timeout_s: float = 10.0,
        max_queued_events: int = 1000,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.url = ws_url(url)
        self.hello: dict[str, Any] | None = None
        """The last ``hello`` frame: ``connection``, ``user``, ``role``, ``server_time``, ``limits``."""
        self.closed_code: int | None = None
        """Close code of the last connection that ended (1006 for a dropped TCP connection)."""
        self.closed_reason: str = ""
        self.announced_status: str | None = None
        """The last ``doctor.status`` this client sent (``send``) or had accepted (``request``)."""
        self.last_fix: dict[str, Any] | None = None
        """The fields of the last ``location`` this client sent."""
        self.reannounced = 0
        """``reannounce`` frames the server sent (each answered with the status and fix above)."""
        self._reannouncing: asyncio.Task[None] | None = None
        self._token = token
        self._reconnect = reconnect
        self._backoff = backoff_s
        self._ping_interval = ping_interval_s
        self._timeout = request_timeout_s
        self._open_timeout = open_timeout_s
        self._ws: ClientConnection | None = None
        self._positions: dict[str, Position] = {}
        self._pending: dict[int, Pending] = {}
        self._refs = itertools.count(1)
        self._queue: asyncio.Queue[ClientEvent | None] = asyncio.Queue()  # None: the client stopped
        self._room = asyncio.Semaphore(max_queued_events)
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: Exception | None = None  # why the client stopped, unless close() did it
        self._closing = False
        self._ended = False  # the end marker is in the queue

    def _connection(self) -> ClientConnection:
        if self._ws is not None:
            return self._ws
        if self._failure is not None:
            raise self._failure
        raise ConnectionLost(self.closed_code, "closed" if self._closing else "reconnecting")

    def _record_close(self, ws: ClientConnection) -> None:
        self.closed_code = ws.close_code if ws.close_code is not None else 1006
        self.closed_reason = ws.close_reason or ""

    def _fail_pending(self, exc: Exception) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._pending.clear()

    def _stop(self, failure: Exception | None) -> None:
        """The client stops for good (once)."""
        if self._failure is None and failure is not None:
            self._failure = failure
        self._ws = None
        self._fail_pending(failure or ConnectionLost(self.closed_code, "closed"))
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    def _remember(self, op: str, fields: dict[str, Any]) -> None:
        """Keep what a doctor app announced (its status, its last fix), to re-announce it."""
        if op == "doctor.status" and isinstance(fields.get("status"), str):
            self.announced_status = fields["status"]
        elif op == "location":
            self.last_fix = dict(fields)

    async def _put(self, item: ClientEvent) -> None:
        """Queue an item for ``events()``, waiting for room (this is where backpressure starts)."""
        await self._room.acquire()
        self._queue.put_nowait(item)
