"""The live engine chosen by ``TOT_ENGINE_URL``: ``memory://`` (one process) or ``redis://`` (many).

The engine holds the live state of the city (positions, doctor states, offer deadlines, the broker and
presence); see docs/architecture.md. This module picks the implementation by URL scheme, like
``encode/broadcaster`` picks a backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from server.settings import ENGINE_SCHEMES


class EngineUnavailable(RuntimeError):
    """The engine named by the URL cannot be reached."""


@dataclass
class LiveEngine:
    """An open engine. ``kind`` is ``memory`` or ``redis``; ``redis`` is the shared client for Redis."""

    kind: str
    url: str
    redis: aioredis.Redis | None = None

    async def health(self) -> dict[str, object]:
        """``{"status": "ok"|"down", "kind": ..., "latency_ms"?: float, "detail"?: str}``."""
        if self.redis is None:
            return {"status": "ok", "kind": self.kind}
        started = time.perf_counter()
        try:
            await self.redis.ping()
        except (aioredis.RedisError, OSError) as exc:
            return {"status": "down", "kind": self.kind, "detail": str(exc)}
        return {
            "status": "ok",
            "kind": self.kind,
            "latency_ms": round((time.perf_counter() - started) * 1e3, 3),
        }

    async def close(self) -> None:
        """Release connections."""
        if self.redis is not None:
            await self.redis.aclose()


async def open_engine(url: str) -> LiveEngine:
    """Open the engine for ``url``. Raises ``ValueError`` for an unknown scheme."""
    scheme = urlsplit(url).scheme
    if scheme not in ENGINE_SCHEMES:
        raise ValueError(f"unsupported engine URL scheme {scheme!r}")
    if scheme == "memory":
        return LiveEngine(kind="memory", url=url)
    client = aioredis.Redis.from_url(url, health_check_interval=30)
    return LiveEngine(kind="redis", url=url, redis=client)
