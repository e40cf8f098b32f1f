"""In-process Broker: history in deques, delivery to this process's queue. Same contract and bounds as
``RedisBroker``; an instance is one "engine lifetime": a new instance means new epochs."""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
from realtime.broker_queue import LocalInterest
from realtime.clock import Clock, wall_clock_ms


@dataclass(slots=True)
class _Stream:
    epoch: str
    expires_ms: int  # the offset and epoch are forgotten at this time unless touched again
    offset: int = 0
    history: deque[Publication] = field(default_factory=deque)
    # Publication key -> its publication, in offset order; only publications still in ``history``
    # (trimmed with it on every append), so a new epoch (a new _Stream) forgets every key.
    keys: dict[str, Publication] = field(default_factory=dict)


class MemoryBroker(LocalInterest, Broker):
    """A broker for one process.

    ``history``: the default ``HistoryPolicy``; ``namespaces``: policies by channel namespace (e.g.
    ``{"map": HistoryPolicy(size=0)}``). ``queue_size``: delivery queue bound (items).
    ``max_frame_bytes``: largest event frame. ``clock``: epoch ms, for history age and meta TTL.
    """

    def __init__(
        self,
        *,
        history: HistoryPolicy | None = None,
        namespaces: Mapping[str, HistoryPolicy] | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """Raises ``ValueError`` when ``queue_size`` < 1."""
        super().__init__(queue_size)
        self._default = history or HistoryPolicy()
        self._namespaces = dict(namespaces or {})
        self._max_frame_bytes = max_frame_bytes
        self._clock = clock
        # Ordered by last touch, so that idle streams are swept from the front.
        self._streams: OrderedDict[str, _Stream] = OrderedDict()
        # Channel -> when its history has aged out (last publication + max_age), ordered by last
        # publication: an idle channel's history is released then, as Redis expires ``ch:{c}:hist``
        # (TTL max_age). Without it every finished call's channel held its events until the meta
        # TTL (a day): the soak's server grew ~5 KB per call (docs/benchmarks.md).
        self._aging: OrderedDict[str, int] = OrderedDict()
        self._closed = False

    async def publish(
        self, channel: str, event_type: str, data: Any, *, key: str | None = None
    ) -> Publication:
        if self._closed:
            raise BrokerClosedError("broker closed")
        parts = encode_event(channel, event_type, data, self._max_frame_bytes)
        return self._append(channel, event_type, parts, validate_key(key))

    async def publish_many(self, events: Sequence[Outgoing]) -> list[Publication]:
        if self._closed:
            raise BrokerClosedError("broker closed")
        encoded = [
            (e, encode_event(e.channel, e.type, e.data, self._max_frame_bytes), validate_key(e.key))
            for e in events
        ]
        return [self._append(e.channel, e.type, parts, key) for e, parts, key in encoded]

    def _append(self, channel: str, event_type: str, parts: FrameParts, key: str | None) -> Publication:
        """Give an encoded event its offset, keep it in history, queue it for local subscribers; or,
        when ``key`` names a publication still in history, return that one and do nothing else."""
        policy = policy_for(channel, self._default, self._namespaces)
        now = self._clock()
        stream = self._touch(channel, policy, now)
        if key is not None and (known := stream.keys.get(key)) is not None:
            self._trim_age(stream.history, now - policy.max_age_ms)
            if stream.history and stream.history[0].offset <= known.offset:
                return known  # offsets in history are contiguous: the publication is still there
        stream.offset += 1
        pub = Publication(
            channel=channel,
            offset=stream.offset,
            epoch=stream.epoch,
            type=event_type,
            time_ms=now,
            frame=parts.assemble(stream.offset, stream.epoch),
        )
        history = stream.history
        if policy.size:
            history.append(pub)
            while len(history) > policy.size:
                history.popleft()
            self._trim_age(history, now - policy.max_age_ms)
            if key is not None:
                stream.keys.pop(key, None)  # a forgotten entry must not keep its old place in the order
                stream.keys[key] = pub
            self._trim_keys(stream)
            self._aging[channel] = now + policy.max_age_ms
            self._aging.move_to_end(channel)
        else:
            history.clear()
            stream.keys.clear()
        if self._refs.get(channel):
            self._queue.offer(pub)
        return pub

    async def publish_ephemeral(self, channel: str, event_type: str, data: Any) -> Publication:
        if self._closed:
            raise BrokerClosedError("broker closed")
        frame = encode_ephemeral(channel, event_type, data, self._max_frame_bytes)
        # No stream is touched (created, counted or kept alive): ephemeral publications have no position.
        pub = Publication(
            channel=channel,
            offset=EPHEMERAL_OFFSET,
            epoch="",
            type=event_type,
            time_ms=self._clock(),
            frame=frame,
        )
        if self._refs.get(channel):
            self._queue.offer(pub)
        return pub

    async def position(self, channel: str) -> StreamPosition:
        validate_channel(channel)
        policy = policy_for(channel, self._default, self._namespaces)
        stream = self._touch(channel, policy, self._clock())
        return StreamPosition(stream.offset, stream.epoch)

    async def recover(self, channel: str, since: StreamPosition) -> Recovery:
        validate_channel(channel)
        validate_since(since)
        policy = policy_for(channel, self._default, self._namespaces)
        now = self._clock()
        stream = self._touch(channel, policy, now)
        top = StreamPosition(stream.offset, stream.epoch)
        if since.epoch != stream.epoch:
            return Recovery(False, (), top, RecoveryFailure.EPOCH_MISMATCH)
        if since.offset > stream.offset:
            return Recovery(False, (), top, RecoveryFailure.OFFSET_AHEAD)
        if since.offset == stream.offset:
            return Recovery(True, (), top)
        self._trim_age(stream.history, now - policy.max_age_ms)
        history = stream.history
        if not history or history[0].offset > since.offset + 1:
            return Recovery(False, (), top, RecoveryFailure.OFFSET_TOO_OLD)
        start = since.offset + 1 - history[0].offset
        return Recovery(True, tuple(history)[start:], top)

    async def subscribe(self, channel: str) -> bool:
        validate_channel(channel)
        if self._closed:
            raise BrokerClosedError("broker closed")
        return self._want(channel)

    async def unsubscribe(self, channel: str) -> bool:
        return self._unwant(channel)

    async def aclose(self) -> None:
        self._closed = True
        self._refs.clear()
        self._queue.close()

    def _touch(self, channel: str, policy: HistoryPolicy, now: int) -> _Stream:
        """The channel's stream, created with a new epoch if absent or idle past its meta TTL."""
        stream = self._streams.get(channel)
        if stream is None or stream.expires_ms <= now:
            stream = _Stream(epoch=secrets.token_hex(8), expires_ms=now + policy.meta_ttl_ms)
            self._streams[channel] = stream
        else:
            stream.expires_ms = now + policy.meta_ttl_ms
        self._streams.move_to_end(channel)
        self._sweep(now)
        return stream

    def _sweep(self, now: int) -> None:
        # Amortised O(1): only the least recently touched (published) streams are examined. A
        # namespace with a shorter max_age may wait behind a longer one: released late, never early.
        while self._aging:
            channel, until = next(iter(self._aging.items()))
            if until > now:
                break
            del self._aging[channel]
            if (aged := self._streams.get(channel)) is not None:
                aged.history.clear()
                aged.keys.clear()
        while self._streams:
            channel, oldest = next(iter(self._streams.items()))
            if oldest.expires_ms > now:
                return
            del self._streams[channel]

    @staticmethod
    def _trim_keys(stream: _Stream) -> None:
        # Keys are in offset order: drop those whose publication left history (amortised O(1)).
        keys, history = stream.keys, stream.history
        while keys:
            first = next(iter(keys))
            if history and keys[first].offset >= history[0].offset:
                return
            del keys[first]

    @staticmethod
    def _trim_age(history: deque[Publication], cutoff_ms: int) -> None:
        # A publication is recoverable while it is younger than max_age: time_ms > now - max_age.
        while history and history[0].time_ms <= cutoff_ms:
            history.popleft()
