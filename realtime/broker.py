"""Broker: publish events to channels, deliver them to subscribed processes, keep bounded history.

One broker per server process. Implementations: ``MemoryBroker`` (one process) and ``RedisBroker``
(many processes sharing Redis). The contract both keep:

**Publish.** ``publish(channel, event_type, data)`` gives the event the channel's next **offset**
(integers without gaps, starting at 1) within the channel's current **epoch** (an opaque string that
changes whenever the channel's history is lost: Redis flushed or the key expired, the memory broker
restarted). The event is encoded **once**, here, into the exact wire frame clients receive::

    {"op":"event","ch":"call:7","offset":42,"epoch":"9f1c...","type":"offer.created","data":{...}}

and the same bytes travel to history, to other processes and to every local subscriber
(``Publication.frame``). Offset assignment, history append, trimming, TTLs and the live fan-out are one
atomic step (one Lua script in Redis), so history order = offset order = live order.

**Idempotent publish (keys).** ``publish(channel, event_type, data, key="outbox:42")`` names the
publication. When a publication with the same ``key`` was already made on the same channel, in the
channel's current epoch, and **is still in the channel's history** (within ``size`` and younger than
``max_age_ms``: exactly as long as ``recover`` could return it), the broker publishes nothing (no
offset taken, no history entry, no live delivery) and returns *that* publication: same offset, epoch,
type, time and frame bytes (the stored ones; the new ``data`` is not looked at). Past that bound the
key is forgotten and the event is published anew (at-least-once; a client saw the first one only if
it was connected then, and can no longer recover it either). A lost epoch forgets every key with the
history; a channel without history (``size == 0``) remembers no key. The transactional outbox names
each row's publication (``key="outbox:<row id>"``), so a relay re-publishing a row after a crash
yields the row's one offset, not a second event. Keys are channel-local (the same key on two channels
names two publications). A key is 1..``MAX_KEY_CHARS`` characters.

**Batches.** ``publish_many(events)`` publishes a sequence of :class:`Outgoing` events exactly as
``publish`` would, one after another in the given order (offsets, history, live order per channel),
but the Redis broker sends them in one pipeline: one round trip for the batch instead of one per
event (an SOS reaches a few hundred doctors' channels at once). Every event is validated and encoded
before any is published, so a bad one publishes nothing. ``Outgoing.key`` works as ``publish``'s
``key``, in batch order (a second event with the key of an earlier one in the same batch returns the
earlier publication). A batch is not atomic: when Redis fails
during it, an unknown part of it may have been published (the error is raised).

**Ephemeral publications.** ``publish_ephemeral(channel, event_type, data)`` is for events where only
the latest matters (live doctor positions, many a second). Its frame has no offset and no epoch::

    {"op":"event","ch":"doctor:d1","type":"doctor.position","data":{...}}

and its ``Publication`` has ``offset == 0`` and ``epoch == ""`` (offset 0 means ephemeral: real offsets
start at 1). It takes no offset, is not kept in history, and leaves the channel's position, epoch and
meta untouched (in Redis it writes no key at all: one SPUBLISH). It is delivered live only, at most
once, to every process subscribed to the channel, through the same queue as regular publications and,
per channel, in publish order with the regular publications of the same publisher (calls awaited one
after another). Nothing recovers a missed ephemeral publication; the next one supersedes it.

**Subscribe.** The process calls ``subscribe(channel)`` once per local interest (reference-counted:
the broker subscribes to the channel when the count goes 0 -> 1 and drops it at 1 -> 0; extra
``unsubscribe`` calls are ignored). When ``subscribe`` returns, every later publication on the channel
reaches this process. Everything arrives through one bounded queue read with ``receive()``.

**Delivery guarantee.** Live delivery is *at most once*: a publication can be missed when the
delivery queue overflows or the connection to Redis drops. No regular publication is missed silently:
the broker then puts a :class:`Resync` for the affected channels in the queue, and offsets expose any
gap. Recovery is through history: ``recover(channel, since)`` returns exactly the publications after
``since`` (no gap, no duplicate) or says why it cannot. Ephemeral publications are the exception by
design: a lost one is gone (no ``Resync``, no gap, nothing in history).

**Ordering.** Per channel, publications arrive in offset order (ephemeral ones in publish order among
them, see above). Across channels there is no order.

**Overflow (backpressure).** The delivery queue holds ``queue_size`` items. When it is full, a new
publication is dropped (newest dropped; never block the Redis reader, which would make Redis buffer
and eventually disconnect us), counted in ``dropped``, and its channel is remembered; as soon as the
consumer takes an item, a ``Resync`` naming those channels is queued. The consumer then recovers each
session on those channels from its last offset, and skips any publication at or below it. An ephemeral
publication dropped this way is counted in ``dropped`` too, but causes no ``Resync`` (history has
nothing to recover; the next ephemeral publication replaces it).

**Bounds.** Per channel (``HistoryPolicy``): at most ``size`` publications, none older than
``max_age_ms``, and an idle channel's whole history is released ``max_age_ms`` after its last
publication (Redis: the history key's TTL; memory: swept), so finished calls' channels hold no
memory; the offset/epoch survive ``meta_ttl_ms`` of idleness. ``size == 0`` keeps no history
(offsets still count; recovery succeeds only from the current position). Publication keys are
remembered within the same bounds (no more than the history holds).

**Recipe for a session subscribing with ``since``:** ``subscribe`` first, then ``recover``; send the
recovered publications, then live ones with an offset above the last one sent (same epoch). Ephemeral
publications (offset 0) skip this bookkeeping: send them as they come (or coalesce, latest wins).
"""

