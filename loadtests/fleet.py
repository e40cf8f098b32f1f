"""The load generator's side of the benchmarks: WebSocket connections, doctors streaming positions,
and :class:`Peer`, a lean socket client that reads in a task of its own and answers requests by ref.

The generator is the ``websockets`` asyncio client used directly (``compression=None``, token in the
query, no client keepalive pings; the server's uvicorn still pings every 20 s and the client answers),
not the full ``realtime.client.TotClient``: the frames are the same, and one process has to drive
thousands of connections on one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.cli import GC_THRESHOLDS

MOSCOW_BOX = (55.55, 37.35, 55.92, 37.85)  # south, west, north, east
TICK_S = 0.005
MAX_BACKLOG_S = 0.1
"""A generator that falls further behind than this drops the excess (counted) instead of bursting."""
CONNECT_CONCURRENCY = 100
REQUEST_TIMEOUT_S = 60.0


def quiet_gc() -> None:
    """Tune the generator's garbage collector as the server's (``server/cli.py``: young generation
    every 100,000 allocations) and freeze what is alive now (``gc.freeze``: the open connections and
    their state, never collected again). With the defaults, full collections over 10,000 connections
    stalled the generator's loop for 0.5-0.8 s, 14 times in a 60 s run, and every latency measured
    across a stall grew by it (seen with a ``gc.callbacks`` timer; docs/benchmarks.md). Call once the
    connections are open; again after more are."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.collect()
    gc.freeze()


BUSY_RETRIES = 10
"""How often a connection, or a doctor's shift start, is retried when the server sheds it as busy."""


async def open_connections(
    ws_url: str, tokens: Sequence[str], first: int, count: int, *, hello: bool = True
) -> list[ClientConnection]:
    """Open ``count`` connections to ``ws_url`` with tokens ``first``, ``first+1``... (cycling), at most
    :data:`CONNECT_CONCURRENCY` at a time; with ``hello`` each is returned once the server's ``hello``
    arrived (authenticated, on-connect work done). Raises ``RuntimeError`` on another first frame."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> ClientConnection:
        async with gate:
            for attempt in range(BUSY_RETRIES):
                ws = await connect(
                    f"{ws_url}?token={tokens[i % len(tokens)]}",
                    compression=None,
                    ping_interval=None,
                    open_timeout=60,
                    close_timeout=1,
                )
                if not hello:
                    return ws
                try:
                    first_frame = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                except ConnectionClosed as exc:
                    # 1013 busy: the server shed the connection in an overload (docs/protocol.md);
                    # an app reconnects after a pause, as this one does.
                    if exc.rcvd is None or exc.rcvd.code != 1013 or attempt == BUSY_RETRIES - 1:
                        raise
                    await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
                    continue
                if first_frame.get("op") != "hello":
                    raise RuntimeError(f"expected hello, got {first_frame!r}")
                return ws
            raise AssertionError("unreachable")

    return list(await asyncio.gather(*(one(first + i) for i in range(count))))


def abort_all(connections: Sequence[ClientConnection]) -> None:
    """Drop the connections at once (no closing handshake: thousands of them would take seconds)."""
    for ws in connections:
        ws.transport.abort()


# --- peers --------------------------------------------------------------------------------------------


class RequestFailed(Exception):
    """The server answered a request with an ``error`` frame (``code``, ``message``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


EventHandler = Callable[["Peer", dict[str, Any], float], None]
"""Called for every ``event`` frame with the frame and ``time.perf_counter()`` at its arrival. Runs in
the peer's reader: it must not block (start a task for anything that awaits)."""


class Peer:
    """One client connection (a doctor's app, a dispatcher's console, a patient's phone) whose frames
    are read by its own task: acks and errors resolve :meth:`request`, events go to ``on_event``
    stamped with ``time.perf_counter()`` as they arrive."""

    _refs = itertools.count(1)

    def __init__(self, ws: ClientConnection, index: int, on_event: EventHandler | None = None) -> None:
        self.ws = ws
        self.index = index
        self.on_event = on_event
        self.closed = False
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        perf_counter, loads = time.perf_counter, orjson.loads
        try:
            async for raw in self.ws:
                arrived = perf_counter()
                frame = loads(raw)
                op = frame.get("op")
                if op == "event":
                    if self.on_event is not None:
                        self.on_event(self, frame, arrived)
                    continue
                ref = frame.get("ref")
                future = self._pending.pop(ref, None) if isinstance(ref, int) else None
                if future is not None and not future.done():
                    if op == "error":
                        future.set_exception(RequestFailed(frame.get("code", "?"), frame.get("message", "")))
                    else:
                        future.set_result(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))
            self._pending.clear()

    async def send(self, op: str, **fields: Any) -> None:
        """Send a frame without a ref (no answer expected)."""
        await self.ws.send(orjson.dumps({"op": op, **fields}), text=True)

    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a frame with a ref and return the server's answer (``ack``, ``subscribed``...). Raises
        :class:`RequestFailed` for an ``error`` frame, ``TimeoutError``, ``ConnectionError``."""
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ref] = future
        try:
            try:
                await self.ws.send(orjson.dumps({"op": op, "ref": ref, **fields}), text=True)
            except ConnectionClosed as exc:
                raise ConnectionError("connection closed") from exc
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        finally:
            self._pending.pop(ref, None)

    async def stop(self) -> None:
        """Stop reading (events are no longer handed to ``on_event``)."""
        self.on_event = None
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def silence(peers: Sequence[Peer]) -> None:
    """Stop handing events to the peers' handlers (before a benchmark tears down its tasks)."""
    for peer in peers:
        peer.on_event = None


