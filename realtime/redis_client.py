"""Checks on the ``redis.asyncio.Redis`` client handed to the Redis engine roles."""

from __future__ import annotations

import redis.asyncio as aioredis


def require_bytes_client(redis: aioredis.Redis) -> aioredis.Redis:
    """Return ``redis`` if it returns raw bytes; raise ``ValueError`` if it decodes responses.

    The roles store opaque bytes (pre-encoded frames, payloads) and parse replies themselves, so a
    client created with ``decode_responses=True`` would corrupt binary payloads.
    """
    if redis.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("the engine needs a Redis client with decode_responses=False")
    return redis
