"""Broker over Redis: history in a stream per channel, live delivery by sharded pub/sub.

Key layout (``realtime.keys``; a channel's keys and shard channel share the hash tag ``{<channel>}``):

- ``ch:{c}:meta``  hash ``o`` (top offset), ``e`` (epoch); TTL = policy ``meta_ttl_ms``.
- ``ch:{c}:hist``  stream, entry id = offset, fields ``t`` (time ms), ``y`` (type), ``d`` (frame);
  trimmed to ``size`` (exact MAXLEN) and ``max_age_ms``; TTL = ``max_age_ms``.
- ``ch:{c}:live``  shard channel; message = ``b"<offset>|<epoch>|<time_ms>|<type>\\n" + frame``, so a
  receiving process builds its ``Publication`` without decoding (or re-encoding) the frame. An
  ephemeral publication is ``b"0||<time_ms>|<type>\\n" + frame`` (offset 0, empty epoch).

One Lua script per publish: create the meta with a new epoch if missing (deleting any stream left from
a lost epoch), HINCRBY the offset, assemble the frame from the parts encoded in Python, XADD, trim by
size and age, set TTLs, SPUBLISH. An ephemeral publish is a plain SPUBLISH on the same shard channel:
no script, no key read or written. Sharded pub/sub (Redis >= 7) routes a message to the node owning the
channel's slot, so Cluster does not broadcast every publication to every node; on one Redis it behaves
like PUBLISH. (Cluster needs a ``RedisCluster`` client's per-node pub/sub; this class is written and
tested against a single Redis.)

Subscriber: one pub/sub connection per broker, read by one task that feeds the ``DeliveryQueue``.
``subscribe`` returns once Redis confirmed the SSUBSCRIBE. When the connection drops, the broker (or
redis-py's own retry, when the client has one) reconnects, resubscribes every wanted channel, and once
Redis confirmed all of them queues a ``Resync`` naming them: what was published meanwhile is lost live
and must be recovered from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from realtime.broker import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_QUEUE_SIZE,
    EPHEMERAL_OFFSET,
    Broker,
    BrokerClosedError,
    Delivery,
    FrameParts,
    HistoryPolicy,
    Outgoing,
    Publication,
    Recovery,
    RecoveryFailure,
    StreamPosition,
    encode_ephemeral,
    encode_event,
    policy_for,
    validate_channel,
    validate_since,
)
from realtime.broker_queue import RECONNECT, DeliveryQueue
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import Keys
from realtime.lua import LuaScript
from realtime.redis_client import require_bytes_client

log = logging.getLogger(__name__)

# The scripts: realtime/lua/broker_*.lua. Each first makes sure the channel's meta exists (the prelude).
_ENSURE_META = LuaScript("realtime", "broker_ensure_meta")
_PUBLISH = LuaScript("realtime", "broker_publish", (_ENSURE_META,))
_POSITION = LuaScript("realtime", "broker_position", (_ENSURE_META,))
_RECOVER = LuaScript("realtime", "broker_recover", (_ENSURE_META,))

_RECONNECT_ERRORS = (RedisError, OSError)


PUBLISH_BATCH = 500
"""Most publish scripts sent in one pipeline by ``publish_many`` (bounds one request's size: a few
hundred KB of frames)."""


def _publication(
    channel: str, event_type: str, now: int, parts: FrameParts, offset: bytes | int, epoch: bytes
) -> Publication:
    """The publication of one publish script's reply ``(offset, epoch)``."""
    epoch_str = epoch.decode()
    return Publication(
        channel=channel,
        offset=int(offset),
        epoch=epoch_str,
        type=event_type,
        time_ms=now,
        frame=parts.assemble(int(offset), epoch_str),
    )


