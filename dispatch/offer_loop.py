"""The offer loop: find candidates, offer the call, handle accept / decline / expiry, escalate.

Who runs a call's dispatch. Every next step of a call is an entry ``step:<call id>`` in the engine's
Deadlines, and every open offer an entry ``offer:<offer id>`` due at its deadline. Deadlines are claimed
exactly once across all processes sharing the engine, and a claim is a lease: the process that claimed
an entry owns that step until it completes it; if it dies, the entry comes back when the lease ends and
another process takes the call over. A step is started at once in the process that caused it (a new
call, a decline) and is also scheduled ``step_retry_s`` later as the safety net that makes this work.

What survives a process dying between two writes. Redis and the database are not written atomically
together, so every change that leaves work to do has its Deadlines entry *before* the commit that
makes it: an offer's entry exists before its doctor is reserved (it frees the doctor if the offer is
never committed, and carries the offer's deadline once it is); a call going back to searching has its
step armed before the commit. A run of a step removes only the entry it armed itself, and checks the
call's status under the row lock before every move: runs of one call's step may overlap (the safety net
comes due while a slow run is still going), and a run that finds the call changed, or its view of the
search round stale, starts over or leaves the call alone. An offer's entry that comes back after its
offer was decided brings the doctor's state in line (freed, or busy with the call they accepted).

Why no double booking. A doctor is reserved with the DoctorStates compare-and-set (``available ->
offered``), which admits one winner among all processes; the call row is changed only inside a database
transaction that locks it and checks its status; an offer is decided once (``pending ->`` one outcome,
a conditional UPDATE), and an accept after the deadline is refused (``offer_expired``). Whatever loses a
race gives back what it reserved.

Where each concept lives: the step (trigger, search, repair, escalate) in dispatch/offer_step.py, the
making of offers (candidates, reservations, the commit) in dispatch/offer_making.py, the doctors'
answers (accept, decline, expire, settle) in dispatch/offer_answers.py, people stepping in (assign,
drop, relaunch, cancel, visit) in dispatch/interventions.py, the helpers they share in
dispatch/reservations.py and their dependencies in dispatch/dispatch_context.py. The deadline worker
(dispatch/deadline_worker.py) routes ``step:`` and ``offer:`` entries to them. This module is the
facade the server and the tests call.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from dispatch.calls import CallService, Moved, Who
from dispatch.deadline_worker import DeadlineWorker, Pacing
from dispatch.deadlines import Claim, Deadlines
from dispatch.dispatch_context import OFFER, STEP, DispatchContext, offer_key, step_key
from dispatch.doctor_states import DoctorStates
from dispatch.events import epoch_ms
from dispatch.interventions import Interventions
from dispatch.offer_answers import OfferAnswers
from dispatch.offer_step import OfferStep
from dispatch.settings import DispatchSettings
from geo.location_index import LocationIndex
from models.calls import Call
from models.enums import CallStatus
from models.repositories import calls as call_repo
from models.repositories import offers as offer_repo
from models.types import utcnow

log = logging.getLogger("tot.dispatch")

REARM_INTERVAL_S = 60.0
"""How often each process re-arms open calls without a deadline entry (see ``run``)."""
WORKER_IDLE_S = 0.1
"""Longest sleep of the deadline worker: entries scheduled by other processes are noticed this fast."""


async def _no_engine_check() -> None:
    """Before an engine watcher is attached there is nothing to check."""


class OfferLoop:
    """Runs every call's dispatch in this process, sharing the work with other processes.

    A facade over the parts (dispatch/offer_step.py, dispatch/offer_answers.py,
    dispatch/interventions.py) and the deadline worker that routes ``step:`` and ``offer:`` entries
    to them; callers (server/, tests) use only this class."""

    def __init__(
        self,
        calls: CallService,
        locations: LocationIndex,
        states: DoctorStates,
        deadlines: Deadlines,
        settings: DispatchSettings,
        *,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.calls = calls
        self.sessions = calls.sessions
        self.publisher = calls.publisher
        self.locations = locations
        self.states = states
        self.deadlines = deadlines
        self.settings = settings
        self.now = now
        self.worker = DeadlineWorker(
            deadlines,
            self._now_ms,
            name="deadlines",
            pacing=Pacing(idle_s=WORKER_IDLE_S, limit=100, eager=True, concurrent=True),
            on_resume=self.resume,
            resume_every_s=REARM_INTERVAL_S,
            logger=log,
        )
        self.settling: Callable[[], bool] = lambda: False
        """Set by the engine watcher's owner (server/engine_care.py): is the engine settling?"""
        self.check_engine: Callable[[], Awaitable[object]] = _no_engine_check
        """Set by the same owner: check the engine's epoch now (``EngineWatch.check``)."""
        ctx = DispatchContext(
            calls,
            locations,
            states,
            deadlines,
            settings,
            now,
            self.worker,
            lambda: self.settling(),
            lambda: self.check_engine(),
        )
        self.steps = OfferStep(ctx)
        self.answers = OfferAnswers(ctx, self.steps)
        self.interventions = Interventions(ctx, self.steps)
        self.worker.route(STEP, self.steps.on_deadline)
        self.worker.route(OFFER, self.answers.on_deadline)

    def _now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    # --- the step ---------------------------------------------------------------------------------

    async def start(self, call: Call) -> None:
        """Begin dispatching a new call: at once, or ``planned_lead_s`` before a planned call's time."""
        await self.steps.start(call)

    async def trigger(self, call_id: uuid.UUID, call: Call | None = None) -> None:
        """Run the call's next step now in this process, with the safety-net entry behind it.
        ``call``: the call as just committed, when the caller has it (saves the step a read)."""
        await self.steps.trigger(call_id, call)

    async def step(self, call_id: uuid.UUID, known: Call | None = None) -> bool:
        """Advance the call's dispatch (see :meth:`OfferStep.step`). True when nothing further is due."""
        return await self.steps.step(call_id, known)

    # --- answers to offers ------------------------------------------------------------------------

    async def accept(self, who: Who, offer_id: uuid.UUID) -> Moved:
        """The offered doctor takes the call. Raises ``DispatchError``: 404 (no such offer, or not
        yours), 409 ``offer_expired`` (too late), ``offer_withdrawn`` (another doctor took it, or the
        call was cancelled or assigned by hand), ``offer_declined``."""
        return await self.answers.accept(who, offer_id)

    async def decline(self, who: Who, offer_id: uuid.UUID, reason: str | None = None) -> None:
        """The offered doctor says no; the call goes to the next candidate."""
        await self.answers.decline(who, offer_id, reason)

    async def expire(self, offer_id: uuid.UUID, reservation: bytes = b"") -> None:
        """The deadline of an offer passed: expire it, next candidate (see :meth:`OfferAnswers.expire`)."""
        await self.answers.expire(offer_id, reservation)

    # --- people stepping in -----------------------------------------------------------------------

    async def assign(
        self, who: Who, call_id: uuid.UUID, doctor_id: uuid.UUID, reason: str | None = None
    ) -> Moved:
        """A dispatcher assigns (or reassigns) the call to a doctor by hand, overriding the loop.
        Raises 404, 409 ``invalid_transition``, 409 ``doctor_unavailable``, 422 for a doctor who is not a
        verified doctor."""
        return await self.interventions.assign(who, call_id, doctor_id, reason)

    async def drop(self, who: Who, call_id: uuid.UUID, reason: str | None = None) -> Moved:
        """The assigned doctor (or a dispatcher) sends the call back to searching."""
        return await self.interventions.drop(who, call_id, reason)

    async def relaunch(self, who: Who, call_id: uuid.UUID) -> Moved:
        """A dispatcher restarts the search of an escalated call (a fresh round)."""
        return await self.interventions.relaunch(who, call_id)

    async def cancel(self, who: Who, call_id: uuid.UUID, reason: str) -> Moved:
        """Cancel with a reason: open offers are withdrawn, an assigned doctor is freed and told."""
        return await self.interventions.cancel(who, call_id, reason)

    async def visit(self, who: Who, call_id: uuid.UUID, to: CallStatus, price_final: Any = None) -> Moved:
        """The assigned doctor reports en route, arrived, in progress, completed (with the final price);
        completing frees the doctor."""
        return await self.interventions.visit(who, call_id, to, price_final)

    # --- the worker -------------------------------------------------------------------------------

    async def handle(self, claim: Claim) -> None:
        """Handle one claimed deadline entry (idempotent: an entry can come back after a crash)."""
        await self.worker.handle(claim)

    async def run(self) -> None:
        """Claim due entries and handle them, until cancelled. A failed handler leaves its entry
        claimed; it comes back when the lease ends (at-least-once). Every :data:`REARM_INTERVAL_S` it
        also re-arms open calls that have no entry (:meth:`resume`): a process that died between
        committing a change and arming the next step (a new call, a drop) leaves no call behind."""
        await self.worker.run()

    async def resume(self) -> dict[str, int]:
        """Make sure every call in dispatch has a step or offer entry, arming only the missing ones (an
        existing entry may be claimed by a live process right now). Needed at start-up (a memory engine
        loses its entries with the process), after the engine was lost (dispatch/rebuild.py) and
        periodically (a process that died between a commit and arming the next step; the repair sweep,
        dispatch/repair_sweep.py). Planned calls whose time has not come are re-armed for their time by
        the step itself; an offered call waits on its pending offers' entries, not on a step. Returns
        how many entries it armed by kind (``{"step": n, "offer": m}``).

        An entry found missing is armed only if the database, read again *after* the entries, still
        wants it and it is still missing then. The first read of the database is older than the
        entries read after it: a step that made its offer and removed its entry in between (the call
        now ``offered``), or an offer decided in between, would otherwise read as a lost entry and be
        "repaired" (issue 16's "deadlines re-armed kind=step" under load). Every change that leaves
        work to do arms its entry before its commit, so a database read after the entry that still
        wants it proves the entry was lost."""
        wanted = await self._wanted()
        missing = [key for key in wanted if await self.deadlines.get(key) is None]
        armed = {STEP: 0, OFFER: 0}
        if not missing:
            return armed
        again = await self._wanted()
        for key in missing:
            if key in again and await self.deadlines.get(key) is None:
                await self.deadlines.schedule(key, again[key])
                armed[key.split(":", 1)[0]] += 1
        return armed

    async def _wanted(self) -> dict[str, int]:
        """The entries the database wants now, ``key -> due ms``: each pending offer's expiry at its
        deadline, and a step now for each call created or searching, or offered with no pending offer
        left. Two reads in one session (calls, then offers)."""
        async with self.sessions() as session:
            active = await call_repo.calls_in_status(
                session, [CallStatus.CREATED.value, CallStatus.SEARCHING.value]
            )
            offered = await call_repo.calls_in_status(session, [CallStatus.OFFERED.value])
            offers = await offer_repo.all_pending(session)
        wanted = {offer_key(offer.id): epoch_ms(offer.deadline_at) or 0 for offer in offers}
        waiting = {offer.call_id for offer in offers}
        now_ms = self._now_ms()
        for call_id in [*active, *(c for c in offered if c not in waiting)]:
            wanted[step_key(call_id)] = now_ms
        return wanted

    async def wait_idle(self) -> None:
        """Wait until every step and deadline handler started in this process has finished (tests)."""
        await self.worker.wait_idle()

    async def stop(self) -> None:
        """Cancel in-flight step tasks (their entries come back after the lease)."""
        await self.worker.stop()
