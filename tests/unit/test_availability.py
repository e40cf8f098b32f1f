"""The doctor-availability rules (``dispatch/availability.py``) and the call feed as a plain hub
subscriber (``dispatch/call_feed.py``), on the memory engine and the session's SQLite database (a change
persists the doctor's choice with its outbox row).

Every test's rules are stopped at its end (:func:`make_rules`), before its engine is disposed: left
running, the publisher's marker (``dispatch/publisher.py``: it marks published rows in one UPDATE
100 ms after a publish) wrote in a later test, through the finished test's engine, a second SQLite
connection on the loop's thread. SQLAlchemy commits a ``sessions.begin()`` block in a task of its own,
so either connection can hold the write lock across a loop iteration while the other writes: the
writer blocked the loop in ``busy_timeout`` (10 s), then failed "database is locked" (about one run
in five of ``test_a_verified_doctor_becomes_available...``: "status changes failed", ~13 s)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.availability import Availability
from dispatch.call_feed import CallStatusFollower
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.errors import DispatchError
from dispatch.publisher import EventPublisher
from geo.location_index_memory import MemoryLocationIndex
from models.db import make_engine, make_sessionmaker
from models.enums import DoctorStatus, Role
from models.outbox import OutboxEvent
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from realtime.broker import Publication
from realtime.broker_memory import MemoryBroker
from realtime.errors import ErrorCode
from realtime.hub import Hub

DOCTOR = "00000000-0000-0000-0000-000000000001"


WRITER_TASKS = ("outbox-marker", "status-writes")
"""The names of the tasks the publisher and the status writer start on demand."""


@pytest.fixture(autouse=True)
async def _no_writer_left_running() -> AsyncIterator[None]:
    """After each test (its fixtures torn down), no writer task of it is left for a later test."""
    yield
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name() in WRITER_TASKS and not t.done()]
    assert not left, f"writer tasks left running after the test: {left}"


@pytest.fixture
async def sessions(sqlite_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The session's migrated SQLite database (the outbox and doctor profiles live there)."""
    db = make_engine(sqlite_database_url)
    yield make_sessionmaker(db)
    await db.dispose()


Rules = tuple[Availability, MemoryDoctorStates, MemoryBroker]
MakeRules = Callable[..., Rules]


