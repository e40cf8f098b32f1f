"""The map feed: every tick, one frame per watched map cell with every doctor in it.

The console shows a city's doctors moving. One frame per doctor per fix would be thousands of frames
a second per dispatcher; instead, every ``interval_s`` (1 s by default, ``TOT_MAP_FEED_INTERVAL_MS``)
this feed reads the live index once for the cells that this process's clients watch and hands each
cell's subscribers one ``map.doctors`` frame::

    {"op":"event","ch":"map:861f1d48fffffff","type":"map.doctors",
     "data":{"cell":"861f1d48fffffff","t":1732200000123,
             "doctors":[["<doctor id>",55.75581,37.61731,"available",1732200000001], ...]}}

Each entry is ``[id, lat, lon, status, fix time (epoch ms)]``: the complete list of doctors whose
latest position lies in the cell (any status; a position the index has not yet forgotten, i.e. fixed
within ``POSITION_TTL_MS``). A doctor missing from a cell's next frame has left the cell (or the map).
Frames are ephemeral (no offset, no history): a client that misses one gets the next, and a slow
client's queue keeps only the latest frame per cell (the send queue coalesces). A cell whose doctors did
not change since its last frame, and that has no new subscriber, gets no frame that tick (but at least
every :data:`KEYFRAME_TICKS` ticks).

**Local delivery, no broker.** The frames go straight to this process's sessions through its hub
(``Hub.dispatch``), never through the broker. With several processes on Redis, every process that
has console clients reads the index for its own clients' cells and serves them; no batch crosses
Redis, no process publishes what another process also publishes, and no leader election is needed.
The cost is one index read per tick per process with console clients (dispatchers are few), instead
of one per deployment plus a Redis fan-out of every batch to every process. The gateway still
subscribes map channels at the broker like any other (that is where subscriptions are counted), but
nothing publishes to them there.

**Reading the index.** One ``within_box`` over the box around all watched cells, then each doctor is
put in its cell (``h3.latlng_to_cell``); doctors of unwatched cells in that box are dropped. When the
watched cells are scattered (their surrounding box is more than :data:`SPARSE_FACTOR` times their own
boxes' area), each cell's box is read on its own instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import h3

from geo.location_index import MAX_BOX_LIMIT, LocationIndex, MapDoctor
from geo.map_cells import MAP_RESOLUTION, Box, box_area_deg2, cell_box
from realtime.broker import EPHEMERAL_OFFSET, Publication, encode_ephemeral
from realtime.channels import ChannelKind
from realtime.clock import wall_clock_ms
from realtime.event_types import EventType
from realtime.hub import Hub
from realtime.session import Session

log = logging.getLogger("tot.map_feed")

EVENT_TYPE = EventType.MAP_DOCTORS.value
MAP_PREFIX = f"{ChannelKind.MAP.value}:"
SPARSE_FACTOR = 4.0
"""Read cell by cell when the box around the watched cells is this many times their own area."""
MAX_FRAME_BYTES = 4 * 1024 * 1024
"""Largest map frame: ~60 bytes a doctor, so ~70,000 doctors in one ~36 km² cell."""
KEYFRAME_TICKS = 10
"""An unchanged cell is sent again after this many ticks anyway: a frame lost on the way (an
ephemeral frame has no recovery) is repaired within ten seconds at the default interval."""
COORD_DIGITS = 6
"""Coordinates are rounded to 1e-6 degree (~0.1 m): below any phone's accuracy, ~30 % fewer bytes."""

Entry = tuple[str, float, float, str, int]
"""``(doctor id, lat, lon, status, fix time epoch ms)``."""


@dataclass(slots=True)
class _Sent:
    """What a cell's subscribers got last: the entries, the subscriptions it went to (identities of the
    sessions' channel states: a client that unsubscribed and subscribed again is a new one) and when."""

    entries: list[Entry]
    subscriptions: frozenset[int]
    tick: int


