"""The one door through which dispatch publishes domain events: the transactional outbox writer.

Every event a client receives from dispatch/ or server/ (the map feed of ``realtime/map_feed.py`` aside:
it is made per process and never crosses the broker) goes through an :class:`EventPublisher`. A domain
event is **staged** in the database transaction of the change it announces, as a row of the ``outbox``
table (``models/outbox.py``)::

    async with publisher.transaction() as tx:      # sessions.begin(): one transaction
        call = await call_repo.get_call(tx.session, call_id, for_update=True)
        ...                                           # the change
        tx.status(call, previous.value, actor="doctor")   # its event rows, same transaction
    # committed: the rows are published now, by this process

Right after the commit the committing process publishes its own rows (one ``publish_many``, bounded by
``publish_timeout_ms``): the outbox is a safety net, not a delay. That publish never raises to the
caller once the commit succeeded: on failure it logs, counts and leaves the rows to the relay
(``dispatch/outbox_relay.py``), which every process runs and which publishes unpublished rows whose
commit lease has passed, in id order. A rolled-back transaction leaves no row and publishes nothing.

Each publication carries the row's identity as its idempotency key (:func:`outbox_key`), so that a row
published twice (by its committer and by the relay after a crash or a timeout) is one event with one
offset. Published rows are marked in batches (one UPDATE per ``mark_interval_ms``, not one write per
event) and pruned by the relay after a retention.

``publish_ephemeral`` (positions: no offset, no history) stays outside the outbox: a lost position is
replaced within a second. Nothing else calls the broker's ``publish*`` methods
(``tests/unit/test_event_path.py`` walks the code and fails on one that does).

Event types are :class:`~realtime.event_types.EventType` members; the broker gets ``member.value`` (a
plain ``str``), and payloads are the plain dicts typed in ``dispatch/events.py`` (encoded to JSON once,
when staged), so the frames are the same bytes as when the names were literals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.events import DISPATCH_CHANNEL, CallStatusPayload
from dispatch.outbox_settings import OutboxSettings
from models.calls import Call
from models.outbox import OutboxEvent
from models.repositories import outbox as outbox_repo
from realtime.broker import Broker, Outgoing, Publication, validate_channel
from realtime.channels import call_channel, doctor_channel
from realtime.clock import Clock, wall_clock_ms
from realtime.event_types import EventType
from realtime.faults import crash_point

log = logging.getLogger("tot.outbox")

Payload = Mapping[str, Any]
"""An event's ``data``: a dict orjson encodes (the ``TypedDict`` s of ``dispatch/events.py``)."""

MAX_PENDING_MARKS = 100_000
"""Most published ids waiting to be marked (while the database refuses the marking UPDATE). Beyond it
the oldest are forgotten: the relay publishes those rows again, which their keys make harmless."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a :meth:`OutboxTransaction.stage_all` batch: ``payload`` as ``type`` on ``channel``;
    ``subject`` and ``stale_ms`` as in :meth:`OutboxTransaction.stage`."""

    channel: str
    type: EventType
    payload: Payload
    subject: str | None = None
    stale_ms: int | None = None


def offer_subject(offer_id: uuid.UUID | str) -> str:
    """The outbox ``subject`` of an offer's events (``offer:<id>``): its creation, then its outcome."""
    return f"offer:{offer_id}"


def outbox_key(row: OutboxEvent) -> str:
    """The idempotency key of a row's publication: ``outbox:<id>:<created_ms>``. The id alone would
    do within one database; the creation time keeps a database restored from a backup (its ids
    counting again from an older point) from reusing a key the broker still remembers."""
    return f"outbox:{row.id}:{row.created_ms}"


def outgoing(row: OutboxEvent, data: Any = None) -> Outgoing:
    """The broker's view of a row: its ``data`` (the staged dict when the caller still has it, else
    the stored JSON text, passed through without decoding) and its key."""
    body = orjson.Fragment(row.payload) if data is None else data
    return Outgoing(row.channel, row.type, body, key=outbox_key(row))


