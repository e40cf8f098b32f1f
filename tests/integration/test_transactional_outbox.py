"""The transactional outbox (``dispatch/publisher.py``, ``dispatch/outbox_relay.py``) on SQLite and
PostgreSQL: events staged in the change's transaction, published after the commit, left to the relay
when the broker fails, relayed in id order with their keys, marked in batches, pruned; one relay active
across processes sharing the database.

Each dialect gets a fresh database for this module (the relay claims every unpublished row, so rows
of other tests must not be there). Time is a ``ManualClock``: no test sleeps on wall time (the marker's
own short wait is replaced by an explicit ``flush_marks``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.schema import CreateTable

from dispatch.outbox_relay import OutboxRelay
from dispatch.outbox_settings import OutboxSettings
from dispatch.publisher import EventPublisher, offer_subject
from migrations import runner
from models.db import make_engine, make_sessionmaker
from models.outbox import OutboxEvent
from realtime.broker import Outgoing, Publication
from realtime.broker_memory import MemoryBroker
from realtime.event_types import EventType
from tests.clock import ManualClock
from tests.conftest import create_pg_database, drop_pg_database

SETTINGS = OutboxSettings(commit_lease_ms=5_000, relay_lease_ms=5_000, relay_batch=3, retention_s=3_600)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def outbox_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('outbox') / 'outbox.db'}"
        await asyncio.to_thread(runner.upgrade, url)
        yield url
        return
    url = await create_pg_database("tot_outbox")
    await asyncio.to_thread(runner.upgrade, url)
    yield url
    await drop_pg_database(url)


@pytest.fixture
async def db(outbox_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(outbox_url)
    async with engine.begin() as conn:  # each test starts from an empty outbox
        await conn.execute(sa.text("DELETE FROM outbox"))
        await conn.execute(sa.text("DELETE FROM outbox_relay_lease"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(db: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(db)


class FlakyBroker(MemoryBroker):
    """A memory broker whose ``publish_many`` fails while ``down`` (Redis unreachable), recording the
    keys it was given."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.down = False
        self.keys: list[str | None] = []

    async def publish_many(self, events: Sequence[Outgoing]) -> list[Publication]:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.keys.extend(e.key for e in events)
        return await super().publish_many(events)


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxEvent]:
    async with sessions() as session:
        return list(await session.scalars(sa.select(OutboxEvent).order_by(OutboxEvent.id)))


async def _received(broker: MemoryBroker, count: int) -> list[Publication]:
    got = []
    for _ in range(count):
        delivery = await asyncio.wait_for(broker.receive(), 5)
        assert isinstance(delivery, Publication)
        got.append(delivery)
    return got


def _statements(db: AsyncEngine) -> list[str]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.lstrip().split(None, 1)[0].upper())

    sa.event.listen(db.sync_engine, "before_cursor_execute", record)
    return seen


async def test_rows_commit_with_the_change_and_a_rollback_leaves_none(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine
) -> None:
    clock = ManualClock()
    broker = FlakyBroker(clock)
    publisher = EventPublisher(broker, sessions, settings=SETTINGS, clock=clock)
    await broker.subscribe("call:a")
    statements = _statements(db)
    async with publisher.transaction() as tx:
        tx.stage("call:a", EventType.CHAT_MESSAGE, {"n": 1})
        tx.stage("call:a", EventType.CHAT_READ, {"n": 2})
    # One multi-row INSERT ... RETURNING for the transaction's rows, on both databases.
    assert statements.count("INSERT") == 1, statements
    first, second = await _received(broker, 2)
    assert (first.type, first.offset, second.type, second.offset) == ("chat.message", 1, "chat.read", 2)
    rows = await _rows(sessions)
    assert [r.type for r in rows] == ["chat.message", "chat.read"]
    assert all(r.created_ms == clock() and r.lease_until_ms == clock() + 5_000 for r in rows)
    assert broker.keys == [f"outbox:{r.id}:{r.created_ms}" for r in rows]

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with publisher.transaction() as tx:
            tx.stage("call:a", EventType.CHAT_MESSAGE, {"n": 3})
            raise Refused
    assert len(await _rows(sessions)) == 2 and len(broker.keys) == 2  # no row, nothing published

    assert publisher.pending_marks == 2
    statements.clear()
    assert await publisher.flush_marks()
    assert statements.count("UPDATE") == 1  # both marked by one statement
    assert all(r.published_ms == clock() for r in await _rows(sessions))
    await publisher.aclose()
    await broker.aclose()


