"""LocationIngest: the flush loop does not wait for its writes, forwarding reads states in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from dispatch.doctor_states import DoctorState, DoctorStatus
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.location_ingest import MAX_WRITES_IN_FLIGHT, FixOutcome, IngestSettings, LocationIngest
from geo.location_index import DoctorPosition
from geo.location_index_memory import MemoryLocationIndex

NOW = 1_800_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ms = NOW

    def __call__(self) -> int:
        return self.ms


class SlowIndex(MemoryLocationIndex):
    """A memory index whose writes wait until ``release`` is set; counts the writes in progress."""

    def __init__(self, clock: Clock) -> None:
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
    def __init__(self, clock: Clock) -> None:
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
    clock = Clock()
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
    clock = Clock()
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
    clock.ms += 500
    for doctor in ("d1", "d2", "d3"):
        ingest.accept(fix(doctor, NOW + 400))
    await ingest.flush()
    assert states.reads == [3] and len(broker.published) == 1
    # After forward_interval_ms d2 is forwarded again; after state_refresh_ms the states are re-read.
    clock.ms += 1_600
    for doctor in ("d1", "d2", "d3"):
        ingest.accept(fix(doctor, NOW + 2_000))
    await ingest.flush()
    assert states.reads == [3, 3] and len(broker.published) == 2
    position = await index.get("d3")
    assert position is not None and position.ts_ms == NOW + 2_000
