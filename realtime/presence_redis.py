"""Presence in Redis, shared by every process: per channel a hash of infos and a sorted set of expiries.

Keys (``realtime.keys``, one hash tag per channel): ``pr:{c}:info`` hash client id -> info (orjson),
``pr:{c}:exp`` sorted set client id -> expiry (epoch ms). Every write is one Lua script that first
prunes expired entries from both keys, then extends both keys' TTL to ``ttl_ms`` +
``PRESENCE_KEY_SLACK_MS`` (never shortening it). Reads filter on the expiry score, so an entry is gone
at its expiry even before anyone prunes it; the key TTL removes a channel whose every process died.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis

from realtime.broker import validate_channel
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import PRESENCE_KEY_SLACK_MS, PRESENCE_TTL_MS, Keys
from realtime.lua import LuaScript
from realtime.presence import (
    Member,
    Presence,
    decode_info,
    encode_info,
    validate_member,
    validate_ttl,
)
from realtime.redis_client import require_bytes_client

# The scripts: realtime/lua/presence_*.lua. Every write first prunes expired entries (the prelude).
_PRELUDE = LuaScript("realtime", "presence_prelude")
_JOIN = LuaScript("realtime", "presence_join", (_PRELUDE,))
_TOUCH = LuaScript("realtime", "presence_touch", (_PRELUDE,))
_LEAVE = LuaScript("realtime", "presence_leave")
_MEMBERS = LuaScript("realtime", "presence_members")


class RedisPresence(Presence):
    """Presence shared by every process on the same Redis and key prefix.

    ``ttl_ms``: entry lifetime without a touch (ms); ``clock``: epoch ms (processes are assumed
    NTP-synchronised; ``PRESENCE_KEY_SLACK_MS`` covers their skew in key TTLs).
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        ttl_ms: int = PRESENCE_TTL_MS,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """Raises ``ValueError`` for a client that decodes responses or ``ttl_ms`` < 1."""
        self._redis = require_bytes_client(redis)
        self._keys = keys
        self.ttl_ms = validate_ttl(ttl_ms)
        self._clock = clock
        self._join = _JOIN.register(redis)
        self._touch = _TOUCH.register(redis)
        self._leave = _LEAVE.register(redis)
        self._members = _MEMBERS.register(redis)

    def _pair(self, channel: str) -> list[str]:
        return [self._keys.presence_info(channel), self._keys.presence_expiry(channel)]

    async def join(self, channel: str, client_id: str, info: Mapping[str, Any]) -> bool:
        validate_member(channel, client_id)
        data = encode_info(info)
        now = self._clock()
        added = await self._join(
            keys=self._pair(channel),
            args=[now, now + self.ttl_ms, self.ttl_ms + PRESENCE_KEY_SLACK_MS, client_id, data],
        )
        return bool(added)

    async def touch(self, channel: str, client_ids: Iterable[str]) -> frozenset[str]:
        validate_channel(channel)
        ids = list(client_ids)
        if not ids:
            return frozenset()
        now = self._clock()
        missing = await self._touch(
            keys=self._pair(channel),
            args=[now, now + self.ttl_ms, self.ttl_ms + PRESENCE_KEY_SLACK_MS, *ids],
        )
        return frozenset(m.decode() for m in missing)

    async def leave(self, channel: str, client_id: str) -> bool:
        validate_member(channel, client_id)
        return bool(await self._leave(keys=self._pair(channel), args=[self._clock(), client_id]))

    async def members(self, channel: str) -> dict[str, Member]:
        validate_channel(channel)
        rows = await self._members(keys=self._pair(channel), args=[self._clock()])
        result: dict[str, Member] = {}
        for i in range(0, len(rows), 3):
            client_id = rows[i].decode()
            result[client_id] = Member(client_id, decode_info(rows[i + 2]), int(float(rows[i + 1])))
        return result

    async def count(self, channel: str) -> int:
        validate_channel(channel)
        return int(await self._redis.zcount(self._keys.presence_expiry(channel), f"({self._clock()}", "+inf"))
