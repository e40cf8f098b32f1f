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
from realtime.presence import (
    Member,
    Presence,
    decode_info,
    encode_info,
    validate_member,
    validate_ttl,
)
from realtime.redis_client import require_bytes_client

# KEYS[1] = info, KEYS[2] = exp. Prune entries expired at `now` (score <= now) from both keys, and
# extend (never shorten) both keys' TTL.
_PRELUDE = """
local function prune(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  end
end
local function extend_ttl(ttl)
  for i = 1, 2 do
    if redis.call('PTTL', KEYS[i]) < tonumber(ttl) then
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
"""

# ARGV: now, expires_ms, key_ttl_ms, client id, info. Returns 1 if the client was not present.
_JOIN = (
    _PRELUDE
    + """
prune(ARGV[1])
local is_new = redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
extend_ttl(ARGV[3])
return is_new
"""
)

# ARGV: now, expires_ms, key_ttl_ms, client ids... Returns the ids that were not present.
_TOUCH = (
    _PRELUDE
    + """
prune(ARGV[1])
local missing = {}
local touched = 0
for i = 4, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    touched = touched + 1
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if touched > 0 then extend_ttl(ARGV[3]) end
return missing
"""
)

# ARGV: now, client id. Returns 1 if the client was present (not expired).
_LEAVE = """
local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[2])
if score and tonumber(score) > tonumber(ARGV[1]) then return 1 end
return 0
"""

# ARGV: now. Returns {client id, expires_ms, info}... for entries present at `now`.
_MEMBERS = """
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  local info = redis.call('HGET', KEYS[1], rows[i])
  if info then
    out[#out + 1] = rows[i]
    out[#out + 1] = rows[i + 1]
    out[#out + 1] = info
  end
end
return out
"""


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
        self._join = redis.register_script(_JOIN)
        self._touch = redis.register_script(_TOUCH)
        self._leave = redis.register_script(_LEAVE)
        self._members = redis.register_script(_MEMBERS)

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
