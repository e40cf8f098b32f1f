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
from realtime.lua import LuaScript
from realtime.redis_client import require_bytes_client

# The scripts: dispatch/lua/deadlines_*.lua. Every write extends the keys' TTL (the prelude).
_EXTEND_TTL = LuaScript("dispatch", "deadlines_extend_ttl")
_SCHEDULE = LuaScript("dispatch", "deadlines_schedule", (_EXTEND_TTL,))
_CLAIM = LuaScript("dispatch", "deadlines_claim", (_EXTEND_TTL,))
_COMPLETE = LuaScript("dispatch", "deadlines_complete")
_CANCEL = LuaScript("dispatch", "deadlines_cancel")
_GET = LuaScript("dispatch", "deadlines_get")


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
        self._schedule = _SCHEDULE.register(redis)
        self._claim = _CLAIM.register(redis)
        self._complete = _COMPLETE.register(redis)
        self._cancel = _CANCEL.register(redis)
        self._get = _GET.register(redis)

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
