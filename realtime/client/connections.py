"""Connections: open one (token, handshake, ``hello``), read it until it ends, ping it, and
reconnect with backoff and jitter, resubscribing every channel from its last position."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime.client.errors import AuthError, ClientError, ConnectionLost
from realtime.client.frames import FrameHandler
from realtime.client.values import SubscriptionLost
from realtime.client.wire import (
    NEW_TOKEN_CODES,
    ORIGIN_NOT_ALLOWED,
    RETRYABLE_SUBSCRIBE_ERRORS,
    since_field,
)

log = logging.getLogger("tot.client")


class Connections(FrameHandler):
    """The reconnect loop (a task per client, started by ``connect()``)."""

    async def _open(self) -> ClientConnection:
        """Connect, read ``hello``; the connection becomes current."""
        token = self._token if isinstance(self._token, str) else await self._token()
        ws = await connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
            open_timeout=self._open_timeout,
        )
        try:
            raw = await asyncio.wait_for(ws.recv(), self._open_timeout)
            hello = orjson.loads(raw)
        except ConnectionClosed:
            self._record_close(ws)
            if self.closed_code == ORIGIN_NOT_ALLOWED or self.closed_code in NEW_TOKEN_CODES:
                raise AuthError(self.closed_code or 0, self.closed_reason) from None
            raise ConnectionLost(self.closed_code, self.closed_reason) from None
        except BaseException:
            ws.transport.abort()
            raise
        if not isinstance(hello, dict) or hello.get("op") != "hello":
            ws.transport.abort()
            raise ConnectionLost(None, "the server's first frame was not hello")
        self.hello = hello
        self._ws = ws
        return ws

    def _delay(self, attempt: int) -> float:
        first, most = self._backoff
        ceiling = min(most, first * 2 ** min(attempt, 32))
        return random.uniform(ceiling / 2, ceiling)

    async def _run(self, ws: ClientConnection) -> None:
        """Serve connections until the client stops: the reconnect loop."""
        loop = asyncio.get_running_loop()
        attempt = 0
        try:
            while True:
                started = loop.time()
                await self._serve(ws)
                if self._closing:
                    return
                code = self.closed_code or 1006
                if code == ORIGIN_NOT_ALLOWED or (code in NEW_TOKEN_CODES and isinstance(self._token, str)):
                    raise AuthError(code, self.closed_reason)
                if not self._reconnect:
                    raise ConnectionLost(code, self.closed_reason)
                if loop.time() - started >= self._backoff[1]:
                    attempt = 0
                log.info("connection lost; reconnecting", extra={"code": code, "reason": self.closed_reason})
                ws, attempt = await self._reconnect_loop(attempt)
        except (AuthError, ConnectionLost) as exc:
            self._stop(exc)
        except Exception as exc:
            log.exception("client failed")
            self._stop(exc)

    async def _reconnect_loop(self, attempt: int) -> tuple[ClientConnection, int]:
        unauthorized = False
        while True:
            await asyncio.sleep(self._delay(attempt))
            attempt += 1
            try:
                return await self._open(), attempt
            except AuthError as exc:
                # A token callable gets one more chance: its token may have expired in between.
                if isinstance(self._token, str) or exc.code not in NEW_TOKEN_CODES or unauthorized:
                    raise
                unauthorized = True
            except Exception as exc:
                log.warning("reconnect failed: %r", exc)

    async def _serve(self, ws: ClientConnection) -> None:
        """Read one connection's frames until it ends."""
        tasks = [asyncio.create_task(self._ping(ws))]
        if self._positions:
            tasks.append(asyncio.create_task(self._resubscribe(ws)))
        try:
            async for raw in ws:
                await self._on_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._record_close(ws)
            self._fail_pending(ConnectionLost(self.closed_code, self.closed_reason))
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _ping(self, ws: ClientConnection) -> None:
        interval = self._ping_interval
        if interval is None:
            idle = (self.hello or {}).get("limits", {}).get("idle_timeout_s", 60)
            interval = max(float(idle) / 2, 0.5)
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(interval)
                await ws.send('{"op":"ping"}')

    async def _resubscribe(self, ws: ClientConnection) -> None:
        # A doctor's call:<id> is refused (doctor_channel_required) until the connection follows
        # doctor:<id> again: doctor channels first, then the rest, each group at once.
        channels = list(self._positions)
        first = [channel for channel in channels if channel.startswith("doctor:")]
        rest = [channel for channel in channels if not channel.startswith("doctor:")]
        for group in (first, rest):
            if group:
                await asyncio.gather(*(self._resubscribe_one(ws, channel) for channel in group))

    async def _resubscribe_one(self, ws: ClientConnection, channel: str) -> None:
        attempt = 0
        while (since := self._positions.get(channel)) is not None:  # None: unsubscribed meanwhile
            frame = {"op": "subscribe", "ch": channel, "since": since_field(since)}
            try:
                await self._call(frame, since=since, resubscribe=True)
                return
            except ConnectionLost:
                return
            except TimeoutError:
                log.warning("resubscribe timed out; reconnecting", extra={"channel": channel})
                ws.transport.abort()
                return
            except ClientError as exc:
                if exc.code not in RETRYABLE_SUBSCRIBE_ERRORS:
                    if self._positions.pop(channel, None) is not None:
                        await self._put(SubscriptionLost(channel, exc.code, exc.message, since))
                    return
            await asyncio.sleep(self._delay(attempt))
            attempt += 1