from __future__ import annotations

import abc
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.keys import BROKER_HISTORY_MAX_AGE_MS, BROKER_HISTORY_SIZE, BROKER_META_TTL_MS

CHANNEL_RE = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")
"""Channel names: ``call:<id>``, ``doctor:<id>``, ``dispatch``, ``sos``, ``map:<h3 cell>``. No braces
(they are Redis Cluster hash tags), no spaces."""

EVENT_TYPE_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
"""Event types: ``offer.created``, ``call.status``, ``doctor.position``..."""

EPOCH_RE = re.compile(r"^[0-9a-f]{1,32}$")

DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_MAX_FRAME_BYTES = 64 * 1024
MAX_HISTORY_SIZE = 10_000
MAX_KEY_CHARS = 200
"""Longest publication key (``Broker.publish(key=...)``): bounds what the broker remembers per key."""
EPHEMERAL_OFFSET = 0
"""The offset of every ephemeral publication (``Broker.publish_ephemeral``); real offsets start at 1."""


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """History bounds of a channel.

    ``size``: publications kept (0..``MAX_HISTORY_SIZE``). ``max_age_ms``: older publications are not
    returned (nor kept). ``meta_ttl_ms``: how long an idle channel keeps its offset and epoch; must be
    >= ``max_age_ms`` (history never outlives its epoch). Raises ``ValueError`` when out of range.
    """

    size: int = BROKER_HISTORY_SIZE
    max_age_ms: int = BROKER_HISTORY_MAX_AGE_MS
    meta_ttl_ms: int = BROKER_META_TTL_MS

    def __post_init__(self) -> None:
        if not 0 <= self.size <= MAX_HISTORY_SIZE:
            raise ValueError(f"history size must be in 0..{MAX_HISTORY_SIZE}, got {self.size}")
        if self.max_age_ms < 1:
            raise ValueError(f"history max_age_ms must be >= 1, got {self.max_age_ms}")
        if self.meta_ttl_ms < self.max_age_ms:
            raise ValueError("history meta_ttl_ms must be >= max_age_ms")


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a channel's stream stands: the last offset (0 = nothing published in this epoch)."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event of a ``Broker.publish_many`` batch: ``data`` (anything orjson encodes) as an event of
    ``type`` on ``channel``; ``key``: the publication's idempotency key (``Broker.publish``), or None."""

    channel: str
    type: str
    data: Any
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """One published event. ``frame`` is the complete wire frame (orjson bytes) to send as is.

    ``offset``/``epoch``: position in the channel's stream (``EPHEMERAL_OFFSET`` (0) and ``""`` for an
    ephemeral publication, which has no position: its frame carries neither). ``type``: the event type
    (also inside the frame; here so that the gateway can coalesce without decoding). ``time_ms``:
    publish time (epoch ms, publisher's clock).
    """

    channel: str
    offset: int
    epoch: str
    type: str
    time_ms: int
    frame: bytes

    @property
    def position(self) -> StreamPosition:
        """This publication's position in its channel's stream."""
        return StreamPosition(self.offset, self.epoch)

    @property
    def ephemeral(self) -> bool:
        """True for a ``publish_ephemeral`` publication (``offset == 0``; not in any stream)."""
        return self.offset == EPHEMERAL_OFFSET

    def decode(self) -> dict[str, Any]:
        """The frame as a dict (for tests and logs; the hot path sends ``frame`` untouched)."""
        value: dict[str, Any] = orjson.loads(self.frame)
        return value


