"""Location ingest: doctors' GPS fixes into the live index, without SQL, in batches.

The hot path of the server. Per fix: check the time window and per-doctor order, keep the latest fix
per doctor in a pending map (no I/O). Every ``flush_interval_ms`` the loop hands the pending map to a
write task: ``upsert_many`` calls of at most :data:`FLUSH_CHUNK` fixes each, sent concurrently (one
Redis round trip per tick, whatever the number of doctors: the design's measurements show an
un-pipelined command costs ~50 µs of client CPU, a pipelined one a small fraction of it). The loop does
not wait for the writes, nor for the call forwarding below: on a busy event loop each await lasts a
whole loop iteration, and awaits in turn add up. Measured with loadtests/bench_ingest.py (5,000
doctors at 4 fixes/s, Redis engine): with one awaited state read per doctor in the flush, the index
trailed the fixes by 4-15 s; now by ~0.75 s with the server at ~100% of its core, one tick or two
below that. At most :data:`MAX_WRITES_IN_FLIGHT` write tasks run at once; beyond that fixes keep
coalescing in the pending map (latest per doctor) until one ends. Concurrent writes may reach the
index out of order: the index keeps the newer fix of a doctor (``upsert_many`` ignores older ones).

While a doctor is on a call (DoctorStates ``BUSY`` with the call id as ref), fixes are forwarded to
``call:<id>`` as ephemeral ``doctor.position`` events, at most once per ``forward_interval_ms``. The
doctor's state is read at most once per ``state_refresh_ms`` per doctor (cached; the stale entries of a
tick are read together with ``DoctorStates.get_many``), again to keep Redis reads off the per-frame
path. Forwarding runs in a task of its own (one at a time), so it never delays the position writes.

A doctor whose last fix is older than ``offline_after_ms`` is swept to ``OFFLINE`` (from ``AVAILABLE``
or ``PAUSED``; a doctor ``OFFERED`` or ``BUSY`` keeps the state, and drops out of searches by position
freshness anyway), and leaves the candidate pool.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum

from dispatch.doctor_states import DoctorStates, DoctorStatus
from geo.location_index import DoctorPosition, LocationIndex, check_position
from realtime.broker import Broker
from realtime.channels import call_channel, doctor_channel
from realtime.clock import Clock, wall_clock_ms

log = logging.getLogger("tot.ingest")

INDEX_SWEEP_INTERVAL_MS = 60_000
FLUSH_CHUNK = 1_000
"""Fixes per ``upsert_many`` call; the chunks of one flush are written concurrently."""
MAX_WRITES_IN_FLIGHT = 4
"""Write tasks the flush loop lets run at once."""
ON_SHIFT_IDLE = frozenset({DoctorStatus.AVAILABLE, DoctorStatus.PAUSED})
"""States a silent doctor is taken out of (offered and busy doctors keep theirs)."""


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Times in milliseconds. ``max_past_ms``/``max_future_ms``: how far a fix time may lie behind or
    ahead of server time (phones buffer fixes offline; clocks drift)."""

    max_past_ms: int = 5 * 60_000
    max_future_ms: int = 30_000
    flush_interval_ms: int = 25
    forward_interval_ms: int = 1_000
    state_refresh_ms: int = 2_000
    offline_after_ms: int = 60_000


class FixOutcome(StrEnum):
    """What became of one fix."""

    ACCEPTED = "accepted"
    STALE = "stale"  # older than one already accepted: ignored, not an error
    OUT_OF_WINDOW = "out_of_window"  # fix time too far from server time: refused


