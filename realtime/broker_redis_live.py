"""The live side of the Redis broker: subscriptions over one sharded pub/sub connection.

Subscriber: one pub/sub connection per broker, read by one task that feeds the ``DeliveryQueue``.
``subscribe`` returns once Redis confirmed the SSUBSCRIBE. When the connection drops, the broker (or
redis-py's own retry, when the client has one) reconnects, resubscribes every wanted channel, and once
Redis confirmed all of them queues a ``Resync`` naming them: what was published meanwhile is lost live
and must be recovered from history.

Live messages are ``b"<offset>|<epoch>|<time_ms>|<type>\\n" + frame`` (see ``realtime/broker_redis.py``).
:class:`RedisLive` is the base of :class:`~realtime.broker_redis.RedisBroker`, which adds publishing
and history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from realtime.broker import BrokerClosedError, Publication, validate_channel
from realtime.broker_queue import RECONNECT, LocalInterest
from realtime.keys import Keys

# The broker's logger, whichever of its modules logs (one name to configure and to filter on).
log = logging.getLogger("realtime.broker_redis")

_RECONNECT_ERRORS = (RedisError, OSError)


class RedisLive(LocalInterest):
    """Subscriptions, the delivery queue and the pub/sub connection of a
    :class:`~realtime.broker_redis.RedisBroker` (its constructor documents the arguments).

    Raises ``ValueError`` for ``queue_size`` < 1.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        queue_size: int,
        subscribe_timeout_s: float,
        reconnect_delay_s: tuple[float, float],
    ) -> None:
        super().__init__(queue_size)
        self._redis = redis
        self._keys = keys
        self._subscribe_timeout_s = subscribe_timeout_s
        self._reconnect_delay_s = reconnect_delay_s
        self._names: dict[bytes, str] = {}  # live channel name -> channel, for every wanted channel
        self._ready: dict[str, asyncio.Event] = {}  # set once Redis confirmed the subscription
        self._inflight: dict[bytes, int] = {}  # SSUBSCRIBEs sent and not yet confirmed
        self._resync_waiting: set[bytes] = set()  # confirmations awaited before the reconnect Resync
        self._resync_channels: set[str] = set()
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._lock = asyncio.Lock()  # orders pub/sub commands against a connection swap
        self._callback_reconnects = 0  # reconnections done by redis-py (seen by _on_reconnect)
        self._closed = False

    # --- subscriptions -------------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> bool:
        validate_channel(channel)
        if self._closed:
            raise BrokerClosedError("broker closed")
        first = self._want(channel)
        name = self._keys.broker_pubsub(channel).encode()
        if first:
            self._names[name] = channel
            self._ready[channel] = asyncio.Event()
        ready = self._ready[channel]
        try:
            async with asyncio.timeout(self._subscribe_timeout_s):
                if first:
                    await self._start()
                    await self._send_subscribe(name)
                await ready.wait()
            if self._closed:
                raise BrokerClosedError("broker closed")
        except BaseException:
            await self.unsubscribe(channel)
            raise
        return first

    async def unsubscribe(self, channel: str) -> bool:
        if not self._unwant(channel):
            return False
        self._ready.pop(channel, None)
        name = self._keys.broker_pubsub(channel).encode()
        self._names.pop(name, None)
        self._inflight.pop(name, None)
        async with self._lock:
            if self._pubsub is not None and self._connected.is_set():
                # A failure here is harmless: a reconnect only resubscribes wanted channels, and
                # publications of unwanted channels are ignored.
                with contextlib.suppress(*_RECONNECT_ERRORS):
                    await self._pubsub.sunsubscribe(name)
        return True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.close()
        for event in self._ready.values():
            event.set()  # wake subscribe() calls still waiting; they see the broker closed
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._close_pubsub(self._pubsub)
            self._pubsub = None
        self._refs.clear()
        self._names.clear()

    # --- the pub/sub connection ----------------------------------------------------------------------

    async def _start(self) -> None:
        """Open the pub/sub connection and the reader task on first use."""
        async with self._lock:
            if self._reader is not None:
                return
            self._pubsub = await self._open_pubsub(resubscribe=False)
            self._connected.set()
            self._reader = asyncio.create_task(self._read_loop(), name="redis-broker-reader")

    async def _send_subscribe(self, name: bytes) -> None:
        await self._connected.wait()
        async with self._lock:
            if self._pubsub is None or name not in self._names:
                return  # closed, or unsubscribed meanwhile
            self._inflight[name] = self._inflight.get(name, 0) + 1
            try:
                await self._pubsub.ssubscribe(name)
            except _RECONNECT_ERRORS:
                # The reader sees the broken connection too; its reconnect subscribes every wanted
                # channel, this one included, and the caller keeps waiting for the confirmation.
                log.debug("SSUBSCRIBE failed; the reconnect will subscribe", exc_info=True)

    async def _open_pubsub(self, *, resubscribe: bool) -> PubSub:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.connect()
            if resubscribe:
                await self._subscribe_all(pubsub)
        except BaseException:
            with contextlib.suppress(*_RECONNECT_ERRORS):
                await pubsub.aclose()
            raise
        assert pubsub.connection is not None
        # redis-py reconnects by itself when the client has a retry policy, resubscribing what it
        # knows; this callback makes such a reconnect visible here (Resync) and complete.
        pubsub.connection.register_connect_callback(self._on_reconnect)
        return pubsub

    async def _close_pubsub(self, pubsub: PubSub) -> None:
        # The connection goes back to the client's pool; our callback must not follow it there.
        if pubsub.connection is not None:
            pubsub.connection.deregister_connect_callback(self._on_reconnect)
        with contextlib.suppress(*_RECONNECT_ERRORS):
            await pubsub.aclose()

    async def _subscribe_all(self, pubsub: PubSub) -> None:
        """After a new connection: subscribe every wanted channel, and arrange for a Resync once all
        are confirmed."""
        names = list(self._names)
        if self._await_confirmations(dict.fromkeys(names, 1)):
            await pubsub.ssubscribe(*names)

    def _await_confirmations(self, inflight: dict[bytes, int]) -> bool:
        """On a new or re-established connection: every wanted channel is unconfirmed again
        (``inflight``: live channel name -> SSUBSCRIBEs now outstanding for it), and the Resync waits
        for all of them. Returns False when no channel is wanted (nothing to confirm)."""
        for event in self._ready.values():
            event.clear()
        self._inflight = inflight
        if not self._names:
            return False
        self._resync_waiting = set(self._names)
        self._resync_channels = set(self._names.values())
        return True

    async def _on_reconnect(self, connection: AbstractConnection) -> None:
        pubsub = self._pubsub
        if pubsub is None or pubsub.connection is not connection or self._closed:
            return
        self._callback_reconnects += 1
        log.warning("Redis pub/sub connection re-established; resubscribing and resyncing")
        # redis-py has just resubscribed the shard channels it knew; align them with ours.
        known = set(pubsub.shard_channels)
        stale = [name for name in known if name not in self._names]
        if stale:
            await pubsub.sunsubscribe(*stale)
        names = list(self._names)
        if not self._await_confirmations({name: 1 if name in known else 0 for name in names}):
            return
        missing = [name for name in names if name not in known]
        if missing:
            self._inflight.update(dict.fromkeys(missing, 1))
            await pubsub.ssubscribe(*missing)

    async def _reconnect(self) -> None:
        """Replace a broken pub/sub connection, retrying with backoff until it works or we close."""
        self._connected.clear()
        async with self._lock:
            old, self._pubsub = self._pubsub, None
        if old is not None:
            await self._close_pubsub(old)
        delay, max_delay = self._reconnect_delay_s
        while not self._closed:
            try:
                async with self._lock:
                    self._pubsub = await self._open_pubsub(resubscribe=True)
                self._connected.set()
                log.warning("Redis pub/sub reconnected; %d channels resubscribed", len(self._names))
                return
            except _RECONNECT_ERRORS as exc:
                log.warning("Redis pub/sub reconnect failed (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay)

    async def _read_loop(self) -> None:
        while not self._closed:
            pubsub = self._pubsub
            if pubsub is None:
                await self._reconnect()
                continue
            reconnects = self._callback_reconnects
            try:
                message = await pubsub.get_message(timeout=1.0)
            except _RECONNECT_ERRORS as exc:
                if self._closed:
                    return
                connection = pubsub.connection
                if (
                    reconnects != self._callback_reconnects
                    and connection is not None
                    and connection.is_connected
                ):
                    # redis-py reconnected and resubscribed (our callback ran) before giving up on
                    # the read that failed: the connection is usable, reopening it would be waste.
                    continue
                log.warning("Redis pub/sub connection lost (%s); reconnecting", exc)
                await self._reconnect()
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        name: bytes = message["channel"]
        if kind == "smessage":
            channel = self._names.get(name)
            if channel is not None:
                self._queue.offer(_parse_live(channel, message["data"]))
        elif kind == "ssubscribe":
            pending = self._inflight.get(name, 0) - 1
            if pending > 0:
                self._inflight[name] = pending
            else:
                self._inflight.pop(name, None)
                channel = self._names.get(name)
                if channel is not None:
                    self._ready[channel].set()
            if self._resync_waiting:
                self._resync_waiting.discard(name)
                if not self._resync_waiting:
                    wanted = self._resync_channels & set(self._refs)
                    self._resync_channels = set()
                    self._queue.resync(wanted, RECONNECT)


def _parse_live(channel: str, data: bytes) -> Publication:
    """Build a Publication from a live message ``b"<offset>|<epoch>|<time_ms>|<type>\\n" + frame``."""
    header, frame = data.split(b"\n", 1)
    offset, epoch, time_ms, event_type = header.split(b"|", 3)
    return Publication(
        channel=channel,
        offset=int(offset),
        epoch=epoch.decode(),
        type=event_type.decode(),
        time_ms=int(time_ms),
        frame=frame,
    )
