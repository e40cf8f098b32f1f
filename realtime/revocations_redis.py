"""Revocations in Redis, shared by every process: one string per user (``realtime.keys``
``rev:<user>``) holding the lowest accepted token version, written by one script that merges by
maximum and refreshes the TTL (``realtime/lua/revocations_raise.lua``)."""

from __future__ import annotations

import redis.asyncio as aioredis

from realtime.keys import REVOCATION_TTL_MS, Keys
from realtime.lua import LuaScript
from realtime.redis_client import require_bytes_client
from realtime.revocations import Revocations, check_args

_RAISE = LuaScript("realtime", "revocations_raise")


class RedisRevocations(Revocations):
    """Revocations on ``redis`` (a bytes client) under ``keys``' prefix; entries live ``ttl_ms``
    from their last write (Redis's own clock)."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, ttl_ms: int = REVOCATION_TTL_MS) -> None:
        """Raises ``ValueError`` for a client that decodes responses or ``ttl_ms`` < 1."""
        if ttl_ms < 1:
            raise ValueError("ttl_ms must be >= 1")
        self._redis = require_bytes_client(redis)
        self._keys = keys
        self.ttl_ms = ttl_ms
        self._raise = _RAISE.register(redis)

    async def valid_from(self, user_id: str) -> int | None:
        check_args(user_id)
        value = await self._redis.get(self._keys.revocation(user_id))
        return None if value is None else int(value)

    async def raise_to(self, user_id: str, version: int) -> int:
        check_args(user_id, version)
        held = await self._raise(keys=[self._keys.revocation(user_id)], args=[str(version), self.ttl_ms])
        return int(held)
