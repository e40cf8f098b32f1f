"""Revocations in one process's memory (the embedded deployment), with the Redis role's contract."""

from __future__ import annotations

from realtime.clock import Clock, wall_clock_ms
from realtime.keys import REVOCATION_TTL_MS
from realtime.revocations import Revocations, check_args

PURGE_EVERY_WRITES = 1024
"""Expired entries are dropped every this many writes (reads skip them meanwhile)."""


class MemoryRevocations(Revocations):
    """A dict ``user -> (version, expires_ms)``; ``clock`` gives epoch ms."""

    def __init__(self, *, ttl_ms: int = REVOCATION_TTL_MS, clock: Clock = wall_clock_ms) -> None:
        """Raises ``ValueError`` for ``ttl_ms`` < 1."""
        if ttl_ms < 1:
            raise ValueError("ttl_ms must be >= 1")
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._entries: dict[str, tuple[int, int]] = {}
        self._writes = 0

    async def valid_from(self, user_id: str) -> int | None:
        check_args(user_id)
        entry = self._entries.get(user_id)
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    async def raise_to(self, user_id: str, version: int) -> int:
        check_args(user_id, version)
        now = self._clock()
        entry = self._entries.get(user_id)
        if entry is not None and entry[1] > now and entry[0] > version:
            version = entry[0]
        self._entries[user_id] = (version, now + self.ttl_ms)
        self._writes += 1
        if self._writes % PURGE_EVERY_WRITES == 0:
            self._entries = {u: e for u, e in self._entries.items() if e[1] > now}
        return version

    def clear(self) -> None:
        """Forget every entry (tests: the engine lost)."""
        self._entries.clear()
