"""The outbox relay: publishes the events their committer did not (a crash, a broker outage, a timeout).

Every process runs one (``server/app.py`` starts and stops it with the app); one at a time is active,
the holder of the lease row ``outbox_relay_lease`` (name ``relay``), so that the relay's publications of
one channel leave in id order. Each pass of the active relay:

1. renews its lease (an UPDATE only when half of it has run out: a pass that finds nothing writes
   nothing);
2. claims the unpublished rows whose lease has passed (their committer's lease: ``commit_lease_ms``
   after staging, or at once when the committer skipped its publish), oldest first, ``relay_batch`` at
   a time;
3. publishes them with ``publish_many``, each with its idempotency key (``dispatch.publisher.
   outbox_key``: a row its committer did publish before dying is not a second event), and marks them
   published (one UPDATE); a full batch is followed by the next at once;
4. when the broker fails, backs off (doubling from ``relay_interval_ms`` up to
   ``relay_backoff_max_ms``); a row the broker refuses for good (a bad channel, a frame too large:
   staging checks both, so only a changed limit gets here) is logged, counted and marked, never
   retried forever in front of the rows behind it; a row that would arrive late and mislead is
   marked without being published (``superseded``): a newer row of its ``subject`` exists (an offer
   whose outcome is already out), or its ``stale_ms`` has passed (an offer past its deadline);
5. every ``prune_interval_ms``, deletes rows published more than ``retention_s`` ago, in bounded
   batches.

A process that starts runs a pass at once (an embedded server restarted on the same SQLite file
publishes what it had committed before it died, once the dead process's leases have run out). The
committing process wakes its relay when its own publish fails. Time comes from the injectable clock
(epoch ms); tests drive :meth:`OutboxRelay.run_once` with ``tests/clock.py`` ``ManualClock``.

Ordering, and its limit: rows are published in id order by the committer (one batch per transaction)
and by the relay (id order across its passes). A row the relay publishes after a failure can still
arrive after later rows of the same channel that their committer (in this or another process)
published at once; ``call.status`` carries the call's ``version`` so that a reader can tell, and an
offer's creation is not delivered after its outcome (the ``subject`` rule above: a doctor would be
offered a call after being told it was withdrawn or after taking another).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from dispatch.outbox_settings import OutboxSettings
from dispatch.publisher import EventPublisher
from models.outbox import OutboxEvent
from models.repositories import outbox as outbox_repo
from realtime.clock import Clock

log = logging.getLogger("tot.outbox")

LEASE_NAME = "relay"
"""The name of the relay's row in ``outbox_relay_lease``."""
MAX_BATCHES_PER_PASS = 50
"""Most full batches one pass publishes before it yields to its wait (a large backlog drains over
several passes, each renewing the lease)."""
MAX_PRUNE_BATCHES = 10
"""Most pruning statements per pruning turn (the rest waits for the next turn)."""


@dataclass(frozen=True, slots=True)
class RelayPass:
    """What one pass did: ``active`` (held the lease), ``relayed`` rows published, ``dropped`` rows
    the broker refused for good, ``failed`` (the broker failed: backing off), ``pruned`` rows."""

    active: bool
    relayed: int = 0
    dropped: int = 0
    failed: bool = False
    pruned: int = 0


