"""The broker's bounded delivery queue and its overflow policy (shared by both implementations).

Policy: a publication offered to a full queue is dropped (newest dropped) and its channel remembered;
the first time the consumer takes an item afterwards, one ``Resync`` naming every remembered channel is
queued behind what is already there. A ``Resync`` is never dropped: when the queue is full its
channels join the remembered set and go out with the next one. An ephemeral publication (offset 0)
offered to a full queue is dropped and counted too, but its channel is not remembered: there is nothing
in history to recover, so it causes no ``Resync``. The producer never waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable

from realtime.broker import BrokerClosedError, Delivery, Publication, Resync

OVERFLOW = "overflow"
RECONNECT = "reconnect"


class DeliveryQueue:
    """A bounded FIFO of deliveries with one consumer. ``maxsize`` >= 1 items."""

    def __init__(self, maxsize: int) -> None:
        """Raises ``ValueError`` when ``maxsize`` < 1."""
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self._maxsize = maxsize
        self._items: deque[Delivery] = deque()
        self._lost: set[str] = set()
        self._lost_reason = OVERFLOW
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def offer(self, publication: Publication) -> bool:
        """Queue ``publication``; returns False when it was dropped because the queue is full (a
        regular publication dropped leads to a ``Resync`` for its channel; an ephemeral one does not)."""
        if self._closed:
            return False
        if len(self._items) >= self._maxsize:
            self.dropped += 1
            if not publication.ephemeral:
                self._remember({publication.channel}, OVERFLOW)
            return False
        self._put(publication)
        return True

    def resync(self, channels: Iterable[str], reason: str) -> None:
        """Queue a ``Resync`` for ``channels`` (merged into the next one when the queue is full)."""
        names = set(channels)
        if self._closed or not names:
            return
        if len(self._items) >= self._maxsize:
            self._remember(names, reason)
            return
        self._put(Resync(frozenset(names), reason))

    async def get(self) -> Delivery:
        """The oldest item, waiting for one. Raises ``BrokerClosedError`` once closed."""
        while not self._items:
            if self._closed:
                raise BrokerClosedError("broker closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._items.popleft()
        if self._lost:
            # The slot just freed is where the news of the loss goes, behind what was queued before.
            lost, self._lost = self._lost, set()
            self._put(Resync(frozenset(lost), self._lost_reason))
        return item

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Drop queued items and wake the consumer, which then gets ``BrokerClosedError``."""
        self._closed = True
        self._items.clear()
        self._wakeup.set()

    def _put(self, item: Delivery) -> None:
        self._items.append(item)
        self._wakeup.set()

    def _remember(self, channels: set[str], reason: str) -> None:
        if not self._lost:
            self._lost_reason = reason
        elif reason not in self._lost_reason.split("+"):
            self._lost_reason = f"{self._lost_reason}+{reason}"
        self._lost |= channels


class LocalInterest:
    """What both brokers keep for this process's consumer: the channels it wants, counted (a channel is
    wanted from its first ``subscribe`` until the matching last ``unsubscribe``), and the delivery queue
    (``queue_size`` >= 1 items) it reads with ``receive``. Implements those parts of
    :class:`~realtime.broker.Broker`; the brokers add what reaching their channels takes.

    Raises ``ValueError`` for ``queue_size`` < 1.
    """

    def __init__(self, queue_size: int) -> None:
        self._queue = DeliveryQueue(queue_size)
        self._refs: dict[str, int] = {}

    def _want(self, channel: str) -> bool:
        """Count one more interest in ``channel``; True when it is the first."""
        count = self._refs.get(channel, 0)
        self._refs[channel] = count + 1
        return count == 0

    def _unwant(self, channel: str) -> bool:
        """Count one interest less; True when that was the last (False when there was none)."""
        count = self._refs.get(channel, 0)
        if count == 0:
            return False
        if count > 1:
            self._refs[channel] = count - 1
            return False
        del self._refs[channel]
        return True

    def subscriptions(self) -> dict[str, int]:
        return dict(self._refs)

    async def receive(self) -> Delivery:
        return await self._queue.get()

    @property
    def dropped(self) -> int:
        return self._queue.dropped