class MapFeed:
    """Reads the index every tick and delivers per-cell doctor batches to local map subscribers.

    ``locations``: the live index. ``hub``: this process's fan-out; its broker's subscription counts
    tell which ``map:`` channels have local subscribers. ``interval_s``: seconds between ticks (> 0).
    ``clock``: epoch milliseconds, for the frames' ``t``.
    """

    def __init__(
        self,
        locations: LocationIndex,
        hub: Hub,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        if not interval_s > 0:
            raise ValueError("interval_s must be positive")
        self.locations = locations
        self.hub = hub
        self.interval_s = interval_s
        self.clock = clock
        self._sent: dict[str, _Sent] = {}
        self.ticks = 0
        self.frames = 0

    def watched_cells(self) -> list[str]:
        """The cells of the ``map:`` channels that local sessions are subscribed to, sorted."""
        return sorted(
            channel[len(MAP_PREFIX) :]
            for channel in self.hub.broker.subscriptions()
            if channel.startswith(MAP_PREFIX) and self.hub.sessions(channel)
        )

    async def _read(self, cells: list[str]) -> list[MapDoctor]:
        boxes = [cell_box(c) for c in cells]
        union: Box = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        if box_area_deg2(union) <= SPARSE_FACTOR * sum(box_area_deg2(b) for b in boxes):
            found = await self.locations.within_box(*union, limit=MAX_BOX_LIMIT)
            if len(found) == MAX_BOX_LIMIT:
                log.warning("map feed: the box holds more doctors than one read returns")
            return found
        parts = await asyncio.gather(*(self.locations.within_box(*b, limit=MAX_BOX_LIMIT) for b in boxes))
        seen: dict[str, MapDoctor] = {}
        for part in parts:
            for doctor in part:
                seen[doctor.position.doctor_id] = doctor
        return list(seen.values())

    @staticmethod
    def bucket(doctors: Iterable[MapDoctor], cells: Iterable[str]) -> dict[str, list[Entry]]:
        """The doctors by map cell, for ``cells`` only (every one of them, empty when no doctor is
        there), each list sorted by doctor id."""
        buckets: dict[str, list[Entry]] = {cell: [] for cell in cells}
        latlng_to_cell = h3.latlng_to_cell
        for doctor in doctors:
            p = doctor.position
            entries = buckets.get(latlng_to_cell(p.lat, p.lon, MAP_RESOLUTION))
            if entries is not None:
                entries.append(
                    (
                        p.doctor_id,
                        round(p.lat, COORD_DIGITS),
                        round(p.lon, COORD_DIGITS),
                        doctor.status.value,
                        p.ts_ms,
                    )
                )
        for entries in buckets.values():
            entries.sort()
        return buckets

    async def tick(self) -> int:
        """One round: read, bucket, deliver what changed. Returns the number of frames delivered
        (one per cell, whatever the number of subscribers)."""
        self.ticks += 1
        cells = self.watched_cells()
        for gone in self._sent.keys() - set(cells):
            del self._sent[gone]
        if not cells:
            return 0
        buckets = self.bucket(await self._read(cells), cells)
        now = self.clock()
        frames = 0
        for cell, entries in buckets.items():
            channel = MAP_PREFIX + cell
            sessions = self.hub.sessions(channel)
            if not sessions:
                continue  # unsubscribed while the index was read
            # Only sessions subscribe to ``map:`` channels (in-process followers take others).
            subscriptions = frozenset(id(s.channels.get(channel)) for s in sessions if isinstance(s, Session))
            last = self._sent.get(cell)
            if (
                last is not None
                and last.entries == entries
                and subscriptions <= last.subscriptions
                and self.ticks - last.tick < KEYFRAME_TICKS
            ):
                last.subscriptions = subscriptions
                continue
            self._sent[cell] = _Sent(entries, subscriptions, self.ticks)
            data = {"cell": cell, "t": now, "doctors": entries}
            frame = encode_ephemeral(channel, EVENT_TYPE, data, MAX_FRAME_BYTES)
            self.hub.dispatch(Publication(channel, EPHEMERAL_OFFSET, "", EVENT_TYPE, now, frame))
            frames += 1
        self.frames += frames
        return frames

    async def run(self) -> None:
        """Tick every ``interval_s`` until cancelled; a failed tick is logged and the next one runs."""
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:
                log.exception("map feed tick failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
