"""LocationIngest: the flush loop does not wait for its writes, forwarding reads states in batches,
forwarded positions carry the ETA, breadcrumbs are sampled and stop with the call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from dispatch.breadcrumbs import BreadcrumbWriter
from dispatch.call_places import CallPlaces
from dispatch.doctor_states import DoctorState
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.location_ingest import MAX_WRITES_IN_FLIGHT, FixOutcome, IngestSettings, LocationIngest
from geo.distance import haversine_m
from geo.location_index import DoctorPosition
from geo.location_index_memory import MemoryLocationIndex
from models.db import make_engine, make_sessionmaker
from models.enums import DoctorStatus
from tests.clock import ManualClock

NOW = 1_800_000_000_000


class SlowIndex(MemoryLocationIndex):
    """A memory index whose writes wait until ``release`` is set; counts the writes in progress."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.release = asyncio.Event()
        self.waiting = 0
        self.batches: list[int] = []

    async def upsert_many(self, positions: Sequence[DoctorPosition]) -> int:
        self.waiting += 1
        await self.release.wait()
        self.waiting -= 1
        self.batches.append(len(positions))
        return await super().upsert_many(positions)


class CountingStates(MemoryDoctorStates):
    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.reads: list[int] = []

    async def get_many(self, doctor_ids: Any) -> dict[str, DoctorState]:
        self.reads.append(len(doctor_ids))
        return await super().get_many(doctor_ids)


class Broker:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, dict[str, Any]]] = []

    async def publish_ephemeral(self, channel: str, event_type: str, data: dict[str, Any]) -> None:
        self.published.append((channel, event_type, data))


def fix(doctor: str, ts: int, lat: float = 55.75) -> DoctorPosition:
    return DoctorPosition(doctor, lat, 37.62, 5.0, ts)


async def test_run_keeps_ticking_while_writes_are_slow_and_bounds_them() -> None:
    clock = ManualClock(NOW)
    index = SlowIndex(clock)
    ingest = LocationIngest(
        index,
        CountingStates(clock),
        Broker(),  # type: ignore[arg-type]
        IngestSettings(flush_interval_ms=1),
        clock=clock,
    )
    loop = asyncio.create_task(ingest.run())
    try:
        for round_ in range(MAX_WRITES_IN_FLIGHT + 3):
            assert ingest.accept(fix("d1", NOW - 1000 + round_)) is FixOutcome.ACCEPTED
            assert ingest.accept(fix("d2", NOW - 1000 + round_)) is FixOutcome.ACCEPTED
            await asyncio.sleep(0.01)
        # The loop started writes without waiting for them, never more than the bound; the rest waits
        # in the pending map, coalesced (latest fix per doctor).
        assert index.waiting == MAX_WRITES_IN_FLIGHT
        assert len(ingest._pending) == 2
        index.release.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not ingest._pending and index.waiting == 0:
                break
        assert index.waiting == 0 and not ingest._pending
        latest = await index.get("d1")
        assert latest is not None and latest.ts_ms == NOW - 1000 + MAX_WRITES_IN_FLIGHT + 2
        assert ingest.flushed == sum(index.batches)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_forwarding_reads_states_in_one_batch_and_caches_them() -> None:
    clock = ManualClock(NOW)
    index = MemoryLocationIndex(clock=clock)
    states = CountingStates(clock)
    broker = Broker()
    ingest = LocationIngest(index, states, broker, clock=clock)  # type: ignore[arg-type]
    for doctor in ("d1", "d2", "d3"):
        assert (
            await states.compare_and_set(doctor, expected=DoctorStatus.OFFLINE, new=DoctorStatus.AVAILABLE)
        ).ok
    assert (
        await states.compare_and_set(
            "d2", expected=DoctorStatus.AVAILABLE, new=DoctorStatus.BUSY, ref="call-1"
        )
    ).ok
    for doctor in ("d1", "d2", "d3"):
        ingest.accept(fix(doctor, NOW - 100))
    assert await ingest.flush() == 3
    assert states.reads == [3]  # one batch for the three doctors
    assert [(c, t, d["doctor"]) for c, t, d in broker.published] == [("call:call-1", "doctor.position", "d2")]
    # Within the refresh interval the cached states serve; d2 was forwarded a moment ago.
    clock.advance(500)
    for doctor in ("d1", "d2", "d3"):
        ingest.accept(fix(doctor, NOW + 400))
    await ingest.flush()
    assert states.reads == [3] and len(broker.published) == 1
    # After forward_interval_ms d2 is forwarded again; after state_refresh_ms the states are re-read.
    clock.advance(1_600)
    for doctor in ("d1", "d2", "d3"):
        ingest.accept(fix(doctor, NOW + 2_000))
    await ingest.flush()
    assert states.reads == [3, 3] and len(broker.published) == 2
    position = await index.get("d3")
    assert position is not None and position.ts_ms == NOW + 2_000


class Places(CallPlaces):
    """Call locations known up front (the database read is covered by tests/integration)."""

    def __init__(self, known: dict[str, tuple[float, float]]) -> None:
        super().__init__(make_sessionmaker(make_engine("sqlite+aiosqlite://")))
        self.known = known
        self.loads: list[set[str]] = []

    async def load(self, call_ids: Any) -> None:
        self.loads.append(set(call_ids))
        for call_id in call_ids:
            if call_id in self.known:
                self._places[call_id] = self.known[call_id]


