"""Doctors' chosen availability, written in batches: one outbox transaction for every status change
that arrives within a short window (group commit).

Why. Since issue 16 a ``doctor.status`` change is a database transaction (the chosen availability,
``doctor_profiles.chosen_status``, and its ``doctor.status`` outbox row). On the embedded deployment
the one SQLite connection is handed from session to session once per event-loop iteration, so at a
connect burst (4,000 doctors starting their shifts) one transaction per change queued thousands of
hand-overs behind each other: the fleet came online in 74.6 s instead of 14.0 s (docs/benchmarks.md).
Positions have always been written this way (``dispatch/location_ingest.py``: one write per 25 ms).

How. :meth:`StatusWriter.write` queues a change and waits for its own result. A task started on
demand (gone when nothing waits) takes what has gathered ``window_ms`` after the first queued change,
or at once when ``max_batch`` wait, and commits it in one
:meth:`~dispatch.publisher.EventPublisher.transaction`: one UPDATE executed for every change
(``executemany``), and every change's ``doctor.status`` event staged in that same transaction (one
INSERT), published after the commit as one batch. Each caller is answered after the commit of its
change, never before. Batches are written one after another, in arrival order, so two changes of
one doctor apply in order, within a batch (the later UPDATE wins; both events are staged in order)
and across batches.

A failed batch. Nothing of it was committed (a transaction either commits or not). When the error is
the database's as a whole (:func:`is_outage`: no connection within the pool timeout, a connection
lost, an operational error), every change of the batch is answered with it at once (each would have
met it alone; the doctor's app retries). Otherwise (a constraint, a value the database refuses) the
batch is written again **one transaction per change**, in order: a change that fails alone answers
its caller with its own error; the others succeed (an outage met meanwhile fails the rest at once).
A request whose change was committed is never answered with an error: an exception after the commit
(the transaction's ``committed`` is set) counts as success. The one exception is the one a single
transaction has too: a connection lost during COMMIT (an outage) is answered with the error though the
change may have committed; the app's retry writes the same choice again, harmlessly.

A caller cancelled while waiting (its socket closed) does not take its change out of the batch: the
live engine has already moved, and the database must follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections import deque
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from dispatch.events import DoctorStatusPayload
from dispatch.publisher import EventPublisher, OutboxTransaction
from models.repositories import doctors as doctor_repo
from realtime.event_types import EventType

log = logging.getLogger("tot.status_writes")


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One doctor's chosen availability to persist: ``status`` (``available``, ``paused`` or
    ``offline``) chosen ``at``, announced on ``doctor:<doctor_id>`` with ``payload``."""

    doctor_id: str
    status: str
    at: dt.datetime
    payload: DoctorStatusPayload


@dataclass
class StatusWriteStats:
    """Counters since start. ``changes``: changes committed; ``transactions``: transactions that
    committed (batches and fallback singles); ``fallbacks``: batches that failed and were written one
    change at a time; ``failed``: changes answered with an error."""

    changes: int = 0
    transactions: int = 0
    fallbacks: int = 0
    failed: int = 0


_Item = tuple[StatusChange, "asyncio.Future[None]", float]
"""A queued change, the future its caller awaits, and when it was queued (event-loop seconds)."""


