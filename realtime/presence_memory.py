"""In-process Presence: per channel, a dict of client id -> (encoded info, expiry)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from realtime.broker import validate_channel
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import PRESENCE_TTL_MS
from realtime.presence import (
    Member,
    Presence,
    decode_info,
    encode_info,
    validate_member,
    validate_ttl,
)


@dataclass(slots=True)
class _Channel:
    entries: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # client id -> (info, expires)
    # No entry expires before this (epoch ms): a lower bound, since writes only add later expiries.
    prune_after_ms: int = 0

    def prune(self, now: int) -> None:
        if now < self.prune_after_ms:
            return
        self.entries = {cid: entry for cid, entry in self.entries.items() if entry[1] > now}
        self.prune_after_ms = min((entry[1] for entry in self.entries.values()), default=0)


class MemoryPresence(Presence):
    """Presence for one process. Same semantics and limits as ``RedisPresence``.

    ``ttl_ms``: entry lifetime without a touch (ms). ``clock``: epoch ms. Expired entries are pruned
    when their channel is written (a scan at most once per earliest expiry), and an emptied channel is
    dropped, so memory follows the present clients.
    """

    def __init__(self, *, ttl_ms: int = PRESENCE_TTL_MS, clock: Clock = wall_clock_ms) -> None:
        """Raises ``ValueError`` when ``ttl_ms`` < 1."""
        self.ttl_ms = validate_ttl(ttl_ms)
        self._clock = clock
        self._channels: dict[str, _Channel] = {}

    async def join(self, channel: str, client_id: str, info: Mapping[str, Any]) -> bool:
        validate_member(channel, client_id)
        data = encode_info(info)
        now = self._clock()
        state = self._channels.setdefault(channel, _Channel())
        state.prune(now)
        is_new = client_id not in state.entries
        state.entries[client_id] = (data, now + self.ttl_ms)
        if len(state.entries) == 1:
            state.prune_after_ms = now + self.ttl_ms
        return is_new

    async def touch(self, channel: str, client_ids: Iterable[str]) -> frozenset[str]:
        validate_channel(channel)
        now = self._clock()
        missing: set[str] = set()
        state = self._channels.get(channel)
        if state is not None:
            state.prune(now)
        for client_id in client_ids:
            entry = state.entries.get(client_id) if state is not None else None
            if state is None or entry is None:
                missing.add(client_id)
            else:
                state.entries[client_id] = (entry[0], now + self.ttl_ms)
        self._drop_if_empty(channel)
        return frozenset(missing)

    async def leave(self, channel: str, client_id: str) -> bool:
        validate_member(channel, client_id)
        state = self._channels.get(channel)
        if state is None:
            return False
        state.prune(self._clock())
        present = state.entries.pop(client_id, None) is not None
        self._drop_if_empty(channel)
        return present

    async def members(self, channel: str) -> dict[str, Member]:
        validate_channel(channel)
        now = self._clock()
        state = self._live(channel, now)
        if state is None:
            return {}
        return {
            client_id: Member(client_id, decode_info(data), expires_ms)
            for client_id, (data, expires_ms) in state.entries.items()
            if expires_ms > now
        }

    async def count(self, channel: str) -> int:
        validate_channel(channel)
        now = self._clock()
        state = self._live(channel, now)
        if state is None:
            return 0
        return sum(1 for _, expires_ms in state.entries.values() if expires_ms > now)

    def _live(self, channel: str, now: int) -> _Channel | None:
        # Reads prune too, so a channel whose clients all vanished does not linger in memory.
        state = self._channels.get(channel)
        if state is None:
            return None
        state.prune(now)
        self._drop_if_empty(channel)
        return self._channels.get(channel)

    def _drop_if_empty(self, channel: str) -> None:
        state = self._channels.get(channel)
        if state is not None and not state.entries:
            del self._channels[channel]
