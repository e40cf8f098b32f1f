"""In-process Deadlines: a dict of entries plus a min-heap of visibility times (one process only)."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from dispatch.deadlines import (
    DEFAULT_LEASE_MS,
    Claim,
    Deadline,
    Deadlines,
    validate_claim,
    validate_key,
    validate_lease,
    validate_schedule,
)


@dataclass(slots=True)
class _Entry:
    due_ms: int
    visible_ms: int  # due time, or lease end while claimed
    attempt: int
    token: int
    payload: bytes


class MemoryDeadlines(Deadlines):
    """Deadlines held by this process. Same semantics and limits as ``RedisDeadlines``; entries die with
    the process.

    The heap holds ``(visible_ms, key, token)``; an item is stale once its entry was rescheduled,
    claimed, completed or cancelled (the token no longer matches) and is skipped lazily, so every
    operation is O(log n) amortised. No method awaits, so each one is atomic on the event loop: two
    tasks claiming concurrently never get the same entry.
    """

    def __init__(self, *, lease_ms: int = DEFAULT_LEASE_MS) -> None:
        """``lease_ms``: how long a claim hides an entry (ms)."""
        self.lease_ms = validate_lease(lease_ms)
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[int, str, int]] = []
        self._tokens = itertools.count(1)

    async def schedule(self, key: str, due_ms: int, payload: bytes = b"") -> bool:
        data = validate_schedule(key, due_ms, payload)
        token = next(self._tokens)
        is_new = key not in self._entries
        self._entries[key] = _Entry(due_ms=due_ms, visible_ms=due_ms, attempt=0, token=token, payload=data)
        heapq.heappush(self._heap, (due_ms, key, token))
        self._compact()
        return is_new

    async def cancel(self, key: str) -> bool:
        validate_key(key)
        return self._entries.pop(key, None) is not None

    async def get(self, key: str) -> Deadline | None:
        validate_key(key)
        entry = self._entries.get(key)
        if entry is None:
            return None
        return Deadline(
            key=key,
            due_ms=entry.due_ms,
            payload=entry.payload,
            attempt=entry.attempt,
            claimed_until_ms=entry.visible_ms if entry.attempt else None,
        )

    async def claim_due(self, now_ms: int, limit: int = 100) -> list[Claim]:
        validate_claim(now_ms, limit)
        claimed: list[Claim] = []
        # Re-pushed items go to a side list so an entry claimed now is not seen again in this call
        # (a lease of 0 ms cannot happen, but a lapsed lease should only be re-claimed next call).
        requeue: list[tuple[int, str, int]] = []
        lease_until = now_ms + self.lease_ms
        while self._heap and len(claimed) < limit and self._heap[0][0] <= now_ms:
            visible_ms, key, token = heapq.heappop(self._heap)
            entry = self._entries.get(key)
            if entry is None or entry.token != token or entry.visible_ms != visible_ms:
                continue  # stale heap item
            entry.attempt += 1
            entry.token = next(self._tokens)
            entry.visible_ms = lease_until
            requeue.append((lease_until, key, entry.token))
            claimed.append(
                Claim(
                    key=key,
                    due_ms=entry.due_ms,
                    payload=entry.payload,
                    attempt=entry.attempt,
                    token=entry.token,
                    lease_until_ms=lease_until,
                )
            )
        for item in requeue:
            heapq.heappush(self._heap, item)
        return claimed

    async def complete(self, claim: Claim) -> bool:
        entry = self._entries.get(claim.key)
        if entry is None or entry.token != claim.token:
            return False
        del self._entries[claim.key]
        return True

    async def next_due_ms(self) -> int | None:
        while self._heap:
            visible_ms, key, token = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry.token == token and entry.visible_ms == visible_ms:
                return visible_ms
            heapq.heappop(self._heap)
        return None

    async def count(self) -> int:
        return len(self._entries)

    def _compact(self) -> None:
        # Reschedules and cancels leave stale heap items behind; rebuild when they dominate so memory
        # stays proportional to the live entries.
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._entries):
            self._heap = [(e.visible_ms, k, e.token) for k, e in self._entries.items()]
            heapq.heapify(self._heap)
