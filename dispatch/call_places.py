"""Where tracked calls are: the call's location by call id, read from the database once per call.

The ingest forwards a doctor's position to ``call:<id>`` with the distance and ETA to the call's
location, at most once a second per doctor. Reading the call row for each forwarded position would
put a SQL query on the tracking path; instead each call's location is read once, in one SELECT for
all the calls of a forwarding round that are not cached yet, and kept until the call ends (a call's
location does not change once created). The cache is bounded: past ``max_calls`` entries the oldest
are forgotten (and read again if still needed).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.repositories import track as track_repo

Place = tuple[float, float]
"""``(lat, lon)`` in WGS84 degrees."""


class CallPlaces:
    """Call id (string) -> the call's location, cached. One event loop; not thread-safe."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_calls: int = 50_000) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be >= 1")
        self.sessions = sessions
        self.max_calls = max_calls
        self._places: dict[str, Place] = {}
        self.reads = 0

    def get(self, call_id: str) -> Place | None:
        """The cached location of ``call_id``, or ``None`` (not loaded, or no such call)."""
        return self._places.get(call_id)

    async def load(self, call_ids: Collection[str]) -> None:
        """Read the locations of the calls in ``call_ids`` that are not cached, in one SELECT. Ids that
        are not UUIDs or name no call stay unknown. Raises the database's errors."""
        wanted: dict[uuid.UUID, str] = {}
        for call_id in call_ids:
            if call_id in self._places:
                continue
            try:
                wanted[uuid.UUID(call_id)] = call_id
            except ValueError:
                continue
        if not wanted:
            return
        async with self.sessions() as session:
            found = await track_repo.call_places(session, list(wanted))
        self.reads += 1
        for key, place in found.items():
            self._places[wanted[key]] = place
        excess = len(self._places) - self.max_calls
        if excess > 0:  # dicts keep insertion order: the oldest entries go first
            for call_id in list(self._places)[:excess]:
                del self._places[call_id]

    def forget(self, call_id: str) -> None:
        """Drop ``call_id`` (the call ended)."""
        self._places.pop(call_id, None)