async def _tracking(
    clock: ManualClock,
) -> tuple[LocationIngest, MemoryDoctorStates, Broker, BreadcrumbWriter, Places]:
    states = MemoryDoctorStates(clock=clock)
    broker = Broker()
    writer = BreadcrumbWriter(make_sessionmaker(make_engine("sqlite+aiosqlite://")))
    places = Places({"call-1": (55.76, 37.62)})
    ingest = LocationIngest(
        MemoryLocationIndex(clock=clock),
        states,
        broker,  # type: ignore[arg-type]
        clock=clock,
        places=places,
        breadcrumbs=writer,
    )
    assert (await states.compare_and_set("d1", expected=DoctorStatus.OFFLINE, new=DoctorStatus.AVAILABLE)).ok
    assert (
        await states.compare_and_set(
            "d1", expected=DoctorStatus.AVAILABLE, new=DoctorStatus.BUSY, ref="call-1"
        )
    ).ok
    return ingest, states, broker, writer, places


async def test_forwarded_positions_carry_distance_and_the_rankings_eta() -> None:
    clock = ManualClock(NOW)
    ingest, _, broker, _, places = await _tracking(clock)
    ingest.accept(fix("d1", NOW - 100, lat=55.75))
    await ingest.flush()
    ((channel, _, data),) = broker.published
    distance = haversine_m(55.75, 37.62, 55.76, 37.62)
    assert channel == "call:call-1" and data["distance_m"] == round(distance, 1)
    assert data["eta_s"] == round(distance * 1.4 / 8.33)  # RankingSettings: road factor / speed
    clock.advance(1_000)
    ingest.accept(fix("d1", NOW + 900, lat=55.755))
    await ingest.flush()
    assert broker.published[-1][2]["eta_s"] < data["eta_s"]
    assert places.loads == [{"call-1"}]  # the call's location was read once


async def test_breadcrumbs_sampled_by_fix_time_and_none_after_the_call_ends() -> None:
    clock = ManualClock(NOW)
    ingest, states, broker, writer, places = await _tracking(clock)
    ingest.accept(fix("d1", NOW - 5_000))
    await ingest.flush()  # the forwarding round learns the call and records this fix
    for i in range(1, 9):  # four fixes a second: every other one is a breadcrumb
        clock.advance(250)
        ingest.accept(fix("d1", NOW - 5_000 + 250 * i))
        await ingest.flush()
    assert [p.ts_ms - (NOW - 5_000) for _, p in writer._buffer] == [0, 1_000, 2_000]
    assert {c for c, _ in writer._buffer} == {"call-1"}
    forwarded = len(broker.published)
    # The call ends: its status event arrives before the doctor's state is set back to available.
    ingest.call_changed("call-1", "completed", "d1")
    assert (await states.get("d1")).status is DoctorStatus.BUSY
    for i in range(9, 30):
        clock.advance(250)
        ingest.accept(fix("d1", NOW - 5_000 + 250 * i))
        await ingest.flush()
    assert len(broker.published) == forwarded and len(writer) == 3
    assert places.get("call-1") is None  # forgotten with the call
    # A new call for the same doctor is tracked again.
    assert (
        await states.compare_and_set("d1", expected=DoctorStatus.BUSY, new=DoctorStatus.BUSY, ref="call-2")
    ).ok
    ingest.call_changed("call-2", "assigned", "d1")
    clock.advance(1_000)
    ingest.accept(fix("d1", NOW + 4_000))
    await ingest.flush()
    assert broker.published[-1][0] == "call:call-2" and broker.published[-1][2]["eta_s"] is None
    assert [c for c, _ in writer._buffer][-1] == "call-2"


async def test_fixes_one_interval_apart_are_each_forwarded_though_forwarding_runs_a_tick_later() -> None:
    clock = ManualClock(NOW)
    ingest, _, broker, _, _ = await _tracking(clock)
    for second in range(5):
        ingest.accept(fix("d1", NOW + second * 1_000))  # arrives on the second...
        clock.advance(25)  # ...and is forwarded one flush tick later
        await ingest.flush()
        clock.advance(975)
    assert [data["ts"] for _, _, data in broker.published] == [NOW + s * 1_000 for s in range(5)]


async def test_forwarding_follows_fix_time_through_jitter_and_bounds_a_racing_clock() -> None:
    clock = ManualClock(NOW)
    ingest, _, broker, _, _ = await _tracking(clock)
    stamps = [0, 995, 2_000, 3_003, 3_998]  # a "1 Hz" stream: fix times jitter a few ms...
    arrivals = [0, 990, 2_010, 2_985, 4_000]  # ...and arrivals more (the network)
    for stamp, arrival in zip(stamps, arrivals, strict=True):
        clock.set(NOW + arrival)
        ingest.accept(fix("d1", NOW + stamp))
        await ingest.flush()
    assert [data["ts"] for _, _, data in broker.published] == [NOW + s for s in stamps]
    # Twice a second by fix time, the slack does not let every fix through.
    broker.published.clear()
    for i in range(1, 5):
        clock.set(NOW + 4_000 + i * 500)
        ingest.accept(fix("d1", NOW + 3_998 + i * 500))
        await ingest.flush()
    assert len(broker.published) == 2
    # A device whose ts runs ten times faster than time: at most one forward per half interval.
    broker.published.clear()
    for i in range(1, 11):
        clock.set(NOW + 6_000 + i * 100)
        ingest.accept(fix("d1", NOW + 6_000 + i * 1_000))
        await ingest.flush()
    assert len(broker.published) == 2  # at +500 ms and +1,000 ms of arrival time (racing clock)
