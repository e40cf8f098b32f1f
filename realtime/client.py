"""The project's Python client for the WebSocket gateway at ``/v1/ws`` (used by tests, the load
simulator and integrators).

::

    async with TotClient("http://127.0.0.1:8000", token) as client:
        await client.subscribe(f"doctor:{me}")
        await client.request("doctor.status", status="available")   # -> {"status": "available"}
        async for item in client.events():
            if isinstance(item, Event): ...            # in order per channel, no gap, no duplicate
            elif isinstance(item, RecoveryFailed): ... # re-read that channel's state over REST

**Connection.** ``connect()`` (or ``async with``) opens the socket and waits for ``hello``; it raises
when that first attempt fails (:class:`AuthError` for 4401/4403, ``OSError``/``TimeoutError``/websockets
errors for the network). Afterwards an unexpected close or network error makes the client reconnect
with exponential backoff and jitter, get a fresh token when ``token`` is a callable, and resubscribe
every channel with ``since`` = the last offset/epoch it saw, so the app sees neither gap nor duplicate
(when history cannot fill the gap it yields :class:`RecoveryFailed`; a doctor's ``doctor:<id>`` is
resubscribed before the rest, as the server requires for call channels). A subscription the server ends
itself (``unsubscribed`` with a ``reason``, e.g. a doctor's call channel once the call was taken from
them, or once the doctor unsubscribed from ``doctor:<id>``) is forgotten and yielded as
:class:`SubscriptionLost`. It does not reconnect after
``close()``, after 4403, after 4401 with a static token, nor after two 4401 in a row with a token
callable (the callable could not get a valid token): :class:`AuthError` is then raised by ``events()``
and by every later call. With ``reconnect=False`` a drop ends the client the same way with
:class:`ConnectionLost`.

**Requests.** ``request()`` waits for the ``ack`` (or ``subscribed``/``unsubscribed``/``pong``) with
its ``ref``; an ``error`` frame raises :class:`ClientError`; no answer within the timeout raises
``TimeoutError``; a request in flight when the connection drops, or made while the client is
reconnecting, raises :class:`ConnectionLost` (the caller decides whether to retry). ``error`` frames
without a ``ref`` (answers to ``send()``) are logged on the ``tot.client`` logger.

**Overflow.** Events wait in a bounded queue (``max_queued_events``). When the app stops consuming
``events()`` and the queue is full, the client stops reading the socket: TCP backpressure reaches the
server, which closes the connection with 4499 (slow consumer); once the app consumes again, the client
reads what was already received, sees the close, reconnects and recovers from its last offset. Answers
to requests are read in order with events, so they wait too: an app that makes requests must consume
``events()``.

**Keepalive.** The client sends ``{"op":"ping"}`` every ``ping_interval_s`` (default: half of
``hello.limits.idle_timeout_s``) so the server never closes it with 4408.

Per-message deflate is off (``compression=None``): it multiplies memory per connection by about 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

log = logging.getLogger("tot.client")

WS_PATH = "/v1/ws"
CLOSE_TIMEOUT_S = 2.0
UNAUTHORIZED, ORIGIN_NOT_ALLOWED = 4401, 4403
RETRYABLE_SUBSCRIBE_ERRORS = frozenset({"unavailable", "rate_limited"})
"""Resubscribe errors retried on the same connection (with backoff); others lose the channel."""

TokenSource = str | Callable[[], Awaitable[str]]
"""A bearer access token, or an async callable returning a fresh one (called on every (re)connect;
raise :class:`AuthError` from it to stop the client, any other exception is retried)."""


# --- values ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: the last offset seen (integers from 1) in ``epoch``."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Event:
    """A channel event. ``data`` is the event's JSON payload. ``offset``/``epoch`` are None for
    ephemeral events (e.g. ``doctor.position``), which are live only and never recovered."""

    channel: str
    type: str
    data: Any
    offset: int | None
    epoch: str | None


@dataclass(frozen=True, slots=True)
class RecoveryFailed:
    """The server could not fill a gap on ``channel`` (history trimmed or lost: ``reason``). Events
    continue after ``position``; re-read the channel's state over REST."""

    channel: str
    reason: str
    position: Position


@dataclass(frozen=True, slots=True)
class SubscriptionLost:
    """The client forgot ``channel``: resubscribing it after a reconnect was refused (``code`` is the
    error code, e.g. ``forbidden``: the call was reassigned), or the server ended the subscription
    (``code`` is the ``unsubscribed`` frame's reason, e.g. ``unassigned``, or ``doctor_channel_left``
    for a doctor's call channels once ``doctor:<id>`` was unsubscribed). ``position`` is the last one
    seen."""

    channel: str
    code: str
    message: str
    position: Position


