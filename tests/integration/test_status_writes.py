"""Doctors' status changes written in batches (``dispatch/status_writes.py``) through the availability
rules, on the memory engine and the session's SQLite database: concurrent changes share one
transaction, each caller gets its own answer, and a failed batch fails only the change that fails
alone.

No test sleeps: the window is a minute and ``max_batch`` is the number of changes, so a batch is
written the moment the last change arrives (a change left waiting would hit the test's timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch.availability import Availability
from dispatch.doctor_states import DoctorState
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.publisher import EventPublisher, OutboxTransaction
from dispatch.status_writes import StatusWriter
from geo.location_index_memory import MemoryLocationIndex
from models.db import make_engine, make_sessionmaker
from models.enums import DoctorStatus, Role
from models.outbox import OutboxEvent
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from realtime.broker_memory import MemoryBroker

WINDOW_MS = 60_000
"""Long enough that only a full batch is ever written (see the module docstring)."""


@pytest.fixture
async def engine(sqlite_database_url: str) -> AsyncIterator[AsyncEngine]:
    db = make_engine(sqlite_database_url)
    yield db
    await db.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@contextlib.contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine executes meanwhile, their first three words (an executemany
    counts once), and ``COMMIT`` for each commit."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    def commit(_conn: Any) -> None:
        seen.append("COMMIT")

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    sa.event.listen(engine.sync_engine, "commit", commit)
    try:
        yield seen
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)
        sa.event.remove(engine.sync_engine, "commit", commit)


async def _doctors(sessions: async_sessionmaker[AsyncSession], count: int) -> list[tuple[str, str]]:
    """``count`` new doctors: ``(user id, licence number)`` each."""
    made: list[tuple[str, str]] = []
    async with sessions.begin() as session:
        for _ in range(count):
            tag = uuid.uuid4().hex[:12]
            user = await user_repo.create_user(
                session,
                email=f"{tag}@status-writes.test",
                phone=None,
                password_hash="not-a-hash",
                full_name="Doctor Batch",
                role=Role.DOCTOR,
            )
            licence = f"LIC-{tag}"
            await doctor_repo.create_profile(
                session, user_id=user.id, licence_number=licence, specialties=(), clinic_id=None
            )
            made.append((str(user.id), licence))
    return made


def _rules(
    sessions: async_sessionmaker[AsyncSession], publisher: EventPublisher, max_batch: int
) -> tuple[Availability, StatusWriter]:
    writes = StatusWriter(publisher, window_ms=WINDOW_MS, max_batch=max_batch)
    rules = Availability(
        sessions, MemoryDoctorStates(), MemoryLocationIndex(), publisher, lambda _: None, writes=writes
    )
    return rules, writes


async def _chosen(sessions: async_sessionmaker[AsyncSession], doctor: str) -> str:
    async with sessions() as session:
        profile = await doctor_repo.get_profile(session, uuid.UUID(doctor))
    assert profile is not None
    return profile.chosen_status


async def _events(sessions: async_sessionmaker[AsyncSession], doctor: str) -> list[dict[str, Any]]:
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.channel == f"doctor:{doctor}").order_by(OutboxEvent.id)
        )
        return [orjson.loads(row.payload) for row in rows]


async def _all(rules: Availability, moves: list[tuple[str, str]]) -> list[DoctorState | BaseException]:
    async with asyncio.timeout(10):
        return await asyncio.gather(
            *(rules.set_status(doctor, wanted, verified=True) for doctor, wanted in moves),
            return_exceptions=True,
        )


async def test_concurrent_changes_share_one_transaction_and_each_caller_gets_its_own_answer(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    doctors = [d for d, _ in await _doctors(sessions, 12)]
    rules, writes = _rules(sessions, EventPublisher(MemoryBroker(), sessions), len(doctors))
    moves = [(d, "available" if i % 3 else "paused") for i, d in enumerate(doctors)]
    with statements(engine) as seen:
        answers = await _all(rules, moves)
    # One transaction: one UPDATE (executed for every change), one INSERT of the outbox rows. (Commits
    # are not counted: the publisher's marker commits its own UPDATE of the outbox when it likes.)
    assert seen.count("UPDATE doctor_profiles SET") == 1
    assert seen.count("INSERT INTO outbox") == 1
    assert (writes.stats.transactions, writes.stats.changes, writes.stats.fallbacks) == (1, 12, 0)
    for (doctor, wanted), answer in zip(moves, answers, strict=True):
        assert isinstance(answer, DoctorState) and answer.status is DoctorStatus(wanted)
        assert await _chosen(sessions, doctor) == wanted
        (event,) = await _events(sessions, doctor)
        assert (event["status"], event["version"]) == (wanted, answer.version)


async def test_a_change_that_fails_fails_alone_and_the_others_are_committed(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    made = await _doctors(sessions, 5)
    refused, refused_licence = made[2]
    trigger = f"refuse_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:  # the database refuses this one doctor's change
        await conn.exec_driver_sql(
            f"CREATE TRIGGER {trigger} BEFORE UPDATE ON doctor_profiles "
            f"WHEN OLD.licence_number = '{refused_licence}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        rules, writes = _rules(sessions, EventPublisher(MemoryBroker(), sessions), len(made))
        with statements(engine) as seen:
            answers = await _all(rules, [(d, "available") for d, _ in made])
    finally:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
    # The batch failed, then every change went alone: four committed, the refused one answered with
    # its own error.
    assert (writes.stats.fallbacks, writes.stats.transactions, writes.stats.failed) == (1, 4, 1)
    assert seen.count("UPDATE doctor_profiles SET") == 1 + 5  # the batch's, then one per change
    assert seen.count("INSERT INTO outbox") == 4  # one per committed transaction
    for (doctor, _), answer in zip(made, answers, strict=True):
        if doctor == refused:
            assert isinstance(answer, DBAPIError) and "refused" in str(answer)
            assert await _chosen(sessions, doctor) == "offline" and await _events(sessions, doctor) == []
        else:
            assert isinstance(answer, DoctorState) and answer.status is DoctorStatus.AVAILABLE
            assert await _chosen(sessions, doctor) == "available"
            assert [e["status"] for e in await _events(sessions, doctor)] == ["available"]


class _Fails(EventPublisher):
    """A publisher whose first ``times`` transactions fail with ``error`` before committing."""

    def __init__(self, error: Exception, times: int, *args: Any) -> None:
        super().__init__(*args)
        self.error, self.times, self.calls = error, times, 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[OutboxTransaction]:
        self.calls += 1
        async with super().transaction() as tx:
            yield tx
            if self.times > 0:
                self.times -= 1
                raise self.error


async def test_a_batch_that_fails_once_is_written_change_by_change_and_nobody_fails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    doctors = [d for d, _ in await _doctors(sessions, 4)]
    refused = IntegrityError("UPDATE", {}, Exception("a constraint"))
    rules, writes = _rules(sessions, _Fails(refused, 1, MemoryBroker(), sessions), len(doctors))
    answers = await _all(rules, [(d, "paused") for d in doctors])
    assert all(isinstance(a, DoctorState) and a.status is DoctorStatus.PAUSED for a in answers)
    assert (writes.stats.fallbacks, writes.stats.transactions, writes.stats.failed) == (1, 4, 0)
    for doctor in doctors:
        assert await _chosen(sessions, doctor) == "paused"
        assert len(await _events(sessions, doctor)) == 1  # the failed batch staged nothing


async def test_an_outage_fails_the_whole_batch_at_once_without_retrying_change_by_change(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    doctors = [d for d, _ in await _doctors(sessions, 4)]
    outage = OperationalError("COMMIT", {}, Exception("disk I/O error"))
    publisher = _Fails(outage, 1, MemoryBroker(), sessions)
    rules, writes = _rules(sessions, publisher, len(doctors))
    answers = await _all(rules, [(d, "paused") for d in doctors])
    assert all(answer is outage for answer in answers)
    assert (writes.stats.fallbacks, writes.stats.transactions, writes.stats.failed) == (0, 0, 4)
    assert publisher.calls == 1  # one transaction tried, not one more per change
    for doctor in doctors:
        assert await _chosen(sessions, doctor) == "offline" and await _events(sessions, doctor) == []


async def test_two_changes_of_one_doctor_in_one_batch_apply_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (doctor, _), (other, _) = await _doctors(sessions, 2)
    rules, writes = _rules(sessions, EventPublisher(MemoryBroker(), sessions), 3)
    first, second, third = await _all(rules, [(doctor, "paused"), (other, "paused"), (doctor, "available")])
    assert (
        isinstance(first, DoctorState) and isinstance(second, DoctorState) and isinstance(third, DoctorState)
    )
    assert (first.status, third.status) == (DoctorStatus.PAUSED, DoctorStatus.AVAILABLE)
    assert third.version > first.version
    assert writes.stats.transactions == 1
    assert await _chosen(sessions, doctor) == "available"  # the later change wins
    events = await _events(sessions, doctor)
    assert [(e["status"], e["version"]) for e in events] == [
        ("paused", first.version),
        ("available", third.version),
    ]


async def test_a_caller_gone_before_the_commit_still_has_its_change_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    (doctor, _), (other, _) = await _doctors(sessions, 2)
    rules, writes = _rules(sessions, EventPublisher(MemoryBroker(), sessions), 2)
    gone = asyncio.create_task(rules.set_status(doctor, "available", verified=True))
    for _ in range(100):  # a few loop iterations: queued, the engine has moved, the batch waits
        if len(writes):
            break
        await asyncio.sleep(0)
    assert len(writes) == 1
    gone.cancel()  # the doctor's socket closed
    with pytest.raises(asyncio.CancelledError):
        await gone
    async with asyncio.timeout(10):
        await rules.set_status(other, "available", verified=True)
    await writes.aclose()
    assert await _chosen(sessions, doctor) == "available"
    assert [e["status"] for e in await _events(sessions, doctor)] == ["available"]