@pytest.fixture
async def make_rules(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[MakeRules]:
    """Makes availability rules on the test's database, each with its own doctor states (``states``,
    default a new memory one) and broker, reporting changes to ``changed``; at the end of the test
    writes what they hold and stops their tasks (the status writer, the publisher's marker) before
    the engine is disposed (see the module docstring)."""
    made: list[Rules] = []

    def make(changed: list[str], states: MemoryDoctorStates | None = None) -> Rules:
        states = MemoryDoctorStates() if states is None else states
        broker = MemoryBroker()
        rules = Availability(
            sessions, states, MemoryLocationIndex(), EventPublisher(broker, sessions), changed.append
        )
        made.append((rules, states, broker))
        return rules, states, broker

    yield make
    for rules, _, broker in made:
        await rules.writes.aclose()
        await rules.publisher.aclose()
        await broker.aclose()


async def _doctor(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions.begin() as session:
        user = await user_repo.create_user(
            session,
            email=f"{uuid.uuid4().hex[:12]}@availability.test",
            phone=None,
            password_hash="not-a-hash",
            full_name="Doctor Availability",
            role=Role.DOCTOR,
        )
        await doctor_repo.create_profile(
            session,
            user_id=user.id,
            licence_number=f"LIC-{uuid.uuid4().hex[:10]}",
            specialties=(),
            clinic_id=None,
        )
    return str(user.id)


async def _rows(sessions: async_sessionmaker[AsyncSession], channel: str) -> list[OutboxEvent]:
    async with sessions() as session:
        return list(await session.scalars(sa.select(OutboxEvent).where(OutboxEvent.channel == channel)))


async def test_a_change_persists_the_choice_with_its_event_in_one_transaction(
    sessions: async_sessionmaker[AsyncSession], make_rules: MakeRules
) -> None:
    doctor = await _doctor(sessions)
    rules, _, _ = make_rules([])
    await rules.set_status(doctor, "paused", verified=True)
    async with sessions() as session:
        profile = await doctor_repo.get_profile(session, uuid.UUID(doctor))
    assert profile is not None and profile.chosen_status == "paused" and profile.chosen_status_at is not None
    (row,) = await _rows(sessions, f"doctor:{doctor}")
    assert row.type == "doctor.status" and '"status":"paused"' in row.payload


class _Unreachable(MemoryDoctorStates):
    """Doctor states whose engine cannot be reached (Redis down)."""

    async def compare_and_set(self, *args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("connection refused")


async def test_an_unreachable_engine_answers_unavailable_and_commits_nothing(
    sessions: async_sessionmaker[AsyncSession], make_rules: MakeRules
) -> None:
    doctor = await _doctor(sessions)
    changed: list[str] = []
    rules, _, _ = make_rules(changed, _Unreachable())
    with pytest.raises(DispatchError) as refused:
        await rules.set_status(doctor, "available", verified=True)
    assert refused.value.code is ErrorCode.UNAVAILABLE and refused.value.http_status == 503
    async with sessions() as session:
        profile = await doctor_repo.get_profile(session, uuid.UUID(doctor))
    assert profile is not None and profile.chosen_status == "offline"
    assert await _rows(sessions, f"doctor:{doctor}") == [] and changed == []


async def test_a_verified_doctor_becomes_available_and_every_device_hears_of_it(
    make_rules: MakeRules,
) -> None:
    changed: list[str] = []
    rules, states, broker = make_rules(changed)
    await broker.subscribe(f"doctor:{DOCTOR}")
    state = await rules.set_status(DOCTOR, "available", verified=True)
    assert state.status is DoctorStatus.AVAILABLE
    assert (await states.get(DOCTOR)).status is DoctorStatus.AVAILABLE
    assert changed == [DOCTOR]
    delivery = await broker.receive()
    assert isinstance(delivery, Publication)
    assert (delivery.channel, delivery.type) == (f"doctor:{DOCTOR}", "doctor.status")
    assert delivery.decode()["data"]["status"] == "available"


@pytest.mark.parametrize(
    ("wanted", "verified", "code", "field"),
    [
        ("available", False, ErrorCode.FORBIDDEN, None),
        ("busy", True, ErrorCode.INVALID_INPUT, "status"),
        (None, True, ErrorCode.INVALID_INPUT, "status"),
    ],
)
async def test_refused_moves_change_nothing(
    wanted: Any,
    verified: bool,
    code: ErrorCode,
    field: str | None,
    make_rules: MakeRules,
) -> None:
    changed: list[str] = []
    rules, states, _ = make_rules(changed)
    with pytest.raises(DispatchError) as refused:
        await rules.set_status(DOCTOR, wanted, verified=verified)
    assert (refused.value.code, refused.value.field) == (code, field)
    assert (await states.get(DOCTOR)).status is DoctorStatus.OFFLINE
    assert changed == []


async def test_the_call_feed_follows_call_status_through_the_hub() -> None:
    broker = MemoryBroker()
    hub = Hub(broker)
    seen: list[tuple[str, str, str | None]] = []
    follower = CallStatusFollower(lambda *event: seen.append(event))
    await hub.add(CallStatusFollower.CHANNEL, follower)
    await broker.publish(CallStatusFollower.CHANNEL, "call.created", {"call": "c1"})
    ended = {"call": "c1", "status": "completed", "doctor": {"id": "d1"}}
    await broker.publish(CallStatusFollower.CHANNEL, "call.status", ended)
    for _ in range(2):
        hub.dispatch(await broker.receive())
    assert seen == [("c1", "completed", "d1")]
    assert follower.seen == 1
    await follower.recover(CallStatusFollower.CHANNEL)  # live only: nothing to recover
