"""Contract of DoctorStates, run against the memory and the Redis implementation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from dispatch.doctor_states import CasResult, DoctorStates, Restore
from dispatch.doctor_states_redis import RedisDoctorStates
from geo.location_index import DoctorPosition
from models.enums import DoctorStatus
from tests.clock import START_MS
from tests.conftest import redis_test_url
from tests.contract.live_engine import (  # noqa: F401 - fixtures register by import
    Live,
    live_fixture,
    make_live_fixture,
    redis_pair_fixture,
)

S = DoctorStatus


@contextlib.asynccontextmanager
async def contender_states(live: Live) -> AsyncIterator[DoctorStates]:
    """States for a crowd of concurrent callers: on Redis, an instance on its own client whose pool
    makes callers wait for one of 50 connections (redis-py's default pool refuses the 101st
    concurrent command instead of queueing it, which would test the pool, not the CAS)."""
    if live.redis is None or live.keys is None:
        yield live.states
        return
    pool = aioredis.BlockingConnectionPool.from_url(redis_test_url(), max_connections=50, timeout=30)
    client = aioredis.Redis(connection_pool=pool)
    try:
        yield RedisDoctorStates(client, live.keys, clock=live.clock)
    finally:
        await client.aclose()
        await pool.aclose()


async def _go_available(live: Live, doctor_id: str) -> None:
    result = await live.states.compare_and_set(doctor_id, expected=S.OFFLINE, new=S.AVAILABLE)
    assert result.ok


async def test_unknown_doctor_is_offline_at_version_zero(live: Live) -> None:
    state = await live.states.get("nobody")
    assert (state.doctor_id, state.status, state.ref, state.since_ms, state.version) == (
        "nobody",
        S.OFFLINE,
        None,
        0,
        0,
    )


async def test_successful_cas_sets_status_ref_since_and_version(live: Live) -> None:
    live.clock.advance(5)
    result = await live.states.compare_and_set("d1", expected=S.OFFLINE, new=S.AVAILABLE)
    assert result.ok
    assert result.state.status == S.AVAILABLE and result.state.ref is None
    assert result.state.since_ms == START_MS + 5 and result.state.version == 1
    assert await live.states.get("d1") == result.state

    live.clock.advance(1_000)
    offered = await live.states.compare_and_set("d1", expected=S.AVAILABLE, new=S.OFFERED, ref="offer-1")
    assert offered.ok and offered.state.ref == "offer-1" and offered.state.version == 2
    assert offered.state.since_ms == START_MS + 1_005
    assert await live.states.get("d1") == offered.state


async def test_failed_cas_changes_nothing_and_returns_current_state(live: Live) -> None:
    await _go_available(live, "d1")
    before = await live.states.get("d1")
    live.clock.advance(100)
    result = await live.states.compare_and_set("d1", expected=S.BUSY, new=S.AVAILABLE)
    assert result == CasResult(False, before)
    assert await live.states.get("d1") == before


async def test_offer_accept_complete_cycle_with_refs(live: Live) -> None:
    cas = live.states.compare_and_set
    await _go_available(live, "d1")
    assert (await cas("d1", expected=S.AVAILABLE, new=S.OFFERED, ref="offer-1")).ok
    # A stale accept of another offer fails; the right one succeeds and names the call.
    wrong = await cas("d1", expected=S.OFFERED, expected_ref="offer-0", new=S.BUSY, ref="call-9")
    assert not wrong.ok and wrong.state.ref == "offer-1"
    busy = await cas("d1", expected=S.OFFERED, expected_ref="offer-1", new=S.BUSY, ref="call-7")
    assert busy.ok and busy.state.status == S.BUSY and busy.state.ref == "call-7"
    # Expiry of the old offer now fails: the doctor is busy.
    assert not (await cas("d1", expected=S.OFFERED, expected_ref="offer-1", new=S.AVAILABLE)).ok
    done = await cas("d1", expected=S.BUSY, expected_ref="call-7", new=S.AVAILABLE)
    assert done.ok and done.state.ref is None and done.state.version == 4
    assert (await live.states.get("d1")).ref is None


async def test_get_many_reads_what_get_reads(live: Live) -> None:
    cas = live.states.compare_and_set
    await _go_available(live, "d1")
    await _go_available(live, "d2")
    assert (await cas("d2", expected=S.AVAILABLE, new=S.OFFERED, ref="offer 7 = -")).ok
    assert (await cas("d2", expected=S.OFFERED, new=S.BUSY, ref="call-7")).ok
    await _go_available(live, "d3")
    assert (await cas("d3", expected=S.AVAILABLE, new=S.PAUSED, ref=" - ")).ok
    ids = ["d2", "nobody", "d1", "d3"]
    many = await live.states.get_many(ids)
    assert many == {d: await live.states.get(d) for d in ids}
    assert many["d2"].ref == "call-7" and many["d3"].ref == " - " and many["nobody"].version == 0
    assert await live.states.get_many([]) == {}
    crowd = [f"c{i}" for i in range(2_500)]  # several script calls on Redis
    assert {d: s.status for d, s in (await live.states.get_many(crowd)).items()} == dict.fromkeys(
        crowd, S.OFFLINE
    )
    with pytest.raises(ValueError, match="invalid doctor id"):
        await live.states.get_many(["d1", "bad id"])


async def test_expected_version(live: Live) -> None:
    await _go_available(live, "d1")
    cas = live.states.compare_and_set
    assert not (await cas("d1", expected=S.AVAILABLE, new=S.PAUSED, expected_version=0)).ok
    paused = await cas("d1", expected=S.AVAILABLE, new=S.PAUSED, expected_version=1)
    assert paused.ok and paused.state.version == 2
    # Same status again is a new version (e.g. a new pause reason).
    again = await cas("d1", expected=[S.PAUSED], new=S.PAUSED, ref="lunch", expected_version=2)
    assert again.ok and again.state.version == 3 and again.state.ref == "lunch"


async def test_expected_accepts_several_statuses(live: Live) -> None:
    await _go_available(live, "d1")
    result = await live.states.compare_and_set(
        "d1", expected={S.AVAILABLE, S.PAUSED, S.OFFERED}, new=S.OFFLINE
    )
    assert result.ok and result.state.status == S.OFFLINE


async def test_invalid_arguments_raise_before_any_change(live: Live) -> None:
    cas = live.states.compare_and_set
    await _go_available(live, "d1")
    with pytest.raises(ValueError, match="only from 'available'"):
        await cas("d1", expected={S.AVAILABLE, S.OFFERED}, new=S.OFFERED, ref="o2")
    with pytest.raises(ValueError, match="needs a ref"):
        await cas("d1", expected=S.AVAILABLE, new=S.OFFERED)
    with pytest.raises(ValueError, match="needs a ref"):
        await cas("d1", expected=S.AVAILABLE, new=S.BUSY)
    with pytest.raises(ValueError, match="invalid doctor id"):
        await cas("bad id", expected=S.OFFLINE, new=S.AVAILABLE)
    with pytest.raises(ValueError, match="invalid doctor id"):
        await live.states.get("{tag}")
    with pytest.raises(ValueError, match="at least one"):
        await cas("d1", expected=[], new=S.PAUSED)
    with pytest.raises(ValueError, match="unknown doctor status"):
        await cas("d1", expected=["sleeping"], new=S.PAUSED)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await cas("d1", expected=S.AVAILABLE, new=S.PAUSED, ref="x" * 129)
    with pytest.raises(ValueError):
        await cas("d1", expected=S.AVAILABLE, new=S.PAUSED, expected_version=-1)
    state = await live.states.get("d1")
    assert state.status == S.AVAILABLE and state.version == 1


async def test_one_winner_among_1000_concurrent_reservations(live: Live) -> None:
    await _go_available(live, "d1")
    async with contender_states(live) as states:
        results = await asyncio.gather(
            *(
                states.compare_and_set("d1", expected=S.AVAILABLE, new=S.OFFERED, ref=f"offer-{i}")
                for i in range(1_000)
            )
        )
    winners = [r for r in results if r.ok]
    assert len(winners) == 1
    state = await live.states.get("d1")
    assert state == winners[0].state and state.version == 2
    # Every loser saw the winner's reservation, not a half-written state.
    assert all(r.state == state for r in results if not r.ok)


async def test_concurrent_reservations_of_many_doctors_each_get_one_offer(live: Live) -> None:
    doctors = [f"d{i}" for i in range(20)]
    for doctor in doctors:
        await _go_available(live, doctor)
    async with contender_states(live) as states:
        results = await asyncio.gather(
            *(
                states.compare_and_set(doctor, expected=S.AVAILABLE, new=S.OFFERED, ref=f"o-{i}-{doctor}")
                for i in range(50)
                for doctor in doctors
            )
        )
    for doctor in doctors:
        assert sum(1 for r in results if r.ok and r.state.doctor_id == doctor) == 1


async def test_cas_reaches_the_location_index_atomically(live: Live) -> None:
    """The doctor is a nearest candidate exactly while available: offered or busy doctors never are."""
    await live.index.upsert(DoctorPosition("d1", 55.75, 37.62, 5.0, live.clock()))

    async def found() -> bool:
        hits = await live.index.nearest_available(55.751, 37.62, radius_m=1_000)
        return [h.doctor_id for h in hits] == ["d1"]

    assert not await found()
    await _go_available(live, "d1")
    assert await found()
    await live.states.compare_and_set("d1", expected=S.AVAILABLE, new=S.OFFERED, ref="o1")
    assert not await found()
    await live.states.compare_and_set("d1", expected=S.OFFERED, new=S.AVAILABLE)
    assert await found()
    await live.states.compare_and_set("d1", expected=S.AVAILABLE, new=S.PAUSED)
    assert not await found()


@pytest.mark.parametrize("backend", ["redis"])
async def test_one_winner_across_two_redis_clients(live: Live) -> None:
    """Two processes' worth of clients (separate connection pools and instances) race for one doctor."""
    await _go_available(live, "d1")
    async with contender_states(live) as first, contender_states(live) as second:
        contenders = [
            states.compare_and_set("d1", expected=S.AVAILABLE, new=S.OFFERED, ref=f"offer-{i}")
            for i in range(500)
            for states in (first, second)
        ]
        results = await asyncio.gather(*contenders)
        assert sum(r.ok for r in results) == 1
        assert await first.get("d1") == await second.get("d1") == await live.states.get("d1")


