"""A call's next step: start the search, offer ring by ring, escalate, repair after a lost step.

A step runs at once in the process that caused it (:meth:`OfferStep.trigger`) and is also an entry
``step:<call id>`` in the engine's Deadlines, due ``step_retry_s`` later: the safety net that lets
another process take the call over if this one dies. Runs of one call's step may overlap; each checks
the call's status under its row lock before every move (dispatch/offer_loop.py tells the whole story).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from dispatch.calls import SYSTEM
from dispatch.dispatch_context import DispatchContext, offer_key, step_key
from dispatch.errors import DispatchError
from dispatch.events import call_summary, epoch_ms
from dispatch.lifecycle import Actor
from dispatch.offer_making import candidates, make_offers, reserve
from dispatch.planned_dispatch import offer_to_booked, release_before_search
from dispatch.publisher import OutboxTransaction
from dispatch.reservations import arm_step, back_to_searching
from models.calls import Call
from models.enums import CallStatus, Urgency
from models.repositories import calls as call_repo
from models.repositories import offers as offer_repo
from realtime.event_types import EventType

log = logging.getLogger("tot.dispatch")

SETTLING_RETRY_MS = 100
"""How soon (ms) a search that found nobody while the engine settles looks again."""
SEARCH_ATTEMPTS = 3
"""Searches one step makes when concurrent runs of the step keep changing the round under it."""


class OfferStep:
    """Triggers and runs calls' steps (see the module docstring)."""

    def __init__(self, ctx: DispatchContext) -> None:
        self.ctx = ctx

    def dispatch_begins(self, call: Call) -> dt.datetime | None:
        """When a planned call's dispatch starts (``planned_lead_s`` before its time); None for others."""
        if call.urgency == Urgency.PLANNED.value and call.scheduled_at is not None:
            return call.scheduled_at - dt.timedelta(seconds=self.ctx.settings.planned_lead_s)
        return None

    async def start(self, call: Call) -> None:
        """Begin dispatching a new call: at once, or ``planned_lead_s`` before a planned call's time.
        Follows the call's commit, so it never raises an engine error: a lost entry is re-armed by
        the periodic resume (``OfferLoop.resume``) or the repair sweep."""
        begin = self.dispatch_begins(call)
        if begin is not None and begin > self.ctx.now():
            await self.ctx.publisher.follow_up(
                "schedule a planned call",
                self.ctx.deadlines.schedule(step_key(call.id), epoch_ms(begin) or 0),
            )
            return
        await self.trigger(call.id, call)

    async def trigger(self, call_id: uuid.UUID, call: Call | None = None) -> None:
        """Run the call's next step now in this process, with the safety-net entry behind it.
        ``call``: the call as just committed, when the caller has it (saves the step a read). Follows
        a commit, so an engine error arming the entry is logged and counted, not raised (the step
        runs anyway; the periodic resume re-arms a call left without an entry)."""
        armed: list[int] = []

        async def arm() -> None:
            armed.append(await arm_step(self.ctx, call_id))

        await self.ctx.publisher.follow_up("arm a call's step", arm())
        self.ctx.spawn(self._step_then_settle(call_id, armed[0] if armed else -1, call))

    async def _step_then_settle(self, call_id: uuid.UUID, armed_ms: int, call: Call | None) -> None:
        try:
            done = await self.step(call_id, call)
        except Exception:
            log.exception("dispatch step failed; the safety net retries it", extra={"call": str(call_id)})
            return
        if done:
            await self._disarm_step(call_id, armed_ms)

    async def _disarm_step(self, call_id: uuid.UUID, armed_ms: int) -> None:
        """Remove the safety-net entry this run armed, and only that one: an entry armed again since
        (a later decline, expiry) or claimed by another process covers a later change, whose own
        step may yet die."""
        entry = await self.ctx.deadlines.get(step_key(call_id))
        if entry is not None and entry.attempt == 0 and entry.due_ms == armed_ms:
            await self.ctx.deadlines.cancel(step_key(call_id))

    async def on_deadline(self, ident: str, _claim: object) -> None:
        """The ``step`` entry of the call ``ident`` came due (a Deadlines claim): run the step; when it
        is not done, schedule it again ``step_retry_s`` from now (which voids the claim, so the
        worker's ``complete`` keeps the new entry)."""
        call_id = uuid.UUID(ident)
        if not await self.step(call_id):
            await self.ctx.deadlines.schedule(
                step_key(call_id), self.ctx.now_ms() + int(self.ctx.settings.step_retry_s * 1000)
            )

    async def step(self, call_id: uuid.UUID, known: Call | None = None) -> bool:
        """Advance the call's dispatch: start the search, make offers, or escalate. Returns True when
        nothing further is due for this step (its safety-net entry can go). Safe to run twice
        concurrently: the second finds the call changed and gives back what it reserved.
        ``known``: the call as its creator committed it (read here otherwise); only a hint, every
        move is checked again under the call's row lock."""
        call = known
        if call is None:
            async with self.ctx.sessions() as session:
                call = await call_repo.get_call(session, call_id)
        if call is None:
            return True
        status = CallStatus(call.status)
        if status is CallStatus.CREATED:
            begin = self.dispatch_begins(call)
            if begin is not None and begin > self.ctx.now():
                # A planned call whose time has not come (a re-arm after a restart woke it early):
                # its entry moves to that time. Replacing the entry voids any claim on it, so the
                # caller's complete() leaves the new one in place.
                await self.ctx.deadlines.schedule(step_key(call_id), epoch_ms(begin) or 0)
                return True
            if await offer_to_booked(self.ctx, call) or await self._first_offer(call):
                return True
            started = await self._start_search(call_id)
            if started is None:
                return True
            status = started
        if status is CallStatus.OFFERED:
            return await self._repair_offered(call)
        if status is not CallStatus.SEARCHING:
            return True
        return await self._search(call_id)

    def _wanted(self, call: Call) -> int:
        """How many doctors one offer round asks: ``broadcast_k`` for an emergency, else one."""
        return self.ctx.settings.broadcast_k if call.urgency == Urgency.EMERGENCY.value else 1

    async def _first_offer(self, call: Call) -> bool:
        """The fast path of a new call: its first offers committed in one transaction with the start
        of its search (``created -> searching -> offered``, both events written), with no reads of a
        search round (a call still ``created`` under its row lock has never been offered). True when
        done: offered, or the call moved on (cancelled, or offered by another run of the step).
        False when the long way must follow (:meth:`_start_search`, then :meth:`_search`): nobody to
        offer it to in any ring (the long way searches again, then escalates), or another run of the
        step started the search first.

        Why: the time from a new call to its first ``offer.created`` is the product's headline
        latency, and every statement is a wait on a busy event loop (loadtests/bench_dispatch.py)."""
        wanted = self._wanted(call)
        for radius in self.ctx.settings.rings_m:
            ranked = await candidates(self.ctx, call, radius, set(), wanted)
            if not ranked:
                continue
            reserved = await reserve(self.ctx, call.id, ranked, wanted, radius)
            if not reserved:
                continue
            return await make_offers(self.ctx, call.id, reserved, (None, 0), first=True) is not None
        return False

    async def _start_search(self, call_id: uuid.UUID) -> CallStatus | None:
        """``created -> searching``, only if the call is still ``created`` under its row lock (another
        run of this step, or a person, may have moved it since it was read: from ``offered``, say, the
        same move would be a legal transition with the wrong meaning). Returns the status after (None:
        no such call)."""
        async with self.ctx.publisher.transaction() as tx:
            locked = await call_repo.get_call(tx.session, call_id, for_update=True)
            if locked is None or locked.status != CallStatus.CREATED.value:
                return None if locked is None else CallStatus(locked.status)
            previous = await self.ctx.calls.apply(
                tx.session, locked, CallStatus.SEARCHING, Actor.SYSTEM, SYSTEM, reason="search started"
            )
            tx.status(locked, previous.value, actor=Actor.SYSTEM.value, reason="search started")
        return CallStatus.SEARCHING

    async def _repair_offered(self, call: Call) -> bool:
        """An ``offered`` call whose offers were made or decided by a process that died before it
        finished: a pending offer without its deadline entry gets it back; a call without any pending
        offer goes back to searching, checked again under the call's row lock (a call seen
        ``offered`` a moment ago may be searching, or offered again, by now)."""
        async with self.ctx.sessions() as session:
            pending = await offer_repo.pending_offers(session, call.id)
        for offer in pending:
            if await self.ctx.deadlines.get(offer_key(offer.id)) is None:
                await self.ctx.deadlines.schedule(offer_key(offer.id), epoch_ms(offer.deadline_at) or 0)
        if pending:
            return True
        async with self.ctx.publisher.transaction() as tx:
            back = await back_to_searching(self.ctx, tx, call.id, "no open offer")
        if back is None:
            return True
        return await self._search(call.id)

    async def _search(self, call_id: uuid.UUID) -> bool:
        """Offer the call to the best candidates, or escalate. False when it lost every attempt to
        a concurrent run of the step (the safety net runs it again)."""
        for _attempt in range(SEARCH_ATTEMPTS):
            done = await self._search_once(call_id)
            if done is not None:
                return done
        return False

    async def _search_once(self, call_id: uuid.UUID) -> bool | None:
        """One search from a fresh read of the call; None when another run of the step offered the
        call meanwhile, so this one's view of the round (who was asked, how many offers) is stale."""
        async with self.ctx.sessions() as session:
            call = await call_repo.get_call(session, call_id)
            if call is None or call.status != CallStatus.SEARCHING.value:
                return True
            since = await call_repo.search_round_started(session, call_id)
            excluded = await offer_repo.offered_doctors(session, call_id, since=since)
            offers_so_far = await offer_repo.offer_count(session, call_id, since=since)
        await release_before_search(self.ctx, call)  # the booked doctor did not take it: anyone may
        settings = self.ctx.settings
        if offers_so_far >= settings.max_offers:
            await self._escalate(call_id, f"no doctor accepted {offers_so_far} offers")
            return True
        wanted = self._wanted(call)
        for radius in settings.rings_m:
            ranked = await candidates(self.ctx, call, radius, excluded, wanted)
            if not ranked:
                continue
            reserved = await reserve(self.ctx, call_id, ranked, wanted, radius)
            if not reserved:
                continue  # every candidate was taken by another call meanwhile: look further out
            offered = await make_offers(self.ctx, call_id, reserved, (since, offers_so_far))
            if offered is None:
                return None  # our view of the round is stale: search again
            return True  # offered, or the call changed under us (cancelled, assigned): nothing to do
        await self.ctx.check_engine()  # rare (nobody in any ring): one GET of the epoch
        if self.ctx.settling():
            # The engine was just rebuilt: doctors' positions come back as their apps re-announce, so
            # "nobody near" is not yet known. Look again shortly rather than escalate a call that the
            # fleet can take (issue 16: calls after a Redis restart escalated at once, 18 of 18).
            await self.ctx.deadlines.schedule(step_key(call_id), self.ctx.now_ms() + SETTLING_RETRY_MS)
            log.info("no candidate while the engine settles; searching again", extra={"call": str(call_id)})
            return True
        await self._escalate(call_id, f"no available doctor within {settings.rings_m[-1] / 1000:g} km")
        return True

    async def _escalate(self, call_id: uuid.UUID, reason: str) -> None:
        """Nobody took the call: ``escalated`` (a human acts), ``call.escalated`` on ``dispatch``."""

        def escalated(tx: OutboxTransaction, call: Call) -> None:
            tx.dispatch(EventType.CALL_ESCALATED, {"call": call_summary(call), "reason": reason})

        try:
            await self.ctx.calls.move(
                SYSTEM, call_id, CallStatus.ESCALATED, actor=Actor.SYSTEM, reason=reason, also=escalated
            )
        except DispatchError:
            return  # the call moved on meanwhile