async def test_a_failing_broker_answers_success_and_the_relay_publishes_later_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = ManualClock()
    broker = FlakyBroker(clock)
    publisher = EventPublisher(broker, sessions, settings=SETTINGS, clock=clock)
    relay = OutboxRelay(publisher)
    woken: list[bool] = []
    publisher.relay_wakeup = lambda: woken.append(True)
    await broker.subscribe("call:b")
    broker.down = True
    async with publisher.transaction() as tx:  # committed: no exception although the publish fails
        tx.stage("call:b", EventType.CALL_STATUS, {"version": 1})
    assert publisher.stats.publish_failures == 1 and woken == [True]
    clock.advance(100)
    # Just after a failure, committers skip the broker: rows go to the relay at once (lease 0).
    for version in (2, 3, 4):
        async with publisher.transaction() as tx:
            tx.stage("call:b", EventType.CALL_STATUS, {"version": version})
    assert publisher.stats.skipped == 3
    rows = await _rows(sessions)
    assert [r.published_ms for r in rows] == [None] * 4
    assert [r.lease_until_ms - r.created_ms for r in rows] == [5_000, 0, 0, 0]

    # The broker is still down: the relay fails and backs off.
    result = await relay.run_once()
    assert result.active and result.failed and relay.next_delay_s() > SETTINGS.relay_interval_ms / 1000
    broker.down = False
    result = await relay.run_once()  # the first row is still its committer's (commit lease)
    assert result.relayed == 3
    clock.advance(5_000)
    result = await relay.run_once()
    assert result.relayed == 1
    received = await _received(broker, 4)
    assert [p.decode()["data"]["version"] for p in received] == [2, 3, 4, 1]
    rows = await _rows(sessions)
    assert all(r.published_ms is not None for r in rows)
    assert broker.keys == [f"outbox:{r.id}:{r.created_ms}" for r in rows[1:]] + [
        f"outbox:{rows[0].id}:{rows[0].created_ms}"
    ]
    assert (await relay.run_once()).relayed == 0
    await relay.stop()
    await publisher.aclose()
    await broker.aclose()


async def test_a_killed_committer_is_relayed_in_id_order_once_its_lease_passes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A process that committed and died before publishing (its publisher never ran): another
    process's relay publishes the rows, oldest first, in batches, with their keys."""
    clock = ManualClock()
    never_skips = OutboxSettings(commit_lease_ms=5_000, skip_after_failure_ms=0)
    dead = EventPublisher(FlakyBroker(clock), sessions, settings=never_skips, clock=clock)
    dead.broker.down = True  # type: ignore[attr-defined]
    for n in range(7):
        async with dead.transaction() as tx:
            tx.stage("call:c", EventType.CHAT_MESSAGE, {"n": n})
    broker = FlakyBroker(clock)
    await broker.subscribe("call:c")
    survivor = EventPublisher(broker, sessions, settings=SETTINGS, clock=clock)
    relay = OutboxRelay(survivor)
    assert (await relay.run_once()).relayed == 0  # its committer's lease has not passed
    clock.advance(5_000)
    result = await relay.run_once()
    assert result.relayed == 7  # three batches of relay_batch (3) in one pass
    assert [p.decode()["data"]["n"] for p in await _received(broker, 7)] == list(range(7))
    await relay.stop()
    await broker.aclose()