@pytest.mark.parametrize("backend", ["redis"])
async def test_redis_record_layout(live: Live) -> None:
    """The record is the hash named by realtime.keys, with no TTL (one per doctor on the roster)."""
    assert live.redis is not None and live.keys is not None
    await _go_available(live, "d1")
    await live.states.compare_and_set("d1", expected=S.AVAILABLE, new=S.OFFERED, ref="o1")
    record = await live.redis.hgetall(live.keys.loc_doctor("d1"))
    assert record[b"st"] == b"offered" and record[b"ref"] == b"o1" and record[b"ver"] == b"2"
    assert await live.redis.pttl(live.keys.loc_doctor("d1")) == -1


# --- restore and engaged (the rebuild after a lost engine, the repair sweep) -------------------------


async def test_restore_writes_only_doctors_without_a_state(live: Live) -> None:
    """Restored doctors get the database's state at version 1; a doctor changed since the engine came
    back (here d2, who re-announced) keeps the newer state."""
    await _go_available(live, "d2")
    live.clock.advance(7)
    written = await live.states.restore(
        [
            Restore("d1", S.BUSY, "call-1"),
            Restore("d2", S.PAUSED),
            Restore("d3", S.OFFERED, "offer-3"),
            Restore("d4", S.AVAILABLE),
        ]
    )
    assert written == ["d1", "d3", "d4"]
    states = await live.states.get_many(["d1", "d2", "d3", "d4"])
    assert [(s.status, s.ref, s.version) for s in states.values()] == [
        (S.BUSY, "call-1", 1),
        (S.AVAILABLE, None, 1),
        (S.OFFERED, "offer-3", 1),
        (S.AVAILABLE, None, 1),
    ]
    assert states["d1"].since_ms == START_MS + 7
    assert await live.states.restore([Restore("d1", S.AVAILABLE)]) == []  # idempotent: a second run
    assert (await live.states.get("d1")).status == S.BUSY
    # The restored offer is a real one: it is decided by the usual compare-and-set.
    freed = await live.states.compare_and_set(
        "d3", expected=S.OFFERED, expected_ref="offer-3", new=S.AVAILABLE
    )
    assert freed.ok and freed.state.version == 2


