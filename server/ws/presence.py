"""This process's presence entries: every connection joins ``online`` and each channel it subscribes
to, under its own client id (:func:`~server.ws.connection.member`); the process refreshes its
entries well inside the presence TTL, so a dead process's entries expire on their own."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from realtime.presence import Presence as PresenceStore
from server.ws.connection import Connection

log = logging.getLogger("tot.ws")

ONLINE_CHANNEL = "online"
"""Presence channel with one member per connected client (``user:<id>``), for "who is online"."""
PRESENCE_TOUCH_S = 20.0
"""How often this process refreshes its presence entries (well inside the presence TTL of 60 s)."""
PRESENCE_TOUCH_BATCH = 256
"""Presence entries refreshed between two yields to the event loop: 10,000 doctors hold ~20,000
entries (``online`` and each one's ``doctor:<id>``), and refreshing them all in one go stalled the
loop for 80-270 ms every 20 s (measured with a loop watchdog under loadtests/bench_sos.py)."""


class Presence:
    """The entries this process joined in ``store`` (the engine's presence role), by channel."""

    def __init__(self, store: PresenceStore) -> None:
        self.store = store
        self._members: dict[str, set[str]] = {}

    async def join(self, conn: Connection, channel: str, client_id: str, info: dict[str, Any]) -> None:
        """``client_id`` of ``conn`` joins ``channel`` with ``info``. Raises engine errors."""
        self._members.setdefault(channel, set()).add(client_id)
        if conn.presence is None:
            conn.presence = set()
        conn.presence.add((channel, client_id))
        await self.store.join(channel, client_id, info)

    async def leave(self, conn: Connection, channel: str, client_id: str) -> None:
        """``client_id`` of ``conn`` leaves ``channel``. Raises engine errors."""
        if conn.presence is not None:
            conn.presence.discard((channel, client_id))
        members = self._members.get(channel)
        if members is not None:
            members.discard(client_id)
            if not members:
                del self._members[channel]
        await self.store.leave(channel, client_id)

    async def leave_all(self, conn: Connection) -> None:
        """Every entry of ``conn`` leaves. Raises engine errors (the rest then stay until they expire).

        Only this connection's own entries: scanning every channel's members made each disconnect
        O(connections), and 10,000 closing at once stalled the loop for seconds."""
        for channel, client_id in list(conn.presence or ()):
            await self.leave(conn, channel, client_id)

    async def refresh(self) -> None:
        """Refresh this process's entries every :data:`PRESENCE_TOUCH_S` seconds, until cancelled; an
        entry that expired meanwhile joins again. A failure is logged and the next batch goes on."""
        while True:
            await asyncio.sleep(PRESENCE_TOUCH_S)
            await self.refresh_once()

    async def refresh_once(self) -> None:
        """One pass of :meth:`refresh` (also right after the live engine was lost: every entry of this
        process joins again at once instead of within :data:`PRESENCE_TOUCH_S`)."""
        store = self.store
        since_yield = 0
        for channel, members in list(self._members.items()):
            listed = list(members)
            for start in range(0, len(listed), PRESENCE_TOUCH_BATCH):
                chunk = listed[start : start + PRESENCE_TOUCH_BATCH]
                try:
                    missing = await store.touch(channel, chunk)
                    for client_id in missing:  # expired while we were slow: join again
                        await store.join(channel, client_id, {})
                except Exception:
                    log.exception("presence touch failed", extra={"channel": channel})
                since_yield += len(chunk)
                if since_yield >= PRESENCE_TOUCH_BATCH:
                    since_yield = 0
                    await asyncio.sleep(0)