class RedisBroker(Broker):
    """A broker shared by every process on the same Redis and key prefix.

    ``redis``: a client with ``decode_responses=False`` (not closed by this class; configure
    ``health_check_interval`` or socket keepalive on it to detect silent connection loss).
    ``history``/``namespaces``: history policies (see ``MemoryBroker``). ``queue_size``: delivery
    queue bound. ``clock``: epoch ms, for publish time and history age (processes are assumed
    NTP-synchronised). ``subscribe_timeout_s``: how long ``subscribe`` waits for Redis to confirm.
    ``reconnect_delay_s``: first and largest pause between reconnection attempts (doubling).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        history: HistoryPolicy | None = None,
        namespaces: Mapping[str, HistoryPolicy] | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock: Clock = wall_clock_ms,
        subscribe_timeout_s: float = 5.0,
        reconnect_delay_s: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        """Raises ``ValueError`` for a client that decodes responses or ``queue_size`` < 1."""
        self._redis = require_bytes_client(redis)
        self._keys = keys
        self._default = history or HistoryPolicy()
        self._namespaces = dict(namespaces or {})
        self._queue = DeliveryQueue(queue_size)
        self._max_frame_bytes = max_frame_bytes
        self._clock = clock
        self._subscribe_timeout_s = subscribe_timeout_s
        self._reconnect_delay_s = reconnect_delay_s
        self._publish = _PUBLISH.register(redis)
        self._position = _POSITION.register(redis)
        self._recover = _RECOVER.register(redis)

        self._refs: dict[str, int] = {}  # local interests
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

    # --- publishing and history ----------------------------------------------------------------------

    async def publish(self, channel: str, event_type: str, data: Any) -> Publication:
        if self._closed:
            raise BrokerClosedError("broker closed")
        parts = encode_event(channel, event_type, data, self._max_frame_bytes)
        now = self._clock()
        offset, epoch = await self._publish(**self._script_call(channel, event_type, parts, now))
        return _publication(channel, event_type, now, parts, offset, epoch)

    async def publish_many(self, events: Sequence[Outgoing]) -> list[Publication]:
        if self._closed:
            raise BrokerClosedError("broker closed")
        encoded = [(e, encode_event(e.channel, e.type, e.data, self._max_frame_bytes)) for e in events]
        published: list[Publication] = []
        for start in range(0, len(encoded), PUBLISH_BATCH):
            chunk = encoded[start : start + PUBLISH_BATCH]
            now = self._clock()
            # One round trip for the chunk (plus redis-py's SCRIPT EXISTS check of the script): Redis
            # runs the scripts in the order sent, so offsets and live order are those of a loop of
            # publish() calls. Not a MULTI: other clients' commands may interleave, as they may
            # between separate publishes.
            async with self._redis.pipeline(transaction=False) as pipe:
                for event, parts in chunk:
                    await self._publish(
                        **self._script_call(event.channel, event.type, parts, now), client=pipe
                    )
                replies = await pipe.execute()
            published.extend(
                _publication(event.channel, event.type, now, parts, offset, epoch)
                for (event, parts), (offset, epoch) in zip(chunk, replies, strict=True)
            )
        return published

    def _script_call(self, channel: str, event_type: str, parts: FrameParts, now: int) -> dict[str, Any]:
        """The keys and arguments of the publish script for one encoded event."""
        policy = policy_for(channel, self._default, self._namespaces)
        return {
            "keys": [self._keys.broker_meta(channel), self._keys.broker_history(channel)],
            "args": [
                self._keys.broker_pubsub(channel),
                parts.head,
                parts.tail,
                event_type,
                now,
                policy.size,
                policy.max_age_ms,
                policy.meta_ttl_ms,
                secrets.token_hex(8),
            ],
        }

    async def publish_ephemeral(self, channel: str, event_type: str, data: Any) -> Publication:
        if self._closed:
            raise BrokerClosedError("broker closed")
        frame = encode_ephemeral(channel, event_type, data, self._max_frame_bytes)
        now = self._clock()
        # Only SPUBLISH: no key is written, so the channel's meta, history and TTLs stay as they are.
        # Redis runs commands in arrival order, so a publish awaited before this one (its script
        # SPUBLISHes) reaches every subscriber first, and one awaited after, after.
        header = b"%d||%d|%s\n" % (EPHEMERAL_OFFSET, now, event_type.encode())
        await self._redis.spublish(self._keys.broker_pubsub(channel), header + frame)
        return Publication(
            channel=channel,
            offset=EPHEMERAL_OFFSET,
            epoch="",
            type=event_type,
            time_ms=now,
            frame=frame,
        )

    async def position(self, channel: str) -> StreamPosition:
        validate_channel(channel)
        policy = policy_for(channel, self._default, self._namespaces)
        top, epoch = await self._position(
            keys=[self._keys.broker_meta(channel), self._keys.broker_history(channel)],
            args=[policy.meta_ttl_ms, secrets.token_hex(8)],
        )
        return StreamPosition(int(top), epoch.decode())

    async def recover(self, channel: str, since: StreamPosition) -> Recovery:
        validate_channel(channel)
        validate_since(since)
        policy = policy_for(channel, self._default, self._namespaces)
        reply = await self._recover(
            keys=[self._keys.broker_meta(channel), self._keys.broker_history(channel)],
            args=[
                since.offset,
                since.epoch,
                self._clock(),
                policy.max_age_ms,
                policy.meta_ttl_ms,
                secrets.token_hex(8),
            ],
        )
        ok, top, epoch_b, failure = reply[:4]
        epoch = epoch_b.decode()
        position = StreamPosition(int(top), epoch)
        if not ok:
            return Recovery(False, (), position, RecoveryFailure(failure.decode()))
        rows = reply[4:]
        publications = tuple(
            Publication(
                channel=channel,
                offset=int(rows[i]),
                epoch=epoch,
                type=rows[i + 2].decode(),
                time_ms=int(rows[i + 1]),
                frame=rows[i + 3],
            )
            for i in range(0, len(rows), 4)
        )
        return Recovery(True, publications, position)

    # --- subscriptions -------------------------------------------------------------------------------

    async def subscribe(self, channel: str) -> bool:
        validate_channel(channel)
        if self._closed:
            raise BrokerClosedError("broker closed")
        count = self._refs.get(channel, 0)
        self._refs[channel] = count + 1
        name = self._keys.broker_pubsub(channel).encode()
        if count == 0:
            self._names[name] = channel
            self._ready[channel] = asyncio.Event()
        ready = self._ready[channel]
        try:
            async with asyncio.timeout(self._subscribe_timeout_s):
                if count == 0:
                    await self._start()
                    await self._send_subscribe(name)
                await ready.wait()
            if self._closed:
                raise BrokerClosedError("broker closed")
        except BaseException:
            await self.unsubscribe(channel)
            raise
        return count == 0

    async def unsubscribe(self, channel: str) -> bool:
        count = self._refs.get(channel, 0)
        if count == 0:
            return False
        if count > 1:
            self._refs[channel] = count - 1
            return False
        del self._refs[channel]
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

    def subscriptions(self) -> dict[str, int]:
        return dict(self._refs)

    async def receive(self) -> Delivery:
        return await self._queue.get()

    @property
    def dropped(self) -> int:
        return self._queue.dropped

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
        for event in self._ready.values():
            event.clear()
        self._inflight = dict.fromkeys(names, 1)
        if not names:
            return
        self._resync_waiting = set(names)
        self._resync_channels = set(self._names.values())
        await pubsub.ssubscribe(*names)

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
        for event in self._ready.values():
            event.clear()
        self._inflight = {name: 1 if name in known else 0 for name in names}
        if not names:
            return
        self._resync_waiting = set(names)
        self._resync_channels = set(self._names.values())
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