async def test_the_relay_does_not_deliver_an_offer_late_after_its_outcome_or_deadline(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A dead committer's offers reach the relay after the survivor has published newer events: an
    offer whose outcome is out (a newer row of its subject) or whose deadline has passed is marked,
    not delivered; its outcome, an offer still open and an event without a subject are delivered."""
    clock = ManualClock()
    never_skips = OutboxSettings(commit_lease_ms=5_000, skip_after_failure_ms=0)
    dead = EventPublisher(FlakyBroker(clock), sessions, settings=never_skips, clock=clock)
    dead.broker.down = True  # type: ignore[attr-defined]
    deadline = clock() + 30_000
    async with dead.transaction() as tx:
        for name in ("expired", "open", "past"):
            tx.stage(
                "doctor:d",
                EventType.OFFER_CREATED,
                {"offer": name},
                subject=offer_subject(name),
                stale_ms=clock() + 1_000 if name == "past" else deadline,
            )
        tx.stage("doctor:d", EventType.CHAT_MESSAGE, {"offer": None})
    broker = FlakyBroker(clock)
    await broker.subscribe("doctor:d")
    survivor = EventPublisher(broker, sessions, settings=SETTINGS, clock=clock)
    async with survivor.transaction() as tx:  # the survivor decides one offer and publishes at once
        tx.doctor("d", EventType.OFFER_EXPIRED, {"offer": "expired"}, subject=offer_subject("expired"))
    assert [(p.type, p.decode()["data"]["offer"]) for p in await _received(broker, 1)] == [
        ("offer.expired", "expired")
    ]
    await survivor.flush_marks()
    relay = OutboxRelay(survivor)
    clock.advance(5_000)
    result = await relay.run_once()
    assert (result.relayed, survivor.stats.superseded) == (2, 2)
    assert [(p.type, p.decode()["data"]["offer"]) for p in await _received(broker, 2)] == [
        ("offer.created", "open"),
        ("chat.message", None),
    ]
    assert all(row.published_ms is not None for row in await _rows(sessions))  # none is tried again
    assert (await relay.run_once()).relayed == 0
    await relay.stop()
    await survivor.aclose()
    await broker.aclose()


async def test_one_relay_is_active_across_processes(sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = ManualClock()
    brokers = [FlakyBroker(clock), FlakyBroker(clock)]
    relays = [
        OutboxRelay(EventPublisher(b, sessions, settings=SETTINGS, clock=clock), owner=f"p{i}")
        for i, b in enumerate(brokers)
    ]
    writer = EventPublisher(FlakyBroker(clock), sessions, settings=SETTINGS, clock=clock)
    writer.broker.down = True  # type: ignore[attr-defined]
    async with writer.transaction() as tx:
        tx.stage("call:d", EventType.CHAT_MESSAGE, {"n": 1})
    clock.advance(5_000)
    first = await relays[0].run_once()
    second = await relays[1].run_once()
    assert (first.active, first.relayed, second.active, second.relayed) == (True, 1, False, 0)
    clock.advance(4_000)  # the holder keeps renewing; the other keeps standing by
    assert (await relays[0].run_once()).active and not (await relays[1].run_once()).active
    clock.advance(6_000)  # the holder died (no renewal): after its lease, the other takes over
    assert (await relays[1].run_once()).active
    assert not (await relays[0].run_once()).active
    await relays[1].stop()  # a clean stop hands the lease over at once
    assert (await relays[0].run_once()).active
    assert brokers[0].keys and not brokers[1].keys


async def test_published_rows_are_pruned_after_the_retention_in_bounded_batches(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = ManualClock()
    settings = OutboxSettings(retention_s=60, prune_batch=2, prune_interval_ms=1_000)
    broker = FlakyBroker(clock)
    publisher = EventPublisher(broker, sessions, settings=settings, clock=clock)
    relay = OutboxRelay(publisher)
    async with publisher.transaction() as tx:
        for n in range(5):
            tx.stage(f"call:{uuid.uuid4()}", EventType.CHAT_MESSAGE, {"n": n})
    await publisher.flush_marks()
    broker.down = True
    async with publisher.transaction() as tx:  # never published: never pruned
        tx.stage("call:e", EventType.CHAT_MESSAGE, {"n": 9})
    clock.advance(59_000)
    assert (await relay.run_once()).pruned == 0  # not old enough
    clock.advance(2_000)
    broker.down = True
    assert (await relay.run_once()).pruned == 5
    rows = await _rows(sessions)
    assert [(r.channel, r.published_ms) for r in rows] == [("call:e", None)]
    await publisher.aclose()


async def test_the_marker_holds_marks_for_one_update_and_close_writes_them(
    sessions: async_sessionmaker[AsyncSession], db: AsyncEngine
) -> None:
    """Each publish queues its ids for the marker (no write of its own); closing the publisher
    writes what the marker held in one UPDATE (a long interval: the marker never fires by itself
    here, so nothing waits on wall time)."""
    clock = ManualClock()
    broker = FlakyBroker(clock)
    publisher = EventPublisher(
        broker, sessions, settings=OutboxSettings(mark_interval_ms=60_000), clock=clock
    )
    statements = _statements(db)
    for n in range(4):
        async with publisher.transaction() as tx:
            tx.stage("call:f", EventType.CHAT_MESSAGE, {"n": n})
    assert statements.count("UPDATE") == 0 and publisher.pending_marks == 4
    await publisher.aclose()
    assert statements.count("UPDATE") == 1 and publisher.pending_marks == 0
    assert all(r.published_ms == clock() for r in await _rows(sessions))


def test_the_sqlite_table_never_reuses_ids() -> None:
    """AUTOINCREMENT: a pruned highest row's id is not handed out again (its key could still be in the
    broker's memory)."""
    table = OutboxEvent.__table__
    ddl = str(CreateTable(table).compile(dialect=sa.create_engine("sqlite://").dialect))  # type: ignore[arg-type]
    assert "AUTOINCREMENT" in ddl