ClientEvent = Event | RecoveryFailed | SubscriptionLost


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The answer to :meth:`TotClient.subscribe`. ``recovered``: everything after ``since`` follows
    as events (``position`` is then the stream's current end); False without ``since`` or when history
    could not fill the gap (``reason``), and events follow after ``position``."""

    channel: str
    recovered: bool
    position: Position
    reason: str | None = None


class ClientError(Exception):
    """The server refused a request with an ``error`` frame (codes: ``realtime/protocol.py``)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" ({field})" if field else ""))
        self.code = code
        self.message = message
        self.field = field


class ConnectionLost(Exception):
    """No connection to send on, or it dropped before the answer. ``code``/``reason``: its close."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection lost (close code {code}, reason {reason!r})")
        self.code = code
        self.reason = reason


class AuthError(Exception):
    """The server refused this client: 4401 (``reason``: token_expired, token_invalid,
    auth_required) or 4403 (origin not allowed). The client does not retry."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"refused by the server ({code} {reason})")
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[dict[str, Any]]
    since: Position | None = None  # subscribe requests: the ``since`` sent
    resubscribe: bool = False


def ws_url(url: str) -> str:
    """``http://host:port`` / ``ws://host:port`` (https/wss alike) -> ``ws://host:port/v1/ws``."""
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            url = secure + url[len(plain) :]
    url = url.rstrip("/")
    return url if url.endswith(WS_PATH) else url + WS_PATH


def _since(position: Position) -> dict[str, Any]:
    return {"offset": position.offset, "epoch": position.epoch}


async def _close(ws: ClientConnection) -> None:
    """Closing handshake, discarding unread frames: a socket we stopped reading (backpressure) would
    not let the server's close frame through otherwise."""
    closing = asyncio.create_task(ws.close())
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass
    await closing


def _retrieve(future: asyncio.Future[dict[str, Any]]) -> None:
    if not future.cancelled():
        future.exception()  # nobody may await a failed resubscribe: do not warn about it


def _close_of(exc: ConnectionClosed) -> tuple[int, str]:
    """The close code and reason the server sent, or 1006 (abnormal closure, RFC 6455 section 7.1.5)
    when the connection dropped without a close frame. (``ConnectionClosed.code``/``.reason`` are
    deprecated since websockets 13.1.)"""
    if exc.rcvd is None:
        return 1006, ""
    return exc.rcvd.code, exc.rcvd.reason


