"""A connection's bounded send queue, with latest-wins coalescing (backpressure).

Frames wait here between the code that produces them (broker fan-out, replies) and the task that
writes them to the socket. Overflow policy: the queue holds at most ``max_frames`` frames and
``max_bytes`` bytes; a push beyond either fails, and the gateway then closes the connection with
``CloseCode.SLOW_CONSUMER`` (one stalled client must not hold memory or slow the others). Frames pushed
with a ``coalesce_key`` (a doctor's position on a channel) replace the queued frame with the same key
in place, so a slow reader gets the latest position rather than a backlog, and coalescing never
overflows.
"""

from __future__ import annotations

import asyncio
from collections import deque


class _Slot:
    """A queued frame that later frames with the same key may replace."""

    __slots__ = ("frame", "key")

    def __init__(self, key: str, frame: str) -> None:
        self.key = key
        self.frame = frame


class OutboxClosed(Exception):
    """``get`` on a closed outbox with nothing left."""


class Outbox:
    """FIFO of text frames for one connection. Not thread-safe; one event loop."""

    def __init__(self, max_frames: int = 1000, max_bytes: int = 1 << 20) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("outbox limits must be positive")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._queue: deque[str | _Slot] = deque()
        self._slots: dict[str, _Slot] = {}
        self._bytes = 0
        self._ready = asyncio.Event()
        self._closed = False
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """Bytes (characters) waiting."""
        return self._bytes

    def push(self, frame: str, coalesce_key: str | None = None) -> bool:
        """Queue ``frame``; returns False on overflow (nothing queued) or when closed."""
        if self._closed:
            return False
        if coalesce_key is not None:
            slot = self._slots.get(coalesce_key)
            if slot is not None:
                self._bytes += len(frame) - len(slot.frame)
                slot.frame = frame
                self.coalesced += 1
                return True
        if len(self._queue) >= self.max_frames or self._bytes + len(frame) > self.max_bytes:
            return False
        if coalesce_key is None:
            self._queue.append(frame)
        else:
            slot = _Slot(coalesce_key, frame)
            self._slots[coalesce_key] = slot
            self._queue.append(slot)
        self._bytes += len(frame)
        self._ready.set()
        return True

    async def get(self, max_batch: int = 256) -> list[str]:
        """Wait for frames and take up to ``max_batch`` of them, oldest first.

        Raises :class:`OutboxClosed` once closed and drained.
        """
        while not self._queue:
            if self._closed:
                raise OutboxClosed
            self._ready.clear()
            await self._ready.wait()
        batch: list[str] = []
        while self._queue and len(batch) < max_batch:
            item = self._queue.popleft()
            if isinstance(item, _Slot):
                del self._slots[item.key]
                item = item.frame
            self._bytes -= len(item)
            batch.append(item)
        return batch

    def close(self) -> None:
        """Refuse further pushes; ``get`` drains what is queued, then raises ``OutboxClosed``."""
        self._closed = True
        self._ready.set()
