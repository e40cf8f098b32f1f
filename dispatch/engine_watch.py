"""The engine watcher: every process notices within a second that the live engine was lost or replaced,
and the engine is rebuilt from the database once.

Every :data:`WATCH_INTERVAL_S` (and every :data:`UNREACHABLE_RETRY_S` while the engine does not
answer, so the first check after a Redis error clears comes at once) each process reads the engine's
epoch (``dispatch/engine_epoch.py``, one ``GET``):

- **the epoch it knew**: nothing to do (the common case, one cheap command);
- **none** (Redis restarted without persistence, flushed; the memory engine at start-up): the engine
  is empty. One process takes the rebuild lock, runs the rebuild (``dispatch/rebuild.py``), then
  writes a fresh epoch (``SET NX``) and gives the lock back. The others find the lock taken and wait;
  they see the new epoch at a later check. Writing the epoch *after* the rebuild means no process asks
  its doctors to re-announce before the database's states are back, so a re-announced ``available``
  never lands on a doctor the rebuild would have made ``busy``. A rebuild that fails gives the lock
  back and is tried again after a backoff (:data:`REBUILD_BACKOFF_S`, doubling);
- **another epoch** (a rebuild by another process, another Redis answering): this process runs its
  *local steps* (the callbacks ``on_change``: the gateway asks each connected doctor app of this
  process to re-announce its status and position, the repair sweep makes sure its entry exists).

The local steps also run once at the first check of a process (the epoch it starts with), so that
whatever they arm exists in a fresh engine. Time comes from an injectable clock (epoch ms): tests call
:meth:`EngineWatch.check` on a manual clock; :meth:`EngineWatch.run` only adds the sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum

from dispatch.engine_epoch import EngineEpoch, new_epoch
from dispatch.rebuild import RebuildReport
from realtime.clock import Clock, wall_clock_ms

log = logging.getLogger("tot.engine")

WATCH_INTERVAL_S = 0.5
"""Seconds between two checks of the epoch: a lost engine is noticed within a second by every process."""
UNREACHABLE_RETRY_S = 0.1
"""Seconds between checks while the engine does not answer: a Redis coming back is seen at once."""
SETTLE_S = 5.0
"""Seconds after this process saw the engine lost and rebuilt during which it is *settling*: doctors'
positions are not in the database, so until the connected apps have answered the re-announce frame a
search finds nobody. The offer step does not escalate a call for want of candidates then; it looks
again shortly (``dispatch/offer_step.py``)."""
REBUILD_BACKOFF_S = (1.0, 30.0)
"""First and longest wait (seconds) before trying a failed rebuild again (the database may be down)."""


def _had_a_fleet(report: object) -> bool:
    """Whether a rebuild restored doctors who were on shift (available, offered or busy)."""
    if not isinstance(report, RebuildReport):
        return False
    return any(report.doctors.get(status, 0) for status in ("available", "offered", "busy"))


class Outcome(StrEnum):
    """What one :meth:`EngineWatch.check` found or did."""

    SAME = "same"  # the epoch this process knew
    FIRST = "first"  # the first epoch this process saw (local steps ran)
    CHANGED = "changed"  # another epoch than the one known (local steps ran)
    REBUILT = "rebuilt"  # no epoch: this process rebuilt the engine and wrote the epoch (local steps ran)
    WAITING = "waiting"  # no epoch; another process holds the rebuild lock, or a failed rebuild's backoff
    FAILED = "failed"  # this process's rebuild raised (logged); tried again after the backoff
    UNREACHABLE = "unreachable"  # the engine did not answer (logged once per outage)


class EngineWatch:
    """Watches the engine's epoch for this process (see the module docstring).

    ``epoch``: the engine's epoch role. ``rebuild``: runs the rebuild (raises on failure).
    ``on_change``: the local steps, each called with the new epoch (a failure is logged, the others
    still run). ``clock``: epoch ms, for the rebuild backoff. ``interval_s``: :data:`WATCH_INTERVAL_S`.
    """

    def __init__(
        self,
        epoch: EngineEpoch,
        rebuild: Callable[[], Awaitable[object]],
        on_change: Sequence[Callable[[str], Awaitable[object]]] = (),
        *,
        clock: Clock | None = None,
        interval_s: float = WATCH_INTERVAL_S,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.epoch = epoch
        self.rebuild = rebuild
        self.on_change = list(on_change)
        self.clock: Clock = clock or wall_clock_ms
        self.interval_s = interval_s
        self.settle_ms = int(settle_s * 1000)
        self.lost_at_ms: int | None = None
        """When this process last found the engine lost (epoch missing or changed) after it had known
        one, or rebuilt it at its own start with doctors on shift in the database (epoch ms); None if
        never. A fresh deployment's start is not a loss: nobody is connected to re-announce."""
        self._missing = False
        self.known: str | None = None
        """The epoch this process last knew (None before the first successful check)."""
        self.totals: Counter[str] = Counter()
        """Since start, by :class:`Outcome` value (``same`` excepted: it is every check)."""
        self._unreachable = False
        self._failures = 0
        self._retry_at_ms = 0
        self._checking = asyncio.Lock()

    async def check(self) -> Outcome:
        """One check (see the module docstring). Never raises but ``CancelledError``. One at a time in
        a process: the periodic loop and a search about to escalate may both ask (the local steps of one
        change must run once)."""
        async with self._checking:
            return await self._check()

    async def _check(self) -> Outcome:
        try:
            current = await self.epoch.get()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._unreachable:
                log.warning("live engine unreachable; watching for its return", extra={"error": repr(exc)})
            self._unreachable = True
            return self._count(Outcome.UNREACHABLE)
        if self._unreachable:
            self._unreachable = False
            log.info("live engine reachable again", extra={"epoch_known": current == self.known})
        if current is None:
            if self.known is not None and not self._missing:
                self.lost_at_ms = self.clock()
            self._missing = self.known is not None
            return self._count(await self._rebuild())
        self._missing = False
        if current == self.known:
            return Outcome.SAME
        first = self.known is None
        if not first:
            log.warning("live engine epoch changed", extra={"epoch": current, "was": self.known})
            self.lost_at_ms = self.clock()
        self.known = current
        await self._local_steps(current)
        return self._count(Outcome.FIRST if first else Outcome.CHANGED)

    async def _rebuild(self) -> Outcome:
        if self.clock() < self._retry_at_ms:
            return Outcome.WAITING
        token = secrets.token_hex(8)
        try:
            if not await self.epoch.lock(token):
                return Outcome.WAITING
        except asyncio.CancelledError:
            raise
        except Exception:
            self._unreachable = True
            return Outcome.UNREACHABLE
        try:
            report = await self.rebuild()
            current = await self.epoch.settle(new_epoch())
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failures += 1
            first, longest = REBUILD_BACKOFF_S
            wait_s = min(longest, first * 2 ** (self._failures - 1))
            self._retry_at_ms = self.clock() + int(wait_s * 1000)
            log.exception("rebuilding the live engine failed; trying again", extra={"retry_in_s": wait_s})
            await self._unlock(token)
            return Outcome.FAILED
        self._failures = 0
        await self._unlock(token)
        if self.known is not None or _had_a_fleet(report):
            # The re-announce window starts when the states are back. At a process's own start it
            # opens only when the database shows doctors on shift (an embedded server restarted on
            # its file): their apps are reconnecting. A fresh deployment has nobody to wait for.
            self.lost_at_ms = self.clock()
        self._missing = False
        self.known = current
        await self._local_steps(current)
        return Outcome.REBUILT

    def settling(self) -> bool:
        """True while the engine is known lost and not yet rebuilt, or for ``settle_s`` after this
        process saw it rebuilt (see :data:`SETTLE_S`): doctors are still re-announcing."""
        if self._missing:
            return True
        return self.lost_at_ms is not None and self.clock() - self.lost_at_ms < self.settle_ms

    async def _unlock(self, token: str) -> None:
        try:
            await self.epoch.unlock(token)
        except Exception:  # the lease ends by itself
            log.warning("could not release the rebuild lock; it expires on its own")

    async def _local_steps(self, current: str) -> None:
        for step in self.on_change:
            try:
                await step(current)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a local step after an engine change failed")

    def _count(self, outcome: Outcome) -> Outcome:
        self.totals[outcome.value] += 1
        return outcome

    async def run(self) -> None:
        """Check every ``interval_s`` (every :data:`UNREACHABLE_RETRY_S` while the engine does not
        answer), until cancelled."""
        while True:
            outcome = await self.check()
            await asyncio.sleep(UNREACHABLE_RETRY_S if outcome is Outcome.UNREACHABLE else self.interval_s)
