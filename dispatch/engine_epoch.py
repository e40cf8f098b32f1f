"""EngineEpoch: the marker of the live engine's life, and the lock of the one process that rebuilds it.

The live engine (doctor states, positions, deadlines, broker history) is a cache of the database's
truth. It can be lost whole: a Redis restarted without persistence, a ``FLUSHDB``, another Redis
answering after a failover; for the memory engine, every process start. The epoch is a random hex
string written (``SET NX``) once the engine has been rebuilt from the database; its absence says the
engine is empty, a value other than the one a process last knew says the engine changed under it.
``dispatch/engine_watch.py`` reads it every half second in every process.

The contract (both implementations; ``tests/contract/test_engine_epoch.py``):

- :meth:`EngineEpoch.get` returns the epoch, ``None`` while there is none.
- :meth:`EngineEpoch.settle` writes a candidate only when there is no epoch (``SET NX``) and returns
  the epoch in force after the call (the candidate, or the one another process wrote first).
- :meth:`EngineEpoch.lock` takes the rebuild lock for ``lease_ms`` if nobody holds it (``SET NX PX``);
  :meth:`EngineEpoch.unlock` gives it back only if the token still holds it. The lease bounds how long
  a process that died while rebuilding keeps the others waiting.

Memory: the epoch lives as long as the process (and so as the memory engine): a fresh instance has
none, so the first check of a process always rebuilds (the embedded restart re-arms what was open).
"""

from __future__ import annotations

import abc
import secrets

import redis.asyncio as aioredis

from realtime.clock import Clock, wall_clock_ms
from realtime.keys import ENGINE_REBUILD_LOCK_MS, Keys


def new_epoch() -> str:
    """A fresh epoch: 16 random hex characters."""
    return secrets.token_hex(8)


def _text(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


class EngineEpoch(abc.ABC):
    """The engine's epoch and rebuild lock (see the module docstring). All methods are coroutines and
    raise the engine's errors (``redis.RedisError``, ``OSError``) while it is unreachable."""

    lease_ms: int = ENGINE_REBUILD_LOCK_MS

    @abc.abstractmethod
    async def get(self) -> str | None:
        """The epoch in force, ``None`` when the engine has none (empty, or never rebuilt)."""

    @abc.abstractmethod
    async def settle(self, candidate: str) -> str:
        """Write ``candidate`` unless an epoch exists; returns the epoch in force afterwards."""

    @abc.abstractmethod
    async def lock(self, token: str) -> bool:
        """Take the rebuild lock for :attr:`lease_ms` ms with ``token``; False when someone holds it."""

    @abc.abstractmethod
    async def unlock(self, token: str) -> None:
        """Give the rebuild lock back if ``token`` still holds it (else nothing)."""


class MemoryEngineEpoch(EngineEpoch):
    """The embedded engine's epoch: one per process (the memory engine's life). ``clock``: epoch ms,
    for the lock's lease."""

    def __init__(self, *, clock: Clock | None = None, lease_ms: int = ENGINE_REBUILD_LOCK_MS) -> None:
        self._clock: Clock = clock or wall_clock_ms
        self.lease_ms = lease_ms
        self._epoch: str | None = None
        self._lock: tuple[str, int] | None = None  # (token, lease end ms)

    async def get(self) -> str | None:
        """See :meth:`EngineEpoch.get`."""
        return self._epoch

    async def settle(self, candidate: str) -> str:
        """See :meth:`EngineEpoch.settle`."""
        if self._epoch is None:
            self._epoch = candidate
        return self._epoch

    async def lock(self, token: str) -> bool:
        """See :meth:`EngineEpoch.lock`."""
        now = self._clock()
        if self._lock is not None and self._lock[1] > now:
            return False
        self._lock = (token, now + self.lease_ms)
        return True

    async def unlock(self, token: str) -> None:
        """See :meth:`EngineEpoch.unlock`."""
        if self._lock is not None and self._lock[0] == token:
            self._lock = None

    def forget(self) -> None:
        """Tests: the engine "restarted" (the epoch and the lock are gone, as after a flush)."""
        self._epoch = None
        self._lock = None


class RedisEngineEpoch(EngineEpoch):
    """The scale-out engine's epoch: ``Keys.engine_epoch`` and ``Keys.engine_rebuild_lock`` in the
    shared Redis (single-key commands). The lease is Redis's own (``PX``), not a client clock."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, lease_ms: int = ENGINE_REBUILD_LOCK_MS) -> None:
        self._redis = redis
        self._epoch_key = keys.engine_epoch()
        self._lock_key = keys.engine_rebuild_lock()
        self.lease_ms = lease_ms

    async def get(self) -> str | None:
        """See :meth:`EngineEpoch.get`: one ``GET``."""
        return _text(await self._redis.get(self._epoch_key))

    async def settle(self, candidate: str) -> str:
        """See :meth:`EngineEpoch.settle`: ``SET NX``, then ``GET`` when another process won."""
        if await self._redis.set(self._epoch_key, candidate, nx=True):
            return candidate
        current = _text(await self._redis.get(self._epoch_key))
        # Deleted between the two commands (a second flush): ours is as good as any, write it.
        return current if current is not None else await self.settle(candidate)

    async def lock(self, token: str) -> bool:
        """See :meth:`EngineEpoch.lock`: ``SET NX PX``."""
        return bool(await self._redis.set(self._lock_key, token, nx=True, px=self.lease_ms))

    async def unlock(self, token: str) -> None:
        """See :meth:`EngineEpoch.unlock`. ``GET`` then ``DEL``: a lease that ended between the two and
        was taken by another process would lose its lock early, which costs at most a second rebuild
        (idempotent), so no script is spent on it."""
        if _text(await self._redis.get(self._lock_key)) == token:
            await self._redis.delete(self._lock_key)