@dataclass(frozen=True, slots=True)
class Resync:
    """Live publications of ``channels`` may have been missed (queue overflow or a lost Redis
    connection, see ``reason``): recover every local session on them from its last offset."""

    channels: frozenset[str]
    reason: str


Delivery = Publication | Resync
"""What ``Broker.receive`` returns."""


class RecoveryFailure(enum.StrEnum):
    """Why ``recover`` could not return the missed publications."""

    EPOCH_MISMATCH = "epoch_mismatch"  # history was lost since (new epoch)
    OFFSET_TOO_OLD = "offset_too_old"  # some publications after the offset left history (size or age)
    OFFSET_AHEAD = "offset_ahead"  # the offset is beyond the channel's position (a client bug)


@dataclass(frozen=True, slots=True)
class Recovery:
    """Result of ``recover``.

    ``recovered``: True when ``publications`` are exactly those after ``since`` (possibly none).
    ``position``: the channel's position when history was read (after a successful recovery, the
    last recovered offset or ``since`` itself). ``failure``: the reason when not recovered; the client
    must then re-read state (REST) and continue from ``position``.
    """

    recovered: bool
    publications: tuple[Publication, ...]
    position: StreamPosition
    failure: RecoveryFailure | None = None


class BrokerClosedError(RuntimeError):
    """The broker was closed; ``receive`` and ``publish`` raise it."""


