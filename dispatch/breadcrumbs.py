"""Breadcrumbs: the fixes of doctors on calls, written to the database as the calls' tracks, in batches.

The location ingest hands a breadcrumb over with :meth:`BreadcrumbWriter.add`: an append to a list, no
I/O, so the socket path never waits for the database. A task of its own (``start()``) writes what has
gathered every ``flush_interval_s`` seconds, or as soon as ``batch_size`` breadcrumbs wait, as one
INSERT statement per batch in one transaction (``models.repositories.track.add_fixes``). Never one
statement per fix: 5,000 doctors on calls at one breadcrumb a second are five statements a second.

What may be lost, by design: a breadcrumb waits in memory up to ``flush_interval_s`` (1 s) before it
is written, so a process that crashes loses at most that last second of every track (a clean stop
writes them: :meth:`stop`). A route is a record of the drive, not evidence that must survive a
crash; a second of it is a few metres at city speed. While the database is down, batches are kept
and retried on the next tick, up to ``max_buffered`` breadcrumbs; beyond that new ones are dropped
and counted (``dropped``) rather than growing memory without bound. A batch the database refuses for
integrity (a call deleted meanwhile) is retried call by call, and only the refused calls' breadcrumbs
are dropped, so one bad row cannot hold back everyone else's track.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections import deque
from itertools import groupby

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from geo.location_index import DoctorPosition
from models.repositories import track as track_repo

log = logging.getLogger("tot.breadcrumbs")

Breadcrumb = tuple[str, DoctorPosition]
"""``(call id, fix)``: the call the doctor was on when the fix arrived."""


class BreadcrumbWriter:
    """Buffers breadcrumbs and writes them in batches (see the module docstring).

    ``flush_interval_s``: longest wait of a breadcrumb in memory, seconds (> 0). ``batch_size``: most
    rows per INSERT, and the buffer length that wakes the writer early (>= 1). ``max_buffered``: most
    breadcrumbs held while the database cannot take them (>= ``batch_size``). Raises ``ValueError``
    for values out of range. One event loop; not thread-safe.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        flush_interval_s: float = 1.0,
        batch_size: int = 1_000,
        max_buffered: int = 100_000,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError("flush_interval_s must be > 0")
        if batch_size < 1 or max_buffered < batch_size:
            raise ValueError("need 1 <= batch_size <= max_buffered")
        self.sessions = sessions
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self._buffer: deque[Breadcrumb] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.written = 0
        self.dropped = 0
        self.statements = 0

    def __len__(self) -> int:
        return len(self._buffer)

    def add(self, call_id: str, position: DoctorPosition) -> bool:
        """Queue one breadcrumb of the doctor in ``position`` on ``call_id`` (no I/O). Returns False
        when the buffer is full and the breadcrumb was dropped."""
        buffer = self._buffer
        if len(buffer) >= self.max_buffered:
            self.dropped += 1
            return False
        buffer.append((call_id, position))
        if len(buffer) == self.batch_size:
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the writer task (idempotent)."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="breadcrumbs")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered and end the writer task (waits at most ``timeout_s`` seconds, then
        cancels it; what was not written by then is lost and logged)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(timeout_s):
                await task
        except TimeoutError:
            log.warning("breadcrumbs not written at stop", extra={"left": len(self._buffer)})
        with contextlib.suppress(asyncio.CancelledError):
            task.cancel()
            await task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval_s):
                    await self._wake.wait()
            self._wake.clear()
            stopping = self._stopping
            try:
                await self.flush()
            except Exception:  # the database is down: the batches stay buffered for the next tick
                log.exception("breadcrumb write failed", extra={"buffered": len(self._buffer)})
                if stopping:
                    return
            if stopping and not self._buffer:
                return

    async def flush(self) -> int:
        """Write every buffered breadcrumb, ``batch_size`` per INSERT. Returns how many were written.
        Raises the database's error (other than an integrity error, handled per call) after putting
        the failed batch back at the front of the buffer."""
        written = 0
        dropped_before = self.dropped
        while self._buffer:
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            try:
                written += await self._write(batch)
            except BaseException:
                # Back in front, in order; the oldest go first when that overflows the bound.
                room = self.max_buffered - len(self._buffer)
                kept = batch[-room:] if room > 0 else []
                self.dropped += len(batch) - len(kept)
                self._buffer.extendleft(reversed(kept))
                raise
        if self.dropped != dropped_before:
            log.warning("breadcrumbs dropped", extra={"dropped": self.dropped - dropped_before})
        return written

    async def _write(self, batch: list[Breadcrumb]) -> int:
        fixes = [fix for fix in map(_fix, batch) if fix is not None]
        self.dropped += len(batch) - len(fixes)
        try:
            return await self._insert(fixes)
        except IntegrityError:
            log.warning("breadcrumb batch refused; writing it call by call", exc_info=True)
        written = 0
        fixes.sort(key=lambda f: f.call_id)
        for call_id, group in groupby(fixes, key=lambda f: f.call_id):
            rows = list(group)
            try:
                written += await self._insert(rows)
            except IntegrityError:
                self.dropped += len(rows)
                log.warning("breadcrumbs of a call refused", extra={"call": str(call_id), "rows": len(rows)})
        return written

    async def _insert(self, fixes: list[track_repo.Fix]) -> int:
        if not fixes:
            return 0
        async with self.sessions.begin() as session:
            count = await track_repo.add_fixes(session, fixes)
        self.statements += 1
        self.written += count
        return count


def _fix(crumb: Breadcrumb) -> track_repo.Fix | None:
    call_id, p = crumb
    try:
        call, doctor = uuid.UUID(call_id), uuid.UUID(p.doctor_id)
    except ValueError:  # not a call of this database (ids are UUIDs): nothing to attach it to
        log.warning("breadcrumb without a call id", extra={"call": call_id, "doctor": p.doctor_id})
        return None
    ts = dt.datetime.fromtimestamp(p.ts_ms / 1000, tz=dt.UTC)
    return track_repo.Fix(call, doctor, ts, p.lat, p.lon, p.accuracy_m)