class TotClient:
    """One client connection to ``/v1/ws`` that survives drops (see the module docstring).

    ``url``: the server base URL. ``token``: see :data:`TokenSource`. ``backoff_s``: (first, max)
    reconnect delay in seconds, doubling per failed attempt, with jitter; it starts over once a
    connection stayed up ``max`` seconds. ``ping_interval_s``: seconds between pings (None: half the
    server's idle timeout). ``request_timeout_s``: default wait for an answer. ``max_queued_events``:
    events held for the app before the client stops reading the socket. ``open_timeout_s``: for the
    handshake and the ``hello`` frame.
    """

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
        self._token = token
        self._reconnect = reconnect
        self._backoff = backoff_s
        self._ping_interval = ping_interval_s
        self._timeout = request_timeout_s
        self._open_timeout = open_timeout_s
        self._ws: ClientConnection | None = None
        self._positions: dict[str, Position] = {}
        self._pending: dict[int, _Pending] = {}
        self._refs = itertools.count(1)
        self._queue: asyncio.Queue[ClientEvent | None] = asyncio.Queue()  # None: the client stopped
        self._room = asyncio.Semaphore(max_queued_events)
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: Exception | None = None  # why the client stopped, unless close() did it
        self._closing = False
        self._ended = False  # the end marker is in the queue

    # --- life cycle -------------------------------------------------------------------------------

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
                await asyncio.wait_for(_close(ws), timeout=CLOSE_TIMEOUT_S)
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

    # --- the app's calls --------------------------------------------------------------------------

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
            frame["since"] = _since(since)
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
        return {k: v for k, v in reply.items() if k not in ("op", "ref")}

    async def send(self, op: str, /, **fields: Any) -> None:
        """Send ``{"op": op, **fields}`` without a ``ref``: nothing is awaited (a refusal is only
        logged). For high-rate frames such as ``location``. Raises :class:`ConnectionLost`."""
        ws = self._connection()
        try:
            await ws.send(orjson.dumps({"op": op, **fields}).decode())
        except ConnectionClosed as exc:
            raise ConnectionLost(*_close_of(exc)) from None

    # --- internals: requests ------------------------------------------------------------------------

    def _connection(self) -> ClientConnection:
        if self._ws is not None:
            return self._ws
        if self._failure is not None:
            raise self._failure
        raise ConnectionLost(self.closed_code, "closed" if self._closing else "reconnecting")

    async def _call(
        self,
        frame: dict[str, Any],
        *,
        since: Position | None = None,
        resubscribe: bool = False,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        ws = self._connection()
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._pending[ref] = _Pending(future, since, resubscribe)
        try:
            await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
            return await asyncio.wait_for(future, self._timeout if timeout_s is None else timeout_s)
        except ConnectionClosed as exc:
            raise ConnectionLost(*_close_of(exc)) from None
        finally:
            self._pending.pop(ref, None)

    # --- internals: connections ---------------------------------------------------------------------

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
            if self.closed_code in (UNAUTHORIZED, ORIGIN_NOT_ALLOWED):
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

    def _record_close(self, ws: ClientConnection) -> None:
        self.closed_code = ws.close_code if ws.close_code is not None else 1006
        self.closed_reason = ws.close_reason or ""

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
                if code == ORIGIN_NOT_ALLOWED or (code == UNAUTHORIZED and isinstance(self._token, str)):
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
                if isinstance(self._token, str) or exc.code != UNAUTHORIZED or unauthorized:
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
            frame = {"op": "subscribe", "ch": channel, "since": _since(since)}
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

    # --- internals: frames ------------------------------------------------------------------------

    async def _put(self, item: ClientEvent) -> None:
        """Queue an item for ``events()``, waiting for room (this is where backpressure starts)."""
        await self._room.acquire()
        self._queue.put_nowait(item)

    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = orjson.loads(raw)
            await self._dispatch(frame["op"], frame)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            log.warning("unreadable server frame: %.200r", raw)

    async def _dispatch(self, op: str, frame: dict[str, Any]) -> None:
        if op == "event":
            await self._on_event(frame)
        elif op == "subscribed":
            await self._on_subscribed(frame)
        elif op == "error":
            self._on_error(frame)
        elif op == "unsubscribed" and "ref" not in frame:
            await self._on_ended(frame)
        elif op in ("ack", "unsubscribed", "pong"):
            pending = self._answered(frame)
            if pending is not None and not pending.future.done():
                pending.future.set_result(frame)
        elif op == "hello":
            self.hello = frame
        else:
            log.debug("unknown server frame op %r", op)

    def _answered(self, frame: dict[str, Any]) -> _Pending | None:
        """The request a frame answers (no longer pending), by its ``ref``."""
        ref = frame.get("ref")
        return self._pending.pop(ref, None) if isinstance(ref, int) else None

    async def _on_event(self, frame: dict[str, Any]) -> None:
        channel = frame["ch"]
        offset, epoch = frame.get("offset"), frame.get("epoch")
        last = self._positions.get(channel)
        if last is None:
            return  # not subscribed (any more)
        if offset is not None and epoch == last.epoch and offset <= last.offset:
            log.debug("duplicate event dropped", extra={"channel": channel, "offset": offset})
            return
        await self._room.acquire()
        if channel not in self._positions:  # unsubscribed while we waited for room
            self._room.release()
            return
        if offset is not None:
            self._positions[channel] = Position(offset, str(epoch))
        self._queue.put_nowait(Event(channel, frame["type"], frame.get("data"), offset, epoch))

    async def _on_subscribed(self, frame: dict[str, Any]) -> None:
        channel, recovered = frame["ch"], bool(frame["recovered"])
        position = Position(**frame["position"])
        reason = frame.get("reason") or "unknown"
        pending = self._answered(frame)
        if pending is None:  # unasked: the server could not fill a gap; the app must re-read state
            if not recovered and channel in self._positions:
                self._positions[channel] = position
                await self._put(RecoveryFailed(channel, reason, position))
            return
        if not pending.resubscribe or channel in self._positions:
            # Recovered: the missed events follow, after ``since``. Otherwise: after ``position``.
            self._positions[channel] = pending.since if recovered and pending.since else position
            if pending.resubscribe and not recovered:
                await self._put(RecoveryFailed(channel, reason, position))
        if not pending.future.done():
            pending.future.set_result(frame)

    async def _on_ended(self, frame: dict[str, Any]) -> None:
        """``{"op":"unsubscribed","ch":...,"reason":...}`` without a ``ref``: the server ended the
        subscription. Nothing more of the channel comes, and it must not be resubscribed on reconnect."""
        channel = frame["ch"]
        position = self._positions.pop(channel, None)
        if position is not None:  # else the app unsubscribed meanwhile: nothing to tell
            reason = str(frame.get("reason") or "unsubscribed")
            await self._put(SubscriptionLost(channel, reason, "the server ended the subscription", position))

    def _on_error(self, frame: dict[str, Any]) -> None:
        error = ClientError(str(frame.get("code")), str(frame.get("message")), frame.get("field"))
        pending = self._answered(frame)
        if pending is None:
            log.warning("server refused a frame: %s", error)
        elif not pending.future.done():
            pending.future.set_exception(error)