async def test_restored_availability_reaches_the_location_index(live: Live) -> None:
    """A doctor whose position came back before the rebuild is a candidate once restored available."""
    await live.index.upsert(DoctorPosition("d1", 55.75, 37.62, 5.0, live.clock()))
    await live.index.upsert(DoctorPosition("d2", 55.75, 37.621, 5.0, live.clock()))
    assert await live.index.nearest_available(55.751, 37.62, radius_m=1_000) == []
    await live.states.restore([Restore("d1", S.AVAILABLE), Restore("d2", S.BUSY, "c2")])
    hits = await live.index.nearest_available(55.751, 37.62, radius_m=1_000)
    assert [h.doctor_id for h in hits] == ["d1"]


async def test_restore_refuses_bad_entries_before_writing_any(live: Live) -> None:
    bad = [
        [Restore("d1", S.AVAILABLE), Restore("d2", S.BUSY)],  # busy without its call
        [Restore("d1", S.AVAILABLE), Restore("bad id", S.AVAILABLE)],
        [Restore("d1", S.AVAILABLE), Restore("d1", S.PAUSED)],  # one doctor twice
        [Restore("d1", S.AVAILABLE), Restore("d2", "sleeping")],  # type: ignore[arg-type]
    ]
    for entries in bad:
        with pytest.raises(ValueError):
            await live.states.restore(entries)
    assert (await live.states.get("d1")).version == 0