class OutboxRelay:
    """Publishes unpublished outbox rows when this process holds the relay lease (module docstring).

    ``publisher``: the door (its broker, its database, its counters). ``owner``: this relay's identity
    in the lease row (random by default). ``clock``: epoch ms (the publisher's by default)."""

    def __init__(
        self,
        publisher: EventPublisher,
        *,
        settings: OutboxSettings | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        name: str = LEASE_NAME,
    ) -> None:
        if publisher.sessions is None:
            raise ValueError("the relay needs the publisher's database")
        self.publisher = publisher
        self.sessions = publisher.sessions
        self.settings = settings or publisher.settings
        self.clock = clock or publisher.clock
        self.owner = owner or uuid.uuid4().hex
        self.name = name
        self.stats = publisher.stats
        self._held_until_ms = 0
        self._failures = 0
        self._last_prune_ms = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Run the next pass now (the committer's own publish failed), unless the relay is backing off
        already (then every failing request would retry the broker at once)."""
        if not self._failures:
            self._wake.set()

    # --- one pass ---------------------------------------------------------------------------------

    async def run_once(self) -> RelayPass:
        """One pass (see the module docstring). Raises database errors (the broker's are handled)."""
        if not await self._lease():
            return RelayPass(active=False)
        relayed = dropped = 0
        failed = False
        for _ in range(MAX_BATCHES_PER_PASS):
            async with self.sessions() as session:
                rows = await outbox_repo.claimable(session, self.clock(), self.settings.relay_batch)
            if not rows:
                break
            done, refused = await self._publish(rows)
            if done is None:
                failed = True
                break
            relayed += done
            dropped += refused
            if len(rows) < self.settings.relay_batch or not await self._lease():
                break
        pruned = await self._prune_if_due()
        return RelayPass(active=True, relayed=relayed, dropped=dropped, failed=failed, pruned=pruned)

    async def _lease(self) -> bool:
        """Hold the lease for this pass: renewed when half of it has run out, or taken when free."""
        now = self.clock()
        lease_ms = self.settings.relay_lease_ms
        if now < self._held_until_ms - lease_ms // 2:
            return True
        async with self.sessions.begin() as session:
            held = await outbox_repo.take_lease(session, self.name, self.owner, now, now + lease_ms)
        self._held_until_ms = now + lease_ms if held else 0
        if bool(held) != bool(self.stats.relay_active):
            log.info("outbox relay %s", "active" if held else "standing by", extra={"owner": self.owner})
        self.stats.relay_active = int(held)
        return held

    async def _publish(self, rows: list[OutboxEvent]) -> tuple[int | None, int]:
        """Publish ``rows`` in order and mark them. Returns ``(published, refused)``; ``published`` is
        None when the broker failed (nothing marked)."""
        timeout_s = max(self.settings.publish_timeout_ms, self.settings.relay_lease_ms // 2) / 1000
        refused: list[OutboxEvent] = []
        late = await self._late(rows)
        live = [row for row in rows if row.id not in late]
        try:
            async with asyncio.timeout(timeout_s):
                try:
                    if live:
                        await self.publisher.publish_rows(live)
                except (ValueError, TypeError):
                    # Refused before anything was published: find the rows at fault, one by one.
                    refused = await self._publish_singly(live)
        except Exception as exc:
            self.stats.relay_failures += 1
            self._failures += 1
            log.warning(
                "outbox relay publish failed; backing off",
                extra={"rows": len(rows), "first_row": rows[0].id, "error": type(exc).__name__},
            )
            return None, 0
        self._failures = 0
        self.publisher.broker_recovered()
        async with self.sessions.begin() as session:
            await outbox_repo.mark_published(session, [row.id for row in rows], self.clock())
        self.stats.relayed += len(live) - len(refused)
        self.stats.dropped += len(refused)
        self.stats.superseded += len(late)
        return len(live) - len(refused), len(refused)

    async def _late(self, rows: list[OutboxEvent]) -> set[int]:
        """The ids of ``rows`` not to deliver late: past their ``stale_ms``, or superseded by a newer
        row of their subject (which is published, or will be, in its place)."""
        now = self.clock()
        late = {row.id for row in rows if row.stale_ms is not None and row.stale_ms <= now}
        if any(row.subject is not None for row in rows):
            async with self.sessions() as session:
                late |= await outbox_repo.superseded(session, rows)
        return late

    async def _publish_singly(self, rows: list[OutboxEvent]) -> list[OutboxEvent]:
        refused: list[OutboxEvent] = []
        for row in rows:
            try:
                await self.publisher.publish_rows([row])
            except (ValueError, TypeError) as exc:
                refused.append(row)
                log.error(
                    "outbox row refused by the broker; dropped",
                    extra={"row": row.id, "type": row.type, "error": str(exc)[:200]},
                )
        return refused

    async def _prune_if_due(self) -> int:
        now = self.clock()
        if now - self._last_prune_ms < self.settings.prune_interval_ms:
            return 0
        self._last_prune_ms = now
        cutoff = now - self.settings.retention_s * 1000
        pruned = 0
        for _ in range(MAX_PRUNE_BATCHES):
            async with self.sessions.begin() as session:
                count = await outbox_repo.prune(session, cutoff, self.settings.prune_batch)
            pruned += count
            if count < self.settings.prune_batch:
                break
        self.stats.pruned += pruned
        return pruned

    # --- the loop ---------------------------------------------------------------------------------

    def next_delay_s(self) -> float:
        """How long the loop waits before the next pass (backing off after failures)."""
        interval = self.settings.relay_interval_ms
        if self._failures:
            interval = min(self.settings.relay_backoff_max_ms, interval * 2 ** min(self._failures, 16))
        return interval / 1000

    async def run(self) -> None:
        """Run passes until cancelled: one at once, then every ``relay_interval_ms`` (or when woken,
        or later after failures). A pass that raises (the database) is logged and the loop goes on."""
        self.publisher.relay_wakeup = self.wake
        try:
            while True:
                self._wake.clear()
                try:
                    await self.run_once()
                except Exception:
                    self._failures += 1
                    log.exception("outbox relay pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.next_delay_s())
        finally:
            self.publisher.relay_wakeup = None

    async def stop(self) -> None:
        """Give the lease up (after ``run`` was cancelled), so that another process's relay takes over
        without waiting for it to run out."""
        if not self._held_until_ms:
            return
        self._held_until_ms = 0
        self.stats.relay_active = 0
        try:
            async with self.sessions.begin() as session:
                await outbox_repo.release_lease(session, self.name, self.owner)
        except Exception:
            log.warning("could not release the outbox relay lease; it runs out by itself")
