"""One deadline worker: claim due entries of a Deadlines queue, route each by its kind to a handler.

A key is ``<kind>:<ident>`` (``step:<call id>``, ``offer:<offer id>``, ``sos:<alert id>``). The worker
claims due entries (``Deadlines.claim_due``), hands each to the handler registered for its kind with
:meth:`DeadlineWorker.route`, and completes the claim when the handler returns. A handler that raises
leaves its entry claimed: it comes back when the lease ends (at-least-once; handlers are idempotent).
A handler that schedules its own key again (a step not done, a planned call moved to its time) voids
its claim (the Deadlines upsert), so the ``complete`` that follows returns False and keeps the new entry.

Resuming: an ``on_resume`` hook re-arms what a restart lost (memory engines lose their entries with the
process); it runs when :meth:`DeadlineWorker.resume` is called (at start-up) and, with ``resume_every_s``,
periodically from :meth:`DeadlineWorker.run` (a process that died between a commit and arming the entry
that follows from it leaves nothing behind).

Pacing (:class:`Pacing`): the offer loop's worker is ``eager`` and ``concurrent``: it claims again at
once after a non-empty batch, sleeps until the next due entry (at most ``idle_s``) when idle, and runs
each claim as its own task (a slow step does not hold back an offer's expiry). SOS repeats keep their
historical pace: handled one after the other, then a fixed ``idle_s`` sleep (see dispatch/sos.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from dispatch.deadlines import Claim, Deadlines

Handler = Callable[[str, Claim], Awaitable[None]]
"""A handler of one kind: ``(ident, claim)``, ``ident`` being the key after ``<kind>:``."""

log = logging.getLogger("tot.deadlines")


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a worker polls. ``idle_s``: longest sleep between polls (seconds); ``limit``: most entries
    claimed at once; ``eager``: poll again at once after a non-empty batch and wake for the next due
    entry (else always sleep ``idle_s``); ``concurrent``: one task per claim (else handled in turn,
    inside :meth:`DeadlineWorker.run`)."""

    idle_s: float = 0.1
    limit: int = 100
    eager: bool = True
    concurrent: bool = True


def split_key(key: str) -> tuple[str, str]:
    """``"<kind>:<ident>"`` -> ``(kind, ident)``; a key without ``:`` has the kind ``""``."""
    kind, sep, ident = key.partition(":")
    return (kind, ident) if sep else ("", key)


class DeadlineWorker:
    """Claims due entries of one Deadlines queue and routes them by kind, until cancelled.

    ``now_ms``: the clock (epoch ms); ``name``: what log lines call the queue; ``log``: where they go.
    Tracks the tasks it spawns (claims, and work handed to :meth:`spawn`): :meth:`stop` cancels them,
    :meth:`wait_idle` waits for them.
    """

    def __init__(
        self,
        deadlines: Deadlines,
        now_ms: Callable[[], int],
        *,
        name: str = "deadlines",
        pacing: Pacing = Pacing(),
        on_resume: Callable[[], Awaitable[object]] | None = None,
        resume_every_s: float | None = None,
        logger: logging.Logger = log,
    ) -> None:
        self.deadlines = deadlines
        self.now_ms = now_ms
        self.name = name
        self.pacing = pacing
        self.on_resume = on_resume
        self.resume_every_s = resume_every_s
        self.log = logger
        self._handlers: dict[str, Handler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def route(self, kind: str, handler: Handler) -> None:
        """Send entries ``<kind>:<ident>`` to ``handler``. Raises ValueError for a kind routed twice."""
        if kind in self._handlers:
            raise ValueError(f"deadline kind {kind!r} is routed already")
        self._handlers[kind] = handler

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task this worker tracks (cancelled by :meth:`stop`)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def handle(self, claim: Claim) -> None:
        """Run the handler of the claim's kind, then complete the claim. An entry of a kind nobody
        routed is completed (dropped). Raises what the handler raises (the claim stays)."""
        kind, ident = split_key(claim.key)
        handler = self._handlers.get(kind)
        if handler is not None:
            await handler(ident, claim)
        await self.deadlines.complete(claim)

    async def resume(self) -> None:
        """Run the ``on_resume`` hook (nothing without one). Raises what the hook raises."""
        if self.on_resume is not None:
            await self.on_resume()

    async def run(self) -> None:
        """Claim due entries and handle them, until cancelled. Failures are logged, never raised."""
        loop = asyncio.get_running_loop()
        last_resume = loop.time()
        while True:
            if self.resume_every_s is not None and loop.time() - last_resume >= self.resume_every_s:
                last_resume = loop.time()
                try:
                    await self.resume()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("re-arming %s failed", self.name)
            try:
                claims = await self.deadlines.claim_due(self.now_ms(), limit=self.pacing.limit)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("claiming %s failed", self.name)
                claims = []
            for claim in claims:
                if self.pacing.concurrent:
                    self.spawn(self._handle_logged(claim))
                else:
                    await self._handle_logged(claim)
            if not self.pacing.eager:
                await asyncio.sleep(self.pacing.idle_s)
            elif not claims:
                await asyncio.sleep(await self._idle_wait())

    async def _idle_wait(self) -> float:
        """Seconds until the next due entry, at most ``idle_s``: entries scheduled by other processes
        are noticed that fast."""
        try:
            nxt = await self.deadlines.next_due_ms()
        except Exception:
            nxt = None
        if nxt is None:
            return self.pacing.idle_s
        return min(self.pacing.idle_s, max(0.0, (nxt - self.now_ms()) / 1000))

    async def _handle_logged(self, claim: Claim) -> None:
        try:
            await self.handle(claim)
        except Exception:
            self.log.exception(
                "%s handler failed; the entry returns after its lease", self.name, extra={"key": claim.key}
            )

    async def wait_idle(self) -> None:
        """Wait until no tracked task is running (tests: everything a claim started has finished)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel the tracked tasks (their entries come back after the lease) and wait for them."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