class LocationIngest:
    """Per-process ingest of fixes; ``run()`` is its flush/forward/sweep loop."""

    def __init__(
        self,
        locations: LocationIndex,
        states: DoctorStates,
        broker: Broker,
        settings: IngestSettings | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.locations = locations
        self.states = states
        self.broker = broker
        self.settings = settings or IngestSettings()
        self.clock = clock
        self._pending: dict[str, DoctorPosition] = {}
        self._last_ts: dict[str, int] = {}
        self._last_seen: dict[str, int] = {}
        self._last_forward: dict[str, int] = {}
        self._call_cache: dict[str, tuple[str | None, int]] = {}
        self._forward_due: dict[str, DoctorPosition] = {}
        self.accepted = 0
        self.flushed = 0

    def accept(self, position: DoctorPosition) -> FixOutcome:
        """Take one fix (no I/O). Raises ``ValueError`` when a field is outside the index's limits."""
        now = self.clock()
        if not now - self.settings.max_past_ms <= position.ts_ms <= now + self.settings.max_future_ms:
            return FixOutcome.OUT_OF_WINDOW
        doctor = position.doctor_id
        if position.ts_ms < self._last_ts.get(doctor, -1):
            return FixOutcome.STALE
        check_position(position)
        self._last_ts[doctor] = position.ts_ms
        self._last_seen[doctor] = now
        self._pending[doctor] = position
        if now - self._last_forward.get(doctor, 0) >= self.settings.forward_interval_ms:
            self._forward_due[doctor] = position
        self.accepted += 1
        return FixOutcome.ACCEPTED

    def forget(self, doctor_id: str) -> None:
        """Drop per-doctor memory (the doctor's last connection to this process closed)."""
        self._last_ts.pop(doctor_id, None)
        self._last_forward.pop(doctor_id, None)
        self._call_cache.pop(doctor_id, None)
        self._forward_due.pop(doctor_id, None)

    def invalidate(self, doctor_id: str) -> None:
        """Forget the cached call of a doctor (their state changed: assignment, completion)."""
        self._call_cache.pop(doctor_id, None)

    async def flush(self) -> int:
        """Write pending fixes to the index (one batch) and forward due positions. Returns the batch size."""
        batch, self._pending = self._pending, {}
        if batch:
            await self._write(list(batch.values()))
        if self._forward_due:
            due, self._forward_due = self._forward_due, {}
            await self._forward(due)
        return len(batch)

    async def _write(self, positions: list[DoctorPosition]) -> None:
        chunks = [positions[i : i + FLUSH_CHUNK] for i in range(0, len(positions), FLUSH_CHUNK)]
        if len(chunks) == 1:
            await self.locations.upsert_many(chunks[0])
        else:
            await asyncio.gather(*(self.locations.upsert_many(chunk) for chunk in chunks))
        self.flushed += len(positions)

    async def _write_logged(self, positions: list[DoctorPosition]) -> None:
        try:
            await self._write(positions)
        except Exception:
            log.exception("ingest flush failed")

    async def _forward_logged(self, due: dict[str, DoctorPosition]) -> None:
        try:
            await self._forward(due)
        except Exception:
            log.exception("position forwarding failed")

    async def _forward(self, due: dict[str, DoctorPosition]) -> None:
        now = self.clock()
        refresh_ms = self.settings.state_refresh_ms
        cache = self._call_cache
        # Stale cache entries are refreshed together, in one round trip: one awaited read per doctor
        # (every doctor sending fixes is due here, on a call or not) held each flush for thousands of
        # round trips with 5,000 doctors, and the positions reached Redis seconds late
        # (loadtests/bench_ingest.py).
        stale = [d for d in due if (c := cache.get(d)) is None or now - c[1] >= refresh_ms]
        if stale:
            states = await self.states.get_many(stale)
            for doctor_id, state in states.items():
                cache[doctor_id] = (state.ref if state.status is DoctorStatus.BUSY else None, now)
        for doctor_id, position in due.items():
            cached = cache.get(doctor_id)
            call_id = None if cached is None else cached[0]
            if call_id is None:
                continue
            self._last_forward[doctor_id] = now
            await self.broker.publish_ephemeral(
                call_channel(call_id),
                "doctor.position",
                {
                    "doctor": doctor_id,
                    "lat": position.lat,
                    "lon": position.lon,
                    "acc": position.accuracy_m,
                    "heading": position.heading_deg,
                    "speed": position.speed_mps,
                    "ts": position.ts_ms,
                },
            )

    async def sweep_silent(self) -> list[str]:
        """Move doctors silent for ``offline_after_ms`` to ``OFFLINE``; returns who went offline."""
        now = self.clock()
        limit = now - self.settings.offline_after_ms
        silent = [d for d, seen in self._last_seen.items() if seen < limit]
        gone: list[str] = []
        for doctor_id in silent:
            del self._last_seen[doctor_id]
            self.forget(doctor_id)
            result = await self.states.compare_and_set(
                doctor_id, expected=ON_SHIFT_IDLE, new=DoctorStatus.OFFLINE
            )
            if result.ok:
                gone.append(doctor_id)
                state = result.state
                await self.broker.publish(
                    doctor_channel(doctor_id),
                    "doctor.status",
                    {
                        "status": state.status.value,
                        "version": state.version,
                        "since": state.since_ms,
                        "reason": "silent",
                    },
                )
        return gone

    async def run(self) -> None:
        """Start a write of the pending fixes and the forwarding of due positions every
        ``flush_interval_ms`` (without waiting for them; see the module docstring); sweep silent
        doctors every second and the index's expired entries every minute. Runs until cancelled
        (cancelling the writes and forwarding in flight; ``flush()`` writes what is left). An engine
        error is logged and the next tick goes on (fixes of a failed batch are lost: the next fix of
        each doctor replaces them within a second)."""
        interval = self.settings.flush_interval_ms / 1000
        last_sweep = last_index_sweep = self.clock()
        writes: set[asyncio.Task[None]] = set()
        forwarding: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(interval)
                if self._pending and len(writes) < MAX_WRITES_IN_FLIGHT:
                    batch, self._pending = self._pending, {}
                    task = asyncio.create_task(self._write_logged(list(batch.values())))
                    writes.add(task)
                    task.add_done_callback(writes.discard)
                if self._forward_due and (forwarding is None or forwarding.done()):
                    due, self._forward_due = self._forward_due, {}
                    forwarding = asyncio.create_task(self._forward_logged(due))
                try:
                    now = self.clock()
                    if now - last_sweep >= 1000:
                        last_sweep = now
                        await self.sweep_silent()
                    if now - last_index_sweep >= INDEX_SWEEP_INTERVAL_MS:
                        # Reclaims index entries of positions that expired (search never depends on it).
                        last_index_sweep = now
                        await self.locations.sweep()
                except Exception:
                    log.exception("ingest sweep failed")
        finally:
            for task in [*writes, *([forwarding] if forwarding is not None else [])]:
                task.cancel()
