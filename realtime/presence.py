"""Presence: who is connected, per channel, with entries that expire when their process dies.

A process ``join``s each local client on the channels it is present in (``call:<id>``, ``dispatch``,
``doctor:<id>`` for "is this doctor's app connected, and how many connections") and ``touch``es its
entries every ``ttl_ms / 3`` or so (the heartbeat). An entry not touched for ``ttl_ms`` is gone: when a
process dies, its clients vanish from presence within ``ttl_ms`` without anyone cleaning up.

Contract (both implementations): an entry is present while ``now < expires_ms``; ``join`` (re)sets
its info and expiry; ``touch`` extends only entries still present and reports the others, which the
caller must ``join`` again (it has their info); ``leave`` removes at once. ``info`` is a small JSON
object (at most ``MAX_INFO_BYTES`` encoded), stored encoded, so readers always get a fresh copy.
Times are epoch milliseconds from the instance's ``clock``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from realtime.broker import validate_channel

MAX_INFO_BYTES = 4096
MAX_CLIENT_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class Member:
    """A present client: its id, its info (a fresh dict per read), its expiry (epoch ms)."""

    client_id: str
    info: dict[str, Any]
    expires_ms: int


class Presence(abc.ABC):
    """Presence per channel. Implementations: ``MemoryPresence`` and ``RedisPresence``."""

    ttl_ms: int

    @abc.abstractmethod
    async def join(self, channel: str, client_id: str, info: Mapping[str, Any]) -> bool:
        """Add or refresh ``client_id`` on ``channel`` with ``info``, expiring ``ttl_ms`` from now.

        Returns True when it was not present. Raises ``ValueError`` for a bad channel or client id or
        info over ``MAX_INFO_BYTES``, ``TypeError`` when orjson cannot encode ``info``.
        """

    @abc.abstractmethod
    async def touch(self, channel: str, client_ids: Iterable[str]) -> frozenset[str]:
        """Extend the entries of ``client_ids`` still present to ``ttl_ms`` from now.

        Returns the ids that were not present (expired, left, or never joined): join them again.
        """

    @abc.abstractmethod
    async def leave(self, channel: str, client_id: str) -> bool:
        """Remove ``client_id`` from ``channel``; returns True when it was present."""

    @abc.abstractmethod
    async def members(self, channel: str) -> dict[str, Member]:
        """The present clients of ``channel`` by client id."""

    @abc.abstractmethod
    async def count(self, channel: str) -> int:
        """How many clients are present on ``channel``."""

    async def aclose(self) -> None:  # noqa: B027 - a no-op by design
        """Release what this instance holds (not a shared Redis client). Entries expire on their own."""


def encode_info(info: Mapping[str, Any]) -> bytes:
    """Encode client info once (orjson). Raises ``ValueError`` over ``MAX_INFO_BYTES``, ``TypeError``
    when not encodable or not a mapping."""
    if not isinstance(info, Mapping):
        raise TypeError(f"presence info must be a mapping, got {type(info).__name__}")
    data = orjson.dumps(dict(info))
    if len(data) > MAX_INFO_BYTES:
        raise ValueError(f"presence info is {len(data)} bytes; the limit is {MAX_INFO_BYTES}")
    # orjson returns its bytes in a 4 KiB allocation whatever the length; the memory engine keeps this
    # for as long as the client is present (one per connection), so keep a tight copy: measured 4.1 KB
    # less per idle connection (loadtests/bench_ingest.py).
    return bytes(memoryview(data))


def decode_info(data: bytes) -> dict[str, Any]:
    """A fresh dict from encoded info."""
    value: dict[str, Any] = orjson.loads(data)
    return value


def validate_member(channel: str, client_id: str) -> None:
    """Check a channel name and a client id (1..``MAX_CLIENT_ID_CHARS`` characters). Raises ValueError."""
    validate_channel(channel)
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID_CHARS:
        raise ValueError(f"client id must be a str of 1..{MAX_CLIENT_ID_CHARS} characters, got {client_id!r}")


def validate_ttl(ttl_ms: int) -> int:
    """A presence TTL is a positive number of milliseconds. Raises ValueError."""
    if ttl_ms < 1:
        raise ValueError(f"ttl_ms must be >= 1, got {ttl_ms}")
    return ttl_ms
