"""The live engine chosen by ``TOT_ENGINE_URL``: ``memory://`` (one process) or ``redis://`` (many).

The engine is a bundle of narrow roles, each an interface with a memory and a Redis implementation
that pass one contract suite (``tests/contract/``): the LocationIndex (``geo/``), DoctorStates and
Deadlines (``dispatch/``), the Broker, Presence and Revocations (``realtime/``). This module only picks the
implementations by URL scheme, like ``encode/broadcaster`` picks a backend, and wires them together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from dispatch.deadlines import Deadlines
from dispatch.deadlines_memory import MemoryDeadlines
from dispatch.deadlines_redis import RedisDeadlines
from dispatch.doctor_states import DoctorStates
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.doctor_states_redis import RedisDoctorStates
from geo.location_index import LocationIndex
from geo.location_index_memory import MemoryLocationIndex
from geo.location_index_redis import RedisLocationIndex
from realtime.broker import Broker, HistoryPolicy
from realtime.broker_memory import MemoryBroker
from realtime.broker_redis import RedisBroker
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import DEFAULT_PREFIX, Keys
from realtime.presence import Presence
from realtime.presence_memory import MemoryPresence
from realtime.presence_redis import RedisPresence
from realtime.revocations import Revocations
from realtime.revocations_memory import MemoryRevocations
from realtime.revocations_redis import RedisRevocations
from server.settings import ENGINE_SCHEMES

# Map channels carry batched positions for the console: only the latest batch matters, keep no history.
BROKER_NAMESPACES = {"map": HistoryPolicy(size=0)}


@dataclass
class LiveEngine:
    """An open engine: its roles, and for Redis the shared client (bytes responses). ``revocations``:
    the accepted token versions (a cache of the database, server/auth/access.py)."""

    kind: str
    url: str
    locations: LocationIndex
    states: DoctorStates
    deadlines: Deadlines
    sos_deadlines: Deadlines
    broker: Broker
    presence: Presence
    redis: aioredis.Redis | None = None
    revocations: Revocations = field(default_factory=MemoryRevocations)

    async def health(self) -> dict[str, object]:
        """``{"status": "ok"|"down", "kind": ..., "latency_ms"?: float, "detail"?: str}``."""
        if self.redis is None:
            return {"status": "ok", "kind": self.kind}
        started = time.perf_counter()
        try:
            await self.redis.ping()
        except (aioredis.RedisError, OSError) as exc:
            return {"status": "down", "kind": self.kind, "detail": str(exc)}
        latency = round((time.perf_counter() - started) * 1e3, 3)
        return {"status": "ok", "kind": self.kind, "latency_ms": latency}

    async def close(self) -> None:
        """Stop the broker and presence, then release the Redis connections."""
        await self.broker.aclose()
        await self.presence.aclose()
        await self.deadlines.aclose()
        await self.sos_deadlines.aclose()
        if self.redis is not None:
            await self.redis.aclose(close_connection_pool=True)  # a pool passed in is not closed otherwise


def open_engine(url: str, *, prefix: str = DEFAULT_PREFIX, clock: Clock = wall_clock_ms) -> LiveEngine:
    """The engine for ``url``; opening connections is lazy (the first command connects).

    ``prefix`` starts every Redis key (deployments sharing one Redis, tests). Raises ``ValueError`` for
    an unknown scheme.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ENGINE_SCHEMES:
        raise ValueError(f"unsupported engine URL scheme {scheme!r}")
    if scheme == "memory":
        locations = MemoryLocationIndex(clock=clock)
        return LiveEngine(
            kind="memory",
            url=url,
            locations=locations,
            states=MemoryDoctorStates(clock=clock, index=locations),
            deadlines=MemoryDeadlines(),
            sos_deadlines=MemoryDeadlines(),
            broker=MemoryBroker(namespaces=BROKER_NAMESPACES, clock=clock),
            presence=MemoryPresence(clock=clock),
            revocations=MemoryRevocations(clock=clock),
        )
    # A blocking pool: redis-py's default pool fails the 101st concurrent command instead of waiting,
    # which a burst of offers or subscriptions can reach.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=200, timeout=10, health_check_interval=30
    )
    client = aioredis.Redis(connection_pool=pool)
    keys = Keys(prefix=prefix)
    return LiveEngine(
        kind="redis",
        url=url,
        locations=RedisLocationIndex(client, keys, clock=clock),
        states=RedisDoctorStates(client, keys, clock=clock),
        deadlines=RedisDeadlines(client, keys),
        sos_deadlines=RedisDeadlines(client, keys, queue="sos"),
        broker=RedisBroker(client, keys, namespaces=BROKER_NAMESPACES, clock=clock),
        presence=RedisPresence(client, keys, clock=clock),
        redis=client,
        revocations=RedisRevocations(client, keys),
    )