async def close_peers(peers: Sequence[Peer]) -> None:
    """Drop the peers' connections at once and stop their readers."""
    silence(peers)
    abort_all([p.ws for p in peers])
    for peer in peers:
        await peer.stop()


async def gather_limited(coros: Sequence[Any], limit: int = CONNECT_CONCURRENCY) -> list[Any]:
    """Await the coroutines with at most ``limit`` running at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


async def keep_alive(peers: Sequence[Peer], interval_s: float = 20.0) -> None:
    """Send ``ping`` on each peer every ``interval_s`` (the server closes a connection idle for 60 s);
    for peers that send nothing else (consoles, patients). Runs until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        for peer in peers:
            if not peer.closed:
                with contextlib.suppress(ConnectionClosed):
                    await peer.send("ping")


# --- doctors streaming positions ----------------------------------------------------------------------


@dataclass
class Fleet:
    """The doctors' connections and their moving positions (inside ``box``; start points from
    ``draw`` when given, else uniform over the box). ``watch``: for the doctor indices it holds, the
    ``perf_counter()`` at which each fix was sent, by the fix's ``ts`` (for tracking latency)."""

    connections: list[ClientConnection]
    rnd: random.Random
    draw: Callable[[], tuple[float, float]] | None = None
    box: tuple[float, float, float, float] = MOSCOW_BOX
    lat: list[float] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    dlat: list[float] = field(default_factory=list)
    dlon: list[float] = field(default_factory=list)
    acc: list[float] = field(default_factory=list)
    last_ts: list[int] = field(default_factory=list)
    watch: dict[int, dict[int, float]] = field(default_factory=dict)
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    stopped: bool = False

    def __post_init__(self) -> None:
        south, west, north, east = self.box
        for _ in self.connections:
            if self.draw is not None:
                lat, lon = self.draw()
            else:
                lat, lon = self.rnd.uniform(south, north), self.rnd.uniform(west, east)
            self.lat.append(lat)
            self.lon.append(lon)
            speed, heading = self.rnd.uniform(3.0, 15.0), self.rnd.uniform(0, 2 * math.pi)
            self.dlat.append(speed * math.cos(heading) / 111_320.0)  # degrees per second
            self.dlon.append(speed * math.sin(heading) / (111_320.0 * math.cos(math.radians(55.75))))
            self.acc.append(round(self.rnd.uniform(4.0, 30.0), 1))
            self.last_ts.append(0)


async def drive(fleet: Fleet, rate: float) -> None:
    """Send location frames until ``fleet.stopped``: ``rate`` per connection per second, round-robin
    on a :data:`TICK_S` tick, so each connection sends every 1/rate s. ``ts`` is the wall clock
    (epoch ms) at the tick; the doctors in ``fleet.watch`` have each send's ``perf_counter()`` kept."""
    south, west, north, east = fleet.box
    conns = fleet.connections
    n = len(conns)
    total_rate = n * rate
    step = 1.0 / rate
    dead = [False] * n
    lat, lon, dlat, dlon, acc, last_ts = (
        fleet.lat,
        fleet.lon,
        fleet.dlat,
        fleet.dlon,
        fleet.acc,
        fleet.last_ts,
    )
    watch = fleet.watch
    dumps = orjson.dumps
    perf_counter = time.perf_counter
    loop = asyncio.get_running_loop()
    start = loop.time()
    scheduled = 0
    cursor = 0
    max_backlog = max(1, int(total_rate * MAX_BACKLOG_S))
    while not fleet.stopped:
        due = int((loop.time() - start) * total_rate) - scheduled
        if due > max_backlog:
            fleet.dropped += due - max_backlog
            scheduled += due - max_backlog
            cursor = (cursor + due - max_backlog) % n
            due = max_backlog
        scheduled += due
        ts = int(time.time() * 1000)
        for _ in range(due):
            i = cursor
            cursor = i + 1 if i + 1 < n else 0
            if dead[i]:
                continue
            la, lo = lat[i] + dlat[i] * step, lon[i] + dlon[i] * step
            if not south < la < north:
                dlat[i] = -dlat[i]
                la = lat[i]
            if not west < lo < east:
                dlon[i] = -dlon[i]
                lo = lon[i]
            lat[i], lon[i] = la, lo
            payload = dumps({"op": "location", "lat": la, "lon": lo, "acc": acc[i], "ts": ts})
            if watch and i in watch:
                watch[i][ts] = perf_counter()
            try:
                await conns[i].send(payload, text=True)
            except ConnectionClosed:
                dead[i] = True
                fleet.failed += 1
                continue
            last_ts[i] = ts
            fleet.sent += 1
        await asyncio.sleep(TICK_S)
