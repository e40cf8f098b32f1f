"""Broker over Redis: history in a stream per channel, live delivery by sharded pub/sub.

Key layout (``realtime.keys``; a channel's keys and shard channel share the hash tag ``{<channel>}``):

- ``ch:{c}:meta``  hash ``o`` (top offset), ``e`` (epoch); TTL = policy ``meta_ttl_ms``.
- ``ch:{c}:hist``  stream, entry id = offset, fields ``t`` (time ms), ``y`` (type), ``d`` (frame);
  trimmed to ``size`` (exact MAXLEN) and ``max_age_ms``; TTL = ``max_age_ms``.
- ``ch:{c}:keys``  sorted set, publication key -> offset, only for publications still in history
  (trimmed by every keyed publish to the oldest history entry); TTL = ``max_age_ms``; deleted with the
  history when the meta is lost.
- ``ch:{c}:live``  shard channel; message = ``b"<offset>|<epoch>|<time_ms>|<type>\\n" + frame``, so a
  receiving process builds its ``Publication`` without decoding (or re-encoding) the frame. An
  ephemeral publication is ``b"0||<time_ms>|<type>\\n" + frame`` (offset 0, empty epoch).

One Lua script per publish: create the meta with a new epoch if missing (deleting any stream and keys
left from a lost epoch), HINCRBY the offset, assemble the frame from the parts encoded in Python, XADD,
trim by size and age, set TTLs, SPUBLISH. With a publication key, the script first looks the key up
(ZSCORE, then the history entry it names: the entry is the proof that the publication is still
recoverable) and returns the stored publication instead when found. An ephemeral publish is a plain
SPUBLISH on the same shard channel: no script, no key read or written. Sharded pub/sub (Redis >= 7)
routes a message to the node owning the channel's slot, so Cluster does not broadcast every
publication to every node; on one Redis it behaves like PUBLISH. (Cluster needs a ``RedisCluster``
client's per-node pub/sub; this class is written and tested against a single Redis.)

Subscriber: ``realtime/broker_redis_live.py`` (the base class :class:`RedisLive`): one sharded pub/sub
connection per broker, reconnected with a ``Resync`` of every wanted channel.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from realtime.broker import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_QUEUE_SIZE,
    EPHEMERAL_OFFSET,
    Broker,
    BrokerClosedError,
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
    validate_key,
    validate_since,
)
from realtime.broker_redis_live import RedisLive
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import Keys
from realtime.lua import LuaScript
from realtime.redis_client import require_bytes_client

# The scripts: realtime/lua/broker_*.lua. Each first makes sure the channel's meta exists (the prelude).
_ENSURE_META = LuaScript("realtime", "broker_ensure_meta")
_PUBLISH = LuaScript("realtime", "broker_publish", (_ENSURE_META,))
_POSITION = LuaScript("realtime", "broker_position", (_ENSURE_META,))
_RECOVER = LuaScript("realtime", "broker_recover", (_ENSURE_META,))


PUBLISH_BATCH = 500
"""Most publish scripts sent in one pipeline by ``publish_many`` (bounds one request's size: a few
hundred KB of frames)."""


def _publication(channel: str, event_type: str, now: int, parts: FrameParts, reply: list[Any]) -> Publication:
    """The publication of one publish script's reply: ``(offset, epoch)`` for a new publication,
    ``(offset, epoch, time_ms, type, frame)`` for the earlier one its key named (returned as stored)."""
    offset, epoch = reply[0], reply[1]
    epoch_str = epoch.decode()
    if len(reply) > 2:
        return Publication(
            channel=channel,
            offset=int(offset),
            epoch=epoch_str,
            type=reply[3].decode(),
            time_ms=int(reply[2]),
            frame=reply[4],
        )
    return Publication(
        channel=channel,
        offset=int(offset),
        epoch=epoch_str,
        type=event_type,
        time_ms=now,
        frame=parts.assemble(int(offset), epoch_str),
    )


class RedisBroker(RedisLive, Broker):
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
        super().__init__(
            self._redis,
            keys,
            queue_size=queue_size,
            subscribe_timeout_s=subscribe_timeout_s,
            reconnect_delay_s=reconnect_delay_s,
        )
        self._default = history or HistoryPolicy()
        self._namespaces = dict(namespaces or {})
        self._max_frame_bytes = max_frame_bytes
        self._clock = clock
        self._publish = _PUBLISH.register(redis)
        self._position = _POSITION.register(redis)
        self._recover = _RECOVER.register(redis)

    # --- publishing and history ----------------------------------------------------------------------

    async def publish(
        self, channel: str, event_type: str, data: Any, *, key: str | None = None
    ) -> Publication:
        if self._closed:
            raise BrokerClosedError("broker closed")
        parts = encode_event(channel, event_type, data, self._max_frame_bytes)
        validate_key(key)
        now = self._clock()
        reply = await self._publish(**self._script_call(channel, event_type, parts, now, key))
        return _publication(channel, event_type, now, parts, reply)

    async def publish_many(self, events: Sequence[Outgoing]) -> list[Publication]:
        if self._closed:
            raise BrokerClosedError("broker closed")
        encoded = [
            (e, encode_event(e.channel, e.type, e.data, self._max_frame_bytes), validate_key(e.key))
            for e in events
        ]
        published: list[Publication] = []
        for start in range(0, len(encoded), PUBLISH_BATCH):
            chunk = encoded[start : start + PUBLISH_BATCH]
            now = self._clock()
            # One round trip for the chunk (plus redis-py's SCRIPT EXISTS check of the script): Redis
            # runs the scripts in the order sent, so offsets and live order are those of a loop of
            # publish() calls. Not a MULTI: other clients' commands may interleave, as they may
            # between separate publishes.
            async with self._redis.pipeline(transaction=False) as pipe:
                for event, parts, key in chunk:
                    await self._publish(
                        **self._script_call(event.channel, event.type, parts, now, key), client=pipe
                    )
                replies = await pipe.execute()
            published.extend(
                _publication(event.channel, event.type, now, parts, reply)
                for (event, parts, _), reply in zip(chunk, replies, strict=True)
            )
        return published

    def _script_call(
        self, channel: str, event_type: str, parts: FrameParts, now: int, key: str | None
    ) -> dict[str, Any]:
        """The keys and arguments of the publish script for one encoded event."""
        policy = policy_for(channel, self._default, self._namespaces)
        return {
            "keys": self._stream_keys(channel),
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
                key or "",
            ],
        }

    def _stream_keys(self, channel: str) -> list[str]:
        """KEYS of every broker script (the meta prelude may delete the history and the keys)."""
        keys = self._keys
        return [
            keys.broker_meta(channel),
            keys.broker_history(channel),
            keys.broker_publication_keys(channel),
        ]

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
            keys=self._stream_keys(channel),
            args=[policy.meta_ttl_ms, secrets.token_hex(8)],
        )
        return StreamPosition(int(top), epoch.decode())

    async def recover(self, channel: str, since: StreamPosition) -> Recovery:
        validate_channel(channel)
        validate_since(since)
        policy = policy_for(channel, self._default, self._namespaces)
        reply = await self._recover(
            keys=self._stream_keys(channel),
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
