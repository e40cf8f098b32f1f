"""The client class: its life cycle and the app's calls (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from types import TracebackType
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed

from realtime.client.connections import Connections
from realtime.client.errors import ClientError, ConnectionLost
from realtime.client.values import ClientEvent, Position, Subscribed
from realtime.client.wire import CLOSE_TIMEOUT_S, close_connection, close_of, since_field


class TotClient(Connections):
    """One client connection to ``/v1/ws`` that survives drops (see the package docstring).

    ``url``: the server base URL. ``token``: see :data:`TokenSource`. ``backoff_s``: (first, max)
    reconnect delay in seconds, doubling per failed attempt, with jitter; it starts over once a
    connection stayed up ``max`` seconds. ``ping_interval_s``: seconds between pings (None: half the
    server's idle timeout). ``request_timeout_s``: default wait for an answer. ``max_queued_events``:
    events held for the app before the client stops reading the socket. ``open_timeout_s``: for the
    handshake and the ``hello`` frame.
    """

    # --- life cycle ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True from ``hello`` until the connection ends (False while reconnecting)."""
        return self._ws is not None

    async def connect(self) -> None:
        """Open the first connection and wait for ``hello``. Raises :class:`AuthError` (4401/4403),
        :class:`ConnectionLost` (closed before ``hello``), ``OSError``, ``TimeoutError`` or a websockets
        ``InvalidHandshake``; never retries this first attempt."""
        ws = await self._open()
        self._supervisor = asyncio.create_task(self._run(ws), name="tot-client")

    async def close(self) -> None:
        """Close the connection (code 1000) and stop for good: ``events()`` ends after what was
        queued, pending and later requests raise :class:`ConnectionLost`."""
        self._closing = True
        ws, supervisor = self._ws, self._supervisor
        if supervisor is not None:  # stops reading; what is queued stays for events()
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_connection(ws), timeout=CLOSE_TIMEOUT_S)
            ws.transport.abort()  # no-op once closed
            self._record_close(ws)
        self._stop(None)

    async def __aenter__(self) -> TotClient:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def drop_connection_for_test(self) -> None:
        """Tests only: abort the TCP connection without a closing handshake, as a network failure
        would. ``connected`` is False from this call on; the client then behaves as after any drop
        (reconnects and recovers)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.transport.abort()

    # --- the app's calls ------------------------------------------------------------------------------

    async def events(self) -> AsyncGenerator[ClientEvent, None]:
        """Events as they come: :class:`Event`, :class:`RecoveryFailed`, :class:`SubscriptionLost`.
        In order per channel. Ends after ``close()``; raises :class:`AuthError` or
        :class:`ConnectionLost` when the client stopped for that reason. One consumer at a time."""
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # the end stays visible to any later iteration
                if self._failure is not None:
                    raise self._failure
                return
            self._room.release()
            yield item

    def position(self, channel: str) -> Position | None:
        """The last position seen on a subscribed channel (None when not subscribed)."""
        return self._positions.get(channel)

    @property
    def channels(self) -> list[str]:
        """The subscribed channels (kept across reconnects)."""
        return list(self._positions)

    async def subscribe(self, channel: str, *, since: Position | None = None) -> Subscribed:
        """Subscribe to ``channel`` (e.g. ``doctor:<id>``, ``call:<id>``, ``dispatch``), recovering
        what was published after ``since`` when given. Raises :class:`ClientError` (``bad_channel``,
        ``forbidden``, ``not_found``, ``too_many_subscriptions``, ``invalid_field`` when already
        subscribed, ``doctor_channel_required`` for a doctor's ``call:<id>`` before ``doctor:<id>``...),
        :class:`ConnectionLost`, ``TimeoutError``."""
        if channel in self._positions:
            raise ClientError("invalid_field", "already subscribed", "ch")
        frame: dict[str, Any] = {"op": "subscribe", "ch": channel}
        if since is not None:
            frame["since"] = since_field(since)
        reply = await self._call(frame, since=since)
        return Subscribed(
            reply["ch"], bool(reply["recovered"]), Position(**reply["position"]), reply.get("reason")
        )

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``: no further event of it is queued (those already queued are
        still yielded). Never fails for a channel the server had already dropped, nor while
        reconnecting (the next connection simply does not resubscribe it). A doctor's ``doctor:<id>``
        takes their ``call:`` channels with it: each is yielded as :class:`SubscriptionLost`, with
        ``doctor_channel_left`` before this returns (or, while reconnecting, ``doctor_channel_required``
        when the next connection resubscribes them)."""
        self._positions.pop(channel, None)
        with contextlib.suppress(ConnectionLost):
            try:
                await self._call({"op": "unsubscribe", "ch": channel})
            except ClientError as exc:
                if exc.code != "not_subscribed":
                    raise

    async def request(self, op: str, /, *, timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        """Send ``{"op": op, **fields, "ref": <auto>}`` and return the answer's fields (without
        ``op`` and ``ref``), e.g. ``request("doctor.status", status="paused") -> {"status": "paused"}``.
        Raises :class:`ClientError`, :class:`ConnectionLost`, ``TimeoutError`` (after ``timeout_s``,
        default ``request_timeout_s``)."""
        reply = await self._call({"op": op, **fields}, timeout_s=timeout_s)
        self._remember(op, fields)
        return {k: v for k, v in reply.items() if k not in ("op", "ref")}

    async def send(self, op: str, /, **fields: Any) -> None:
        """Send ``{"op": op, **fields}`` without a ``ref``: nothing is awaited (a refusal is only
        logged). For high-rate frames such as ``location``. Raises :class:`ConnectionLost`."""
        ws = self._connection()
        try:
            await ws.send(orjson.dumps({"op": op, **fields}).decode())
        except ConnectionClosed as exc:
            raise ConnectionLost(*close_of(exc)) from None
        self._remember(op, fields)