@dataclass
class OutboxStats:
    """Counters since start (read by the server's metrics). ``staged``: rows written; ``published``:
    rows the committer published itself; ``publish_failures``: immediate publishes that failed or
    timed out (their rows left to the relay); ``skipped``: rows not tried at once because a publish
    had just failed; ``marked``/``mark_failures``: rows marked published by the batch marker, and
    its failed UPDATEs; ``relayed``: rows the relay published; ``relay_failures``: failed relay
    publishes; ``dropped``: rows the broker refused for good (bad channel, frame too large);
    ``superseded``: rows the relay did not deliver late (a newer row of their subject, or past their
    ``stale_ms``);
    ``pruned``: rows deleted after the retention; ``relay_active``: 1 while this process holds the
    relay lease; ``followup_failures``: live-engine work after a commit that failed (freeing a doctor,
    arming a deadline: left to the repair sweep, never an error for the committed request)."""

    staged: int = 0
    published: int = 0
    publish_failures: int = 0
    skipped: int = 0
    marked: int = 0
    mark_failures: int = 0
    relayed: int = 0
    relay_failures: int = 0
    dropped: int = 0
    superseded: int = 0
    pruned: int = 0
    relay_active: int = 0
    followup_failures: int = 0


class OutboxTransaction:
    """One database transaction that stages events (yielded by :meth:`EventPublisher.transaction`).
    ``session``: the transaction's session, for the change itself. The staging methods add rows to
    it; nothing is published before the commit. ``committed`` turns true once the transaction has
    committed (before its rows are published: a caller's cleanup for a failed change checks it)."""

    __slots__ = ("_lease_ms", "_now_ms", "_publisher", "_staged", "committed", "session")

    def __init__(self, session: AsyncSession, publisher: EventPublisher, now_ms: int, lease_ms: int) -> None:
        self.session = session
        self._publisher = publisher
        self._now_ms = now_ms
        self._lease_ms = lease_ms
        self._staged: list[tuple[OutboxEvent, Payload]] = []
        self.committed = False

    def stage(
        self,
        channel: str,
        event_type: EventType,
        payload: Payload,
        *,
        subject: str | None = None,
        stale_ms: int | None = None,
    ) -> None:
        """Stage ``payload`` as an event of ``event_type`` on ``channel``. ``subject`` (e.g.
        ``offer:<id>``, see :func:`offer_subject`) and ``stale_ms`` (epoch ms): the relay does not
        deliver the event late once a newer event of its subject was staged or ``stale_ms`` has passed
        (an offer shown after its outcome, or after its deadline, would mislead its doctor). Raises
        ``ValueError`` for a bad channel and ``TypeError`` for a payload orjson cannot encode (the
        transaction then rolls back: an event the broker would refuse never reaches the outbox, where
        it would block the relay)."""
        text = orjson.dumps(payload).decode()
        row = outbox_repo.stage(
            self.session,
            validate_channel(channel),
            event_type.value,
            text,
            self._now_ms,
            self._now_ms + self._lease_ms,
            subject=subject,
            stale_ms=stale_ms,
            notified_ms=None if event_type.value in self._publisher.settings.notify_types else self._now_ms,
        )
        self._staged.append((row, payload))

    def stage_all(self, events: Sequence[Event]) -> None:
        """Stage ``events`` in order (one INSERT for the transaction's rows; published as one batch)."""
        for event in events:
            self.stage(
                event.channel, event.type, event.payload, subject=event.subject, stale_ms=event.stale_ms
            )

    def doctor(
        self,
        doctor_id: uuid.UUID | str,
        event_type: EventType,
        payload: Payload,
        *,
        subject: str | None = None,
    ) -> None:
        """An event on the doctor's private channel ``doctor:<id>`` (``subject`` as in :meth:`stage`)."""
        self.stage(doctor_channel(str(doctor_id)), event_type, payload, subject=subject)

    def dispatch(self, event_type: EventType, payload: Payload) -> None:
        """An event for dispatchers (``dispatch``)."""
        self.stage(DISPATCH_CHANNEL, event_type, payload)

    def status(
        self,
        call: Call,
        from_status: str | None,
        *,
        actor: str,
        reason: str | None = None,
        doctor_name: str | None = None,
        eta_s: float | None = None,
        as_of: tuple[str, int] | None = None,
    ) -> None:
        """``call.status`` on the call's channel and on ``dispatch``. ``eta_s`` seconds (rounded to
        whole ones). ``as_of``: the ``(status, version)`` to report when the event is one of several
        made in one transaction (the call object holds the last). Stage it after the change (the
        version is the call's as changed)."""
        status, version = (call.status, call.version) if as_of is None else as_of
        data: CallStatusPayload = {
            "call": str(call.id),
            "status": status,
            "from": from_status,
            "actor": actor,
            "reason": reason,
            "doctor": None if call.doctor_id is None else {"id": str(call.doctor_id), "name": doctor_name},
            "eta_s": None if eta_s is None else round(eta_s),
            "version": version,
        }
        self.stage(call_channel(call.id), EventType.CALL_STATUS, data)
        self.stage(DISPATCH_CHANNEL, EventType.CALL_STATUS, data)

    @property
    def rows(self) -> list[tuple[OutboxEvent, Payload]]:
        """The rows staged so far, each with the payload it was staged with, in staging order."""
        return self._staged


