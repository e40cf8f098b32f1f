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
``call:<id>`` as ephemeral ``doctor.position`` events, one per ``forward_interval_ms`` of fix time
(the device's ``ts``, less a tenth of slack: a 1 Hz stream with jitter is forwarded whole) and at most
one per half that interval of arrival time (so a device racing its ``ts`` ahead gets no more), with
the straight-line distance to the call's location and an ETA from the ranking's model
(``RankingSettings.eta_s``: road factor over average speed, ``dispatch/ranking.py``). The doctor's
state is read at most once per ``state_refresh_ms`` per doctor (cached; the stale entries of a tick
are read together with ``DoctorStates.get_many``), again to keep Redis reads off the per-frame path;
each call's location is read once (``dispatch/call_places.py``). Forwarding runs in a task of its own
(one at a time), started every ``forward_tick_ms`` (5 ms: the tick is a patient's lag; on the index
writes' 25 ms tick it was half the tracking latency budget, loadtests/bench_sos.py), so it never
delays the position writes.

Tracking ends with the call: :meth:`LocationIngest.call_changed` is fed every ``call.status`` of the
deployment (``dispatch/call_feed.py``); on ``completed`` or ``cancelled`` the call's doctors are
dropped from the cache and the call is remembered as ended (a state read still in flight, or the
doctor's state not yet set back to available, cannot revive it), on ``assigned`` or ``searching``
the cached doctors are re-read. So nothing is forwarded or recorded for a call after its end event,
short of a missed event (then the state read within ``state_refresh_ms`` ends it).

Breadcrumbs: the fixes of a doctor on a call are also the call's track (``GET /v1/calls/<id>/route``),
sampled at most one per ``track_interval_ms`` of *fix* time (1 s: a few metres apart at city speed, a
faithful route without storing every fix of a phone sending four a second) and handed to the
:class:`~dispatch.breadcrumbs.BreadcrumbWriter` (an append; it writes in batches). A fix is recorded
when it arrives if the doctor's call is cached, and otherwise when the forwarding round learns the
call (the first forwarded position after an assignment).

A doctor whose last fix is older than ``offline_after_ms`` is swept to ``OFFLINE`` (from ``AVAILABLE``
or ``PAUSED``; a doctor ``OFFERED`` or ``BUSY`` keeps the state, and drops out of searches by position
freshness anyway), and leaves the candidate pool.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum

from dispatch.breadcrumbs import BreadcrumbWriter
from dispatch.call_places import CallPlaces
from dispatch.doctor_states import DoctorStates
from dispatch.events import DoctorPositionPayload, DoctorStatusPayload
from dispatch.publisher import EventPublisher, as_publisher
from dispatch.ranking import RankingSettings
from geo.distance import haversine_m
from geo.location_index import DoctorPosition, LocationIndex, check_position
from models.enums import CallStatus, DoctorStatus
from realtime.broker import Broker
from realtime.channels import call_channel
from realtime.clock import Clock, wall_clock_ms
from realtime.event_types import EventType

log = logging.getLogger("tot.ingest")

INDEX_SWEEP_INTERVAL_MS = 60_000
FLUSH_CHUNK = 1_000
"""Fixes per ``upsert_many`` call; the chunks of one flush are written concurrently."""
MAX_WRITES_IN_FLIGHT = 4
FORWARD_SLACK_DIVISOR = 10
"""A fix is due for forwarding one interval less a tenth after the last forwarded one (by fix time):
devices stamp a "1 Hz" stream 990-1,010 ms apart, and without slack half of it was skipped."""
"""Write tasks the flush loop lets run at once."""
ON_SHIFT_IDLE = frozenset({DoctorStatus.AVAILABLE, DoctorStatus.PAUSED})
"""States a silent doctor is taken out of (offered and busy doctors keep theirs)."""
CALL_ENDS = frozenset({CallStatus.COMPLETED.value, CallStatus.CANCELLED.value})
"""Call statuses after which nothing is forwarded to the call nor recorded as its track."""
DOCTOR_CHANGES = frozenset({CallStatus.ASSIGNED.value, CallStatus.SEARCHING.value})
"""Call statuses that may change who is on the call (assignment, reassignment, a dropped call)."""
ENDED_CALLS_KEPT = 10_000
"""Ended call ids remembered (the newest); far more than the calls ending within a state refresh."""


@dataclass(frozen=True, slots=True)
class IngestSettings:
    """Times in milliseconds. ``max_past_ms``/``max_future_ms``: how far a fix time may lie behind or
        ahead of server time (phones buffer fixes offline; clocks drift). ``track_interval_ms``: least fix
        time between two breadcrumbs of a doctor. ``forward_tick_ms``: how often due positions are handed
    to forwarding (a patient's view lags the doctor by up to this; the index writes keep the longer
    ``flush_interval_ms``, where batch size is what counts). ``ranking``: the ETA model of forwarded
    positions."""

    max_past_ms: int = 5 * 60_000
    max_future_ms: int = 30_000
    flush_interval_ms: int = 25
    forward_tick_ms: int = 5
    forward_interval_ms: int = 1_000
    state_refresh_ms: int = 2_000
    offline_after_ms: int = 60_000
    track_interval_ms: int = 1_000
    ranking: RankingSettings = field(default_factory=RankingSettings)


class FixOutcome(StrEnum):
    """What became of one fix."""

    ACCEPTED = "accepted"
    STALE = "stale"  # older than one already accepted: ignored, not an error
    OUT_OF_WINDOW = "out_of_window"  # fix time too far from server time: refused


class LocationIngest:
    """Per-process ingest of fixes; ``run()`` is its flush/forward/sweep loop.

    ``places``: where calls are, for the distance and ETA of forwarded positions (without it they
    carry ``null``). ``breadcrumbs``: where the fixes of doctors on calls go (without it no track is
    recorded)."""

    def __init__(
        self,
        locations: LocationIndex,
        states: DoctorStates,
        publisher: EventPublisher | Broker,
        settings: IngestSettings | None = None,
        clock: Clock = wall_clock_ms,
        *,
        places: CallPlaces | None = None,
        breadcrumbs: BreadcrumbWriter | None = None,
    ) -> None:
        self.locations = locations
        self.states = states
        self.publisher = as_publisher(publisher)
        self.settings = settings or IngestSettings()
        self.clock = clock
        self.places = places
        self.breadcrumbs = breadcrumbs
        self._pending: dict[str, DoctorPosition] = {}
        self._last_ts: dict[str, int] = {}
        self._last_seen: dict[str, int] = {}
        self._last_forward: dict[str, tuple[int, int]] = {}  # doctor -> (arrival ms, fix ts ms)
        self._call_cache: dict[str, tuple[str | None, int]] = {}
        self._on_call: dict[str, set[str]] = {}  # call id -> doctors cached as on it
        self._ended: dict[str, None] = {}  # ended call ids, oldest first
        self._last_crumb: dict[str, int] = {}  # doctor -> fix time of the last breadcrumb
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
        cached = self._call_cache.get(doctor)
        if cached is not None and cached[0] is not None:
            self._crumb(cached[0], position)
        elif cached is not None and now - cached[1] < self.settings.state_refresh_ms:
            # Known to be on no call: nothing to forward until the cached state goes stale (most
            # doctors, most of the time; the forwarding task would only skip them).
            self.accepted += 1
            return FixOutcome.ACCEPTED
        interval = self.settings.forward_interval_ms
        last = self._last_forward.get(doctor)
        # Measured on the fixes themselves, not from when the forward went out (a tick later) nor on
        # arrival alone: either way fixes 1 s apart were forwarded every other one (bench_sos).
        if last is None or (
            position.ts_ms - last[1] >= interval - interval // FORWARD_SLACK_DIVISOR
            and now - last[0] >= interval // 2
        ):
            self._last_forward[doctor] = (now, position.ts_ms)
            self._forward_due[doctor] = position
        self.accepted += 1
        return FixOutcome.ACCEPTED

    def _crumb(self, call_id: str, position: DoctorPosition) -> None:
        """Record ``position`` as a breadcrumb of ``call_id`` unless the doctor's last one is less than
        ``track_interval_ms`` of fix time older (no I/O)."""
        if self.breadcrumbs is None:
            return
        doctor = position.doctor_id
        last = self._last_crumb.get(doctor)
        if last is None or position.ts_ms - last >= self.settings.track_interval_ms:
            self._last_crumb[doctor] = position.ts_ms
            self.breadcrumbs.add(call_id, position)

    def _cache_call(self, doctor_id: str, call_id: str | None, now: int) -> None:
        self._uncache(doctor_id)
        self._call_cache[doctor_id] = (call_id, now)
        if call_id is not None:
            self._on_call.setdefault(call_id, set()).add(doctor_id)

    def _uncache(self, doctor_id: str) -> None:
        cached = self._call_cache.pop(doctor_id, None)
        if cached is not None and cached[0] is not None:
            doctors = self._on_call.get(cached[0])
            if doctors is not None:
                doctors.discard(doctor_id)
                if not doctors:
                    del self._on_call[cached[0]]

    def forget(self, doctor_id: str) -> None:
        """Drop per-doctor memory (the doctor's last connection to this process closed)."""
        self._last_ts.pop(doctor_id, None)
        self._last_forward.pop(doctor_id, None)
        self._last_crumb.pop(doctor_id, None)
        self._uncache(doctor_id)
        self._forward_due.pop(doctor_id, None)

    def invalidate(self, doctor_id: str) -> None:
        """Forget the cached call of a doctor (their state changed: assignment, completion)."""
        self._uncache(doctor_id)

    def call_changed(self, call_id: str, status: str, doctor_id: str | None) -> None:
        """A call's status changed (``call.status``; ``doctor_id`` the call's doctor, if any). On an
        end (``completed``, ``cancelled``) tracking of the call stops at once: nothing more is
        forwarded to it or recorded as its track. On an assignment or a return to searching, the
        doctors cached for the call, and the named doctor, are read again on their next position.
        No I/O."""
        if status in CALL_ENDS:
            self._ended[call_id] = None
            if len(self._ended) > ENDED_CALLS_KEPT:
                del self._ended[next(iter(self._ended))]
            if self.places is not None:
                self.places.forget(call_id)
        elif status not in DOCTOR_CHANGES:
            return
        for doctor in list(self._on_call.get(call_id, ())):
            self._uncache(doctor)
        if doctor_id is not None:
            self._uncache(doctor_id)

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
            ended = self._ended  # read after the await: an end event may have come meanwhile
            for doctor_id, state in states.items():
                busy = state.status is DoctorStatus.BUSY and state.ref is not None
                self._cache_call(doctor_id, state.ref if busy and state.ref not in ended else None, now)
        moving = {d: cached[0] for d in due if (cached := cache.get(d)) is not None and cached[0] is not None}
        if not moving:
            return
        places = self.places
        if places is not None:
            unknown = {c for c in moving.values() if places.get(c) is None}
            if unknown:
                try:
                    await places.load(unknown)
                except Exception:  # the database is down: positions go out without an ETA
                    log.exception("could not read call locations")
        eta_s = self.settings.ranking.eta_s
        for doctor_id, call_id in moving.items():
            cached = cache.get(doctor_id)
            if cached is None or cached[0] != call_id:
                continue  # the call ended or changed hands while its location was read
            position = due[doctor_id]
            self._crumb(call_id, position)
            place = None if places is None else places.get(call_id)
            distance = None if place is None else haversine_m(position.lat, position.lon, *place)
            forwarded: DoctorPositionPayload = {
                "doctor": doctor_id,
                "lat": position.lat,
                "lon": position.lon,
                "acc": position.accuracy_m,
                "heading": position.heading_deg,
                "speed": position.speed_mps,
                "ts": position.ts_ms,
                "distance_m": None if distance is None else round(distance, 1),
                "eta_s": None if distance is None else round(eta_s(distance)),
            }
            await self.publisher.publish_ephemeral(
                call_channel(call_id), EventType.DOCTOR_POSITION, forwarded
            )

    async def sweep_silent(self) -> list[str]:
        """Move doctors silent for ``offline_after_ms`` to ``OFFLINE``; returns who went offline."""
        now = self.clock()
        limit = now - self.settings.offline_after_ms
        silent = [d for d, seen in self._last_seen.items() if seen < limit]
        gone: list[str] = []
        went: list[tuple[str, DoctorStatusPayload]] = []
        for doctor_id in silent:
            del self._last_seen[doctor_id]
            self.forget(doctor_id)
            result = await self.states.compare_and_set(
                doctor_id, expected=ON_SHIFT_IDLE, new=DoctorStatus.OFFLINE
            )
            if result.ok:
                gone.append(doctor_id)
                state = result.state
                payload: DoctorStatusPayload = {
                    "status": state.status.value,
                    "version": state.version,
                    "since": state.since_ms,
                    "reason": "silent",
                }
                went.append((doctor_id, payload))
        if went:
            # The change lives in the engine only; its events still take the outbox (a transaction of
            # their own, one for the whole sweep), so that a broker outage does not lose them.
            async with self.publisher.transaction() as tx:
                for doctor_id, payload in went:
                    tx.doctor(doctor_id, EventType.DOCTOR_STATUS, payload)
        return gone

    async def run(self) -> None:
        """Start a write of the pending fixes every ``flush_interval_ms`` and the forwarding of due
        positions every ``forward_tick_ms`` (without waiting for them; see the module docstring); sweep silent
        doctors every second and the index's expired entries every minute. Runs until cancelled
        (cancelling the writes and forwarding in flight; ``flush()`` writes what is left). An engine
        error is logged and the next tick goes on (fixes of a failed batch are lost: the next fix of
        each doctor replaces them within a second)."""
        tick = min(self.settings.forward_tick_ms, self.settings.flush_interval_ms) / 1000
        flush_every = self.settings.flush_interval_ms / 1000
        loop = asyncio.get_running_loop()
        next_flush = loop.time() + flush_every
        last_sweep = last_index_sweep = self.clock()
        writes: set[asyncio.Task[None]] = set()
        forwarding: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(tick)
                flush = loop.time() >= next_flush
                if flush:
                    next_flush = loop.time() + flush_every
                if flush and self._pending and len(writes) < MAX_WRITES_IN_FLIGHT:
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