class StatusWriter:
    """Writes doctors' status changes in batches (see the module docstring).

    ``publisher``: the outbox writer whose transactions the batches are. ``window_ms``: longest wait
    of a change before its batch is written, milliseconds (>= 0; 0: the changes queued while the
    previous batch was being written). ``max_batch``: most changes per transaction, and the queue
    length that ends the window early (>= 1). Raises ``ValueError`` for values out of range. One
    event loop; not thread-safe."""

    def __init__(self, publisher: EventPublisher, *, window_ms: float = 25, max_batch: int = 500) -> None:
        if window_ms < 0:
            raise ValueError("window_ms must be >= 0")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.publisher = publisher
        self.window_ms = window_ms
        self.max_batch = max_batch
        self.stats = StatusWriteStats()
        self._queue: deque[_Item] = deque()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    async def write(self, change: StatusChange) -> None:
        """Persist ``change`` with its event in a batch's transaction; returns once it is committed.
        Raises the batch's error when it was the database's as a whole (:func:`is_outage`), else
        the error of the change's own transaction when the batch failed and the change failed again
        alone (database errors; ``ValueError`` for a doctor id that is not a UUID); nothing of the
        change was committed then. Cancelling the caller does not cancel the write."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((change, future, loop.time()))
        if len(self._queue) >= self.max_batch:
            self._full.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="status-writes")
        await asyncio.shield(future)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Write what is queued and end the writer task (waits at most ``timeout_s`` seconds, then
        cancels it: the changes not committed by then are answered as cancelled)."""
        task = self._task  # kept: a change queued meanwhile is written by the same task, in order
        if task is None or task.done():
            return
        self._full.set()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("status changes not written at stop", extra={"left": len(self._queue)})
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                wait_s = self._queue[0][2] + self.window_ms / 1000 - loop.time()
                if len(self._queue) < self.max_batch and wait_s > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait_s):
                            await self._full.wait()
                self._full.clear()
                queue = self._queue
                batch = [queue.popleft() for _ in range(min(self.max_batch, len(queue)))]
                if len(queue) >= self.max_batch:
                    self._full.set()
                await self._write_batch(batch)
        finally:
            # Cancelled (a stop that timed out): nobody will write what still waits.
            _cancel(list(self._queue))
            self._queue.clear()

    async def _write_batch(self, batch: list[_Item]) -> None:
        try:
            await self._commit(batch)
        except asyncio.CancelledError:
            _cancel(batch)
            raise
        except Exception as exc:
            if len(batch) == 1 or is_outage(exc):
                self._fail_all(batch, exc)
                return
            self.stats.fallbacks += 1
            log.warning(
                "status batch failed; writing it change by change",
                extra={"changes": len(batch), "error": type(exc).__name__},
            )
            for i, item in enumerate(batch):
                try:
                    await self._commit([item])
                except asyncio.CancelledError:
                    _cancel(batch[i:])
                    raise
                except Exception as single:
                    if is_outage(single):  # the database went away: the rest would wait it out too
                        self._fail_all(batch[i:], single)
                        return
                    self._fail(item[1], single)

    async def _commit(self, items: list[_Item]) -> None:
        """One transaction: every item's UPDATE and event; the items' callers are answered as soon as
        it has committed (also when an exception follows the commit: the publish is then the
        relay's; a cancellation after the commit is raised again once they are answered). Raises the
        transaction's error when it did not commit."""
        changes = [change for change, _, _ in items]
        choices = [(uuid.UUID(c.doctor_id), c.status, c.at) for c in changes]
        transaction: OutboxTransaction | None = None
        try:
            async with self.publisher.transaction() as tx:
                transaction = tx
                await doctor_repo.set_chosen_statuses(tx.session, choices)
                for change in changes:
                    tx.doctor(change.doctor_id, EventType.DOCTOR_STATUS, change.payload)
        except BaseException as exc:
            if transaction is None or not transaction.committed:
                raise
            self._committed(items)
            if not isinstance(exc, Exception):
                raise
            log.warning("status batch committed, then failed", extra={"error": type(exc).__name__})
            return
        self._committed(items)

    def _committed(self, items: list[_Item]) -> None:
        self.stats.transactions += 1
        self.stats.changes += len(items)
        for _, future, _ in items:
            if not future.done():
                future.set_result(None)

    def _fail_all(self, items: list[_Item], exc: Exception) -> None:
        log.warning("status changes failed", extra={"changes": len(items), "error": type(exc).__name__})
        for _, future, _ in items:
            self._fail(future, exc)

    def _fail(self, future: asyncio.Future[None], exc: Exception) -> None:
        self.stats.failed += 1
        if not future.done():
            future.set_exception(exc)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's as a whole (no connection in time, a connection lost, an
    operational error: locked, I/O, shutting down) rather than one change's (a constraint, a bad
    value). Writing a failed batch again change by change only helps with the latter."""
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return isinstance(exc, sa_exc.TimeoutError | OSError)


def _cancel(items: list[_Item]) -> None:
    for _, future, _ in items:
        future.cancel()