class EventPublisher:
    """The outbox writer and the door to the broker (see the module docstring).

    ``broker``: where events go. ``sessions``: the database the outbox lives in (None: only
    ``publish_ephemeral`` works; tests of the live path alone). ``clock``: epoch ms (rows' times).
    ``relay_wakeup``: set by the local relay; called when an immediate publish failed."""

    def __init__(
        self,
        broker: Broker,
        sessions: async_sessionmaker[AsyncSession] | None = None,
        *,
        settings: OutboxSettings | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.broker = broker
        self.sessions = sessions
        self.settings = settings or OutboxSettings()
        self.clock = clock
        self.stats = OutboxStats()
        self.relay_wakeup: Callable[[], None] | None = None
        self.notify_wakeup: Callable[[], None] | None = None
        """Called after a commit that staged rows for the notification rules (the local deriver runs
        at once instead of at its next poll: ``server/notify/deriver.py``)."""
        self._skip_until_ms = 0
        self._marks: list[int] = []
        self._marker: asyncio.Task[None] | None = None

    # --- staging ----------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[OutboxTransaction]:
        """A database transaction (``sessions.begin()``) that stages events; on a clean exit it
        commits, then publishes the staged rows (:meth:`publish_committed`, which never raises). An
        exception inside rolls everything back (no row, nothing published) and propagates; errors of
        the commit propagate too (nothing was committed). Raises ``RuntimeError`` without
        ``sessions``."""
        if self.sessions is None:
            raise RuntimeError("this publisher has no database for its outbox")
        now = self.clock()
        # A publish failed a moment ago (the broker is down): rows go to the relay at once, in id
        # order, rather than each request waiting out the timeout on its own.
        skipping = now < self._skip_until_ms
        lease = 0 if skipping else self.settings.commit_lease_ms
        async with self.sessions.begin() as session:
            tx = OutboxTransaction(session, self, now, lease)
            yield tx
            await outbox_repo.insert_staged(session, [row for row, _ in tx.rows])
        tx.committed = True
        crash_point("outbox.committed")  # tests only: die between the commit and the publish
        staged = tx.rows
        if not staged:
            return
        if self.notify_wakeup is not None and any(row.notified_ms is None for row, _ in staged):
            self.notify_wakeup()
        self.stats.staged += len(staged)
        if skipping:
            self.stats.skipped += len(staged)
            self._wake_relay()
            return
        await self.publish_committed(staged)

    async def publish_committed(self, staged: Sequence[tuple[OutboxEvent, Payload]]) -> None:
        """Publish committed rows (with the payloads they were staged with) as one batch, within
        ``publish_timeout_ms``; mark them published in the next batch of marks. Never raises (a
        cancellation aside): a failure or a timeout is logged and counted, the relay is woken and the
        rows are left to it (an unknown part of the batch may have been published; the keys make the
        relay's publish of those a no-op)."""
        batch = [outgoing(row, payload) for row, payload in staged]
        try:
            async with asyncio.timeout(self.settings.publish_timeout_ms / 1000):
                await self.broker.publish_many(batch)
        except Exception as exc:
            self.stats.publish_failures += 1
            self._skip_until_ms = self.clock() + self.settings.skip_after_failure_ms
            # Row ids and the error's class only: channels and payloads name people.
            log.warning(
                "outbox publish failed; the relay will publish the rows",
                extra={"rows": len(batch), "first_row": staged[0][0].id, "error": type(exc).__name__},
            )
            self._wake_relay()
            return
        self.stats.published += len(batch)
        self.mark_later([row.id for row, _ in staged])

    async def follow_up(self, what: str, work: Awaitable[object]) -> bool:
        """Await live-engine ``work`` that follows a commit (free a doctor, arm or cancel a deadline,
        run a call's next step). A committed change is never turned into an error by it: an engine
        error is logged (``what`` names the work, no personal data) and counted, and the repair sweep
        (or the work's own safety net) puts it right. Returns whether it succeeded."""
        try:
            await work
        except Exception as exc:
            self.stats.followup_failures += 1
            log.warning(
                "engine follow-up failed after a commit", extra={"work": what, "error": type(exc).__name__}
            )
            return False
        return True

    async def publish_rows(self, rows: Sequence[OutboxEvent]) -> list[Publication]:
        """Publish stored rows in order as one batch, each with its key (the relay's publish: the
        payloads are the stored JSON, passed through without decoding). Raises what
        ``Broker.publish_many`` raises: ``ValueError``/``TypeError`` before anything is published,
        broker errors (an unknown part may then have been published)."""
        return await self.broker.publish_many([outgoing(row) for row in rows])

    def broker_recovered(self) -> None:
        """The relay published again: committers may publish their rows at once again."""
        self._skip_until_ms = 0

    def _wake_relay(self) -> None:
        if self.relay_wakeup is not None:
            self.relay_wakeup()

    # --- marking ----------------------------------------------------------------------------------

    def mark_later(self, ids: Sequence[int]) -> None:
        """Queue ``ids`` (published rows) for the next batch UPDATE, ``mark_interval_ms`` from the
        first queued (a task started on demand, gone when nothing waits)."""
        self._marks.extend(ids)
        if len(self._marks) > MAX_PENDING_MARKS:
            del self._marks[: len(self._marks) - MAX_PENDING_MARKS]
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._mark_soon(), name="outbox-marker")

    async def _mark_soon(self) -> None:
        while self._marks:
            await asyncio.sleep(self.settings.mark_interval_ms / 1000)
            if not await self.flush_marks():
                return  # the database failed: the next mark_later (or the relay) tries again

    async def flush_marks(self) -> bool:
        """Mark every queued id published now, in one UPDATE of its own transaction. Returns False
        when the database failed (the ids stay queued; logged and counted)."""
        if not self._marks or self.sessions is None:
            return True
        ids, self._marks = self._marks, []
        try:
            async with self.sessions.begin() as session:
                await outbox_repo.mark_published(session, ids, self.clock())
        except Exception as exc:
            self.stats.mark_failures += 1
            self._marks[:0] = ids[-MAX_PENDING_MARKS:]
            log.warning("outbox marking failed", extra={"rows": len(ids), "error": type(exc).__name__})
            return False
        self.stats.marked += len(ids)
        return True

    @property
    def pending_marks(self) -> int:
        """Published ids waiting for the next marking UPDATE."""
        return len(self._marks)

    async def aclose(self) -> None:
        """Stop the marker and mark what it held (best effort: a row left unmarked is published
        again by a relay, harmlessly)."""
        if self._marker is not None:
            self._marker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._marker
            self._marker = None
        with contextlib.suppress(Exception):
            await self.flush_marks()

    # --- outside the outbox -----------------------------------------------------------------------

    async def publish_ephemeral(self, channel: str, event_type: EventType, payload: Payload) -> Publication:
        """Publish a live-only event (no offset, no history, at most once; the next one supersedes it).
        Outside the outbox: a lost position is replaced within a second. Raises what the broker
        raises."""
        return await self.broker.publish_ephemeral(channel, event_type.value, payload)


def as_publisher(
    target: Broker | EventPublisher, sessions: async_sessionmaker[AsyncSession] | None = None
) -> EventPublisher:
    """``target`` if it is a publisher, else a publisher on the broker ``target`` with its outbox in
    ``sessions``. Lets services keep accepting a broker (tests build services on a bare broker) while
    publishing through the door."""
    return target if isinstance(target, EventPublisher) else EventPublisher(target, sessions)
