"""Deadlines in Redis: one sorted set per queue, claimed atomically by a Lua script.

Key layout (``realtime.keys``, all under the hash tag ``{<queue>}`` so every script runs in one Cluster
slot):

- ``due``     sorted set, member = key, score = epoch ms when it may next be claimed (the due time, or
  the lease end while claimed);
- ``meta``    hash, key -> ``"<due_ms>:<attempt>:<token>"``;
- ``payload`` hash, key -> payload bytes (kept apart from ``meta`` so a claim never rewrites it);
- ``seq``     counter for claim tokens.

Every write extends the four keys' TTL to the latest visibility time plus ``DEADLINES_IDLE_TTL_MS``
(measured with Redis ``TIME``), never shortening it: a live queue never expires, an abandoned one does.
"""

from __future__ import annotations

import redis.asyncio as aioredis

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
from realtime.keys import DEADLINES_IDLE_TTL_MS, Keys
from realtime.redis_client import require_bytes_client

# Shared Lua prelude: extend (never shorten) the TTL of every key in KEYS to reach `until_ms` (epoch ms,
# caller's clock) + idle TTL, measured from Redis TIME.
_EXTEND_TTL = """
local function extend_ttl(until_ms, idle_ms)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = math.max(until_ms - now_ms, 0) + idle_ms
  for i = 1, #KEYS do
    if redis.call('PTTL', KEYS[i]) < ttl then
      redis.call('PEXPIRE', KEYS[i], math.floor(ttl))
    end
  end
end
"""

# KEYS: due, meta, payload, seq. ARGV: key, due_ms, payload, idle_ttl_ms. Returns 1 if the key was new.
_SCHEDULE = (
    _EXTEND_TTL
    + """
local token = redis.call('INCR', KEYS[4])
local is_new = redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':0:' .. token)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
extend_ttl(tonumber(ARGV[2]), tonumber(ARGV[4]))
return is_new
"""
)

# KEYS: due, meta, payload, seq. ARGV: now_ms, limit, lease_until_ms, idle_ttl_ms.
# Returns a list of {key, due_ms, attempt, token, payload}. The read of due members and their move past
# the lease end happen in one script, which is what makes a claim exclusive across processes.
_CLAIM = (
    _EXTEND_TTL
    + """
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, k in ipairs(members) do
  local meta = redis.call('HGET', KEYS[2], k)
  if meta then
    local due, attempt = string.match(meta, '^(%d+):(%d+):')
    attempt = tonumber(attempt) + 1
    local token = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[2], k, due .. ':' .. attempt .. ':' .. token)
    redis.call('ZADD', KEYS[1], ARGV[3], k)
    out[#out + 1] = {k, due, attempt, token, redis.call('HGET', KEYS[3], k)}
  else
    -- a member without meta cannot be produced by this module; drop it rather than loop on it
    redis.call('ZREM', KEYS[1], k)
  end
end
if #out > 0 then
  extend_ttl(tonumber(ARGV[3]), tonumber(ARGV[4]))
end
return out
"""
)

# KEYS: due, meta, payload. ARGV: key, token. Returns 1 if this claim was current and is now removed.
_COMPLETE = """
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if not meta or string.match(meta, ':(%d+)$') ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""

# KEYS: due, meta, payload. ARGV: key. Returns 1 if the key existed.
_CANCEL = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return removed
"""

# KEYS: due, meta, payload. ARGV: key. Returns {meta, payload, visible_ms} or nil, read in one step.
_GET = """
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if not meta then
  return nil
end
return {meta, redis.call('HGET', KEYS[3], ARGV[1]), redis.call('ZSCORE', KEYS[1], ARGV[1])}
"""


class RedisDeadlines(Deadlines):
    """Deadlines shared by every process using the same Redis and queue name.

    ``queue`` names an independent set of entries (e.g. ``"offers"``, ``"sos"``); one queue lives in
    one Cluster slot. ``lease_ms`` (ms) must agree between processes sharing a queue only in the sense
    that each claimer's own lease applies to its own claims.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        queue: str = "offers",
        lease_ms: int = DEFAULT_LEASE_MS,
        idle_ttl_ms: int = DEADLINES_IDLE_TTL_MS,
    ) -> None:
        """Raises ``ValueError`` for a client that decodes responses, a queue name with braces, or a
        non-positive lease."""
        if not queue or "{" in queue or "}" in queue:
            raise ValueError(f"queue must be non-empty without braces, got {queue!r}")
        self._redis = require_bytes_client(redis)
        self.lease_ms = validate_lease(lease_ms)
        self._idle_ttl_ms = idle_ttl_ms
        self._keys4 = [
            keys.deadlines_due(queue),
            keys.deadlines_meta(queue),
            keys.deadlines_payload(queue),
            keys.deadlines_seq(queue),
        ]
        self._keys3 = self._keys4[:3]
        self._schedule = redis.register_script(_SCHEDULE)
        self._claim = redis.register_script(_CLAIM)
        self._complete = redis.register_script(_COMPLETE)
        self._cancel = redis.register_script(_CANCEL)
        self._get = redis.register_script(_GET)

    async def schedule(self, key: str, due_ms: int, payload: bytes = b"") -> bool:
        data = validate_schedule(key, due_ms, payload)
        added = await self._schedule(keys=self._keys4, args=[key, due_ms, data, self._idle_ttl_ms])
        return bool(added)

    async def cancel(self, key: str) -> bool:
        validate_key(key)
        return bool(await self._cancel(keys=self._keys3, args=[key]))

    async def get(self, key: str) -> Deadline | None:
        validate_key(key)
        reply = await self._get(keys=self._keys3, args=[key])
        if reply is None:
            return None
        meta, payload, visible = reply
        due_ms, attempt, _token = (int(part) for part in meta.split(b":"))
        return Deadline(
            key=key,
            due_ms=due_ms,
            payload=payload or b"",
            attempt=attempt,
            claimed_until_ms=int(float(visible)) if attempt else None,
        )

    async def claim_due(self, now_ms: int, limit: int = 100) -> list[Claim]:
        validate_claim(now_ms, limit)
        lease_until = now_ms + self.lease_ms
        rows = await self._claim(keys=self._keys4, args=[now_ms, limit, lease_until, self._idle_ttl_ms])
        return [
            Claim(
                key=key.decode(),
                due_ms=int(due),
                payload=payload or b"",
                attempt=int(attempt),
                token=int(token),
                lease_until_ms=lease_until,
            )
            for key, due, attempt, token, payload in rows
        ]

    async def complete(self, claim: Claim) -> bool:
        return bool(await self._complete(keys=self._keys3, args=[claim.key, claim.token]))

    async def next_due_ms(self) -> int | None:
        first = await self._redis.zrange(self._keys4[0], 0, 0, withscores=True)
        if not first:
            return None
        return int(first[0][1])

    async def count(self) -> int:
        return int(await self._redis.zcard(self._keys4[0]))