async def test_engaged_lists_offered_and_busy_doctors(live: Live) -> None:
    for doctor in ("d1", "d2", "d3", "d4"):
        await _go_available(live, doctor)
    await live.states.compare_and_set("d1", expected=S.AVAILABLE, new=S.OFFERED, ref="o1")
    await live.states.compare_and_set("d2", expected=S.AVAILABLE, new=S.BUSY, ref="c2")
    await live.states.compare_and_set("d3", expected=S.AVAILABLE, new=S.OFFERED, ref="o3")
    await live.states.compare_and_set("d3", expected=S.OFFERED, new=S.AVAILABLE)  # declined: not engaged
    await live.states.restore([Restore("d5", S.BUSY, "c5")])
    engaged = {s.doctor_id: (s.status, s.ref) for s in await live.states.engaged()}
    assert engaged == {"d1": (S.OFFERED, "o1"), "d2": (S.BUSY, "c2"), "d5": (S.BUSY, "c5")}
    assert {s.doctor_id: s for s in await live.states.engaged()} == await live.states.get_many(engaged)


@pytest.mark.parametrize("backend", ["redis"])
async def test_engaged_set_heals_records_written_before_it(live: Live) -> None:
    """A busy record from before the engaged set existed (no member) joins it at a restore; a member
    whose record was changed outside the scripts leaves it on the next read."""
    assert live.redis is not None and live.keys is not None
    await live.redis.hset(
        live.keys.loc_doctor("old"), mapping={"st": "busy", "ref": "c0", "since": 1, "ver": 3}
    )
    await live.redis.sadd(live.keys.loc_engaged(), "gone")
    assert await live.states.engaged() == []
    assert await live.states.restore([Restore("old", S.AVAILABLE)]) == []
    assert [(s.doctor_id, s.status, s.version) for s in await live.states.engaged()] == [("old", S.BUSY, 3)]
    assert await live.redis.smembers(live.keys.loc_engaged()) == {b"old"}