class Broker(abc.ABC):
    """Publish / subscribe with per-channel history. See the module docstring for the contract."""

    @abc.abstractmethod
    async def publish(
        self, channel: str, event_type: str, data: Any, *, key: str | None = None
    ) -> Publication:
        """Publish ``data`` (anything orjson encodes) as an event of ``event_type`` on ``channel``.

        Returns the publication with its offset, epoch and frame. ``key``: when a publication with
        this key is still in the channel's history (current epoch), nothing is published and that
        publication is returned (see "Idempotent publish" in the module docstring). Raises
        ``ValueError`` for a bad channel, type or key or a frame over ``max_frame_bytes``,
        ``TypeError`` when orjson cannot encode ``data``, ``BrokerClosedError`` after ``aclose``, and
        Redis errors when Redis is unreachable (then nothing was published).
        """

    @abc.abstractmethod
    async def publish_many(self, events: Sequence[Outgoing]) -> list[Publication]:
        """Publish ``events`` in order, as consecutive ``publish`` calls would (see "Batches" in the
        module docstring); returns their publications in the same order. Raises ``ValueError`` /
        ``TypeError`` like ``publish`` before anything is published, ``BrokerClosedError`` after
        ``aclose``, and Redis errors when Redis fails (an unknown part of the batch may then have been
        published).
        """

    @abc.abstractmethod
    async def publish_ephemeral(self, channel: str, event_type: str, data: Any) -> Publication:
        """Publish ``data`` as a live-only event of ``event_type`` on ``channel`` (see the module
        docstring): frame without offset and epoch, ``offset == 0``, ``epoch == ""``, no history, the
        channel's position unchanged. Delivered at most once; a delivery queue overflow drops it
        without a ``Resync``. Raises like ``publish`` (the frame itself must fit ``max_frame_bytes``).
        """

    @abc.abstractmethod
    async def position(self, channel: str) -> StreamPosition:
        """The channel's current position. Fixes the epoch of a channel never published to, so a
        subscriber can recover from offset 0 later. Raises ``ValueError`` for a bad channel."""

    @abc.abstractmethod
    async def recover(self, channel: str, since: StreamPosition) -> Recovery:
        """The publications after ``since`` from history, atomically checked against the epoch and the
        bounds. Raises ``ValueError`` for a bad channel or a negative offset."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> bool:
        """Add one local interest in ``channel``; returns True when this was the first one (the
        process now receives the channel). On return, every later publication is delivered (at most
        once). Raises ``ValueError``, ``BrokerClosedError``, and for Redis ``TimeoutError`` or a Redis
        connection error when the subscription could not be confirmed (the interest is then not held).
        """

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> bool:
        """Drop one local interest; returns True when it was the last (the channel is no longer
        received). Unsubscribing a channel without interest is a no-op returning False."""

    @abc.abstractmethod
    def subscriptions(self) -> dict[str, int]:
        """A copy of the local interests: channel -> reference count."""

    @abc.abstractmethod
    async def receive(self) -> Delivery:
        """The next delivery (a ``Publication`` of a subscribed channel, or a ``Resync``), waiting for
        one. Raises ``BrokerClosedError`` once the broker is closed."""

    @property
    @abc.abstractmethod
    def dropped(self) -> int:
        """How many publications the delivery queue dropped because it was full."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop delivering, wake ``receive`` with ``BrokerClosedError``, release connections (not the
        shared Redis client). Idempotent."""


def validate_channel(channel: str) -> str:
    """Return ``channel`` if it matches ``CHANNEL_RE``; raise ``ValueError`` otherwise."""
    if not isinstance(channel, str) or not CHANNEL_RE.match(channel):
        raise ValueError(f"invalid channel name {channel!r}")
    return channel


def validate_key(key: str | None) -> str | None:
    """Return ``key`` if it is None or a string of 1..``MAX_KEY_CHARS`` characters; raise
    ``ValueError`` otherwise."""
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS):
        raise ValueError(f"invalid publication key {key!r}")
    return key


def validate_since(since: StreamPosition) -> None:
    """A recovery position has a non-negative offset. Raises ``ValueError``."""
    if since.offset < 0:
        raise ValueError(f"offset must be >= 0, got {since.offset}")


def policy_for(
    channel: str, default: HistoryPolicy, namespaces: Mapping[str, HistoryPolicy]
) -> HistoryPolicy:
    """The history policy of ``channel``: by its namespace (the part before the first ``:``, e.g.
    ``map`` for ``map:8a1f...``) when configured, else ``default``."""
    namespace = channel.split(":", 1)[0]
    return namespaces.get(namespace, default)


@dataclass(frozen=True, slots=True)
class FrameParts:
    """An event frame encoded once, minus the offset and epoch that the broker assigns.

    The frame is ``head + str(offset) + ',"epoch":"' + epoch + '"' + tail``; the Redis publish script
    assembles the same bytes in Lua (epochs are hex, so they need no JSON escaping).
    """

    head: bytes
    tail: bytes

    def assemble(self, offset: int, epoch: str) -> bytes:
        """The complete frame for ``offset`` and ``epoch``."""
        return b"".join((self.head, str(offset).encode(), b',"epoch":"', epoch.encode(), b'"', self.tail))


def _encode_body(channel: str, event_type: str, data: Any) -> tuple[bytes, bytes]:
    """Validate and encode what every event frame has: ``{"op":"event","ch":<ch>`` and
    ``,"type":<type>,"data":<data>}``."""
    validate_channel(channel)
    if not isinstance(event_type, str) or not EVENT_TYPE_RE.match(event_type):
        raise ValueError(f"invalid event type {event_type!r}")
    start = b'{"op":"event","ch":' + orjson.dumps(channel)
    tail = b',"type":' + orjson.dumps(event_type) + b',"data":' + orjson.dumps(data) + b"}"
    return start, tail


def encode_event(channel: str, event_type: str, data: Any, max_frame_bytes: int) -> FrameParts:
    """Encode an event once. Raises ``ValueError`` for a bad channel or type or a frame larger than
    ``max_frame_bytes`` (counted without offset and epoch), ``TypeError`` if orjson cannot encode."""
    start, tail = _encode_body(channel, event_type, data)
    head = start + b',"offset":'
    if len(head) + len(tail) > max_frame_bytes:
        raise ValueError(f"event frame exceeds {max_frame_bytes} bytes")
    return FrameParts(head=head, tail=tail)


def encode_ephemeral(channel: str, event_type: str, data: Any, max_frame_bytes: int) -> bytes:
    """Encode an ephemeral event once: the complete frame ``{"op":"event","ch":..,"type":..,"data":..}``
    (no offset, no epoch). Raises like ``encode_event``; the limit applies to the whole frame."""
    start, tail = _encode_body(channel, event_type, data)
    frame = start + tail
    if len(frame) > max_frame_bytes:
        raise ValueError(f"event frame exceeds {max_frame_bytes} bytes")
    return frame
