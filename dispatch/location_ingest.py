"""Location ingest: doctors' GPS fixes into the live index, without SQL, in batches.

The hot path of the server. Per fix: check the time window and per-doctor order, keep the latest fix
per doctor in a pending map (no I/O). A flush task writes the pending map to the LocationIndex every
``flush_interval_ms`` with one ``upsert_many`` (one Redis round trip per tick, whatever the number of
doctors: the design's measurements show an un-pipelined command costs ~50 µs of client CPU, a
pipelined one a small fraction of it).

While a doctor is on a call (DoctorStates ``BUSY`` with the call id as ref), fixes are forwarded to
``call:<id>`` as ephemeral ``doctor.position`` events, at most once per ``forward_interval_ms``. The
doctor's state is read at most once per ``state_refresh_ms`` per doctor (cached), again to keep Redis
reads off the per-frame path.

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
            await self.locations.upsert_many(list(batch.values()))
            self.flushed += len(batch)
        if self._forward_due:
            due, self._forward_due = self._forward_due, {}
            await self._forward(due)
        return len(batch)

    async def _active_call(self, doctor_id: str, now: int) -> str | None:
        cached = self._call_cache.get(doctor_id)
        if cached is not None and now - cached[1] < self.settings.state_refresh_ms:
            return cached[0]
        state = await self.states.get(doctor_id)
        call_id = state.ref if state.status is DoctorStatus.BUSY else None
        self._call_cache[doctor_id] = (call_id, now)
        return call_id

    async def _forward(self, due: dict[str, DoctorPosition]) -> None:
        now = self.clock()
        for doctor_id, position in due.items():
            call_id = await self._active_call(doctor_id, now)
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
        """Flush every ``flush_interval_ms``; sweep silent doctors every second and the index's expired
        entries every minute. Runs until cancelled;
        an engine error is logged and retried on the next tick (fixes of a failed batch are lost: the
        next fix of each doctor replaces them within a second)."""
        interval = self.settings.flush_interval_ms / 1000
        last_sweep = last_index_sweep = self.clock()
        while True:
            await asyncio.sleep(interval)
            try:
                await self.flush()
                now = self.clock()
                if now - last_sweep >= 1000:
                    last_sweep = now
                    await self.sweep_silent()
                if now - last_index_sweep >= INDEX_SWEEP_INTERVAL_MS:
                    # Reclaims index entries of positions that expired (search never depends on it).
                    last_index_sweep = now
                    await self.locations.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingest flush failed")
