"""The offer loop: find candidates, offer the call, handle accept / decline / expiry, escalate.

Who runs a call's dispatch. Every next step of a call is an entry ``step:<call id>`` in the engine's
Deadlines, and every open offer an entry ``offer:<offer id>`` due at its deadline. Deadlines are claimed
exactly once across all processes sharing the engine, and a claim is a lease: the process that claimed
an entry owns that step until it completes it; if it dies, the entry comes back when the lease ends and
another process takes the call over. A step is started at once in the process that caused it (a new
call, a decline) and is also scheduled ``step_retry_s`` later as the safety net that makes this work.

Why no double booking. A doctor is reserved with the DoctorStates compare-and-set (``available ->
offered``), which admits one winner among all processes; the call row is changed only inside a database
transaction that locks it and checks its status; an offer is decided once (``pending ->`` one outcome,
a conditional UPDATE), and an accept after the deadline is refused (``offer_expired``). Whatever loses a
race gives back what it reserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dispatch.calls import SYSTEM, CallService, Moved, Who
from dispatch.deadlines import Claim, Deadlines
from dispatch.doctor_states import DoctorStates, DoctorStatus
from dispatch.errors import DispatchError, not_found
from dispatch.events import call_summary, epoch_ms, publish_dispatch, publish_doctor, publish_status
from dispatch.lifecycle import DOCTOR_ON_CALL, Actor
from dispatch.ranking import Candidate, Ranked, rank
from dispatch.settings import DispatchSettings
from geo.location_index import MAX_K, LocationIndex
from models.calls import Call
from models.enums import CallStatus, OfferOutcome, Role, Urgency
from models.offers import Offer
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo
from models.repositories import zones as zone_repo
from models.types import utcnow

log = logging.getLogger("tot.dispatch")

STEP = "step:"
OFFER = "offer:"
WORKER_IDLE_S = 0.1
"""Longest sleep of the deadline worker: entries scheduled by other processes are noticed this fast."""
RESERVABLE_BY_HAND = frozenset({DoctorStatus.AVAILABLE, DoctorStatus.PAUSED, DoctorStatus.OFFLINE})
"""A dispatcher may assign a doctor who is free, on a break or off the app (they phoned them), but not one
holding an offer or another call."""


@dataclass(frozen=True, slots=True)
class Reserved:
    """A doctor reserved for an offer (DoctorStates ``offered`` with ``ref`` = the offer id)."""

    ranked: Ranked
    offer_id: uuid.UUID
    radius_m: float


class OfferLoop:
    """Runs every call's dispatch in this process, sharing the work with other processes."""

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
        self.broker = calls.broker
        self.locations = locations
        self.states = states
        self.deadlines = deadlines
        self.settings = settings
        self.now = now
        self._tasks: set[asyncio.Task[None]] = set()

    # --- triggering steps -------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    async def start(self, call: Call) -> None:
        """Begin dispatching a new call: at once, or ``planned_lead_s`` before a planned call's time."""
        if call.urgency == Urgency.PLANNED.value and call.scheduled_at is not None:
            begin = call.scheduled_at - dt.timedelta(seconds=self.settings.planned_lead_s)
            if begin > self.now():
                await self.deadlines.schedule(f"{STEP}{call.id}", epoch_ms(begin) or 0)
                return
        await self.trigger(call.id)

    async def trigger(self, call_id: uuid.UUID) -> None:
        """Run the call's next step now in this process, with the safety-net entry behind it."""
        retry_ms = self._now_ms() + int(self.settings.step_retry_s * 1000)
        await self.deadlines.schedule(f"{STEP}{call_id}", retry_ms)
        self._spawn(self._step_then_settle(call_id))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _step_then_settle(self, call_id: uuid.UUID) -> None:
        try:
            done = await self.step(call_id)
        except Exception:
            log.exception("dispatch step failed; the safety net retries it", extra={"call": str(call_id)})
            return
        if done:
            await self.deadlines.cancel(f"{STEP}{call_id}")

    # --- the step ---------------------------------------------------------------------------------

    async def step(self, call_id: uuid.UUID) -> bool:
        """Advance the call's dispatch: start the search, make offers, or escalate. Returns True when
        nothing further is due for this step (its safety-net entry can go). Safe to run twice
        concurrently: the second finds the call changed and gives back what it reserved."""
        async with self.sessions() as session:
            call = await call_repo.get_call(session, call_id)
        if call is None:
            return True
        status = CallStatus(call.status)
        if status is CallStatus.CREATED:
            await self.calls.move(
                SYSTEM, call_id, CallStatus.SEARCHING, actor=Actor.SYSTEM, reason="search started"
            )
            status = CallStatus.SEARCHING
        if status is CallStatus.OFFERED:
            return await self._repair_offered(call)
        if status is not CallStatus.SEARCHING:
            return True
        return await self._search(call_id)

    async def _repair_offered(self, call: Call) -> bool:
        """An ``offered`` call without any pending offer (its offers were decided while the process
        handling them died) goes back to searching."""
        async with self.sessions() as session:
            pending = await offer_repo.pending_offers(session, call.id)
        if pending:
            return True
        try:
            await self.calls.move(
                SYSTEM, call.id, CallStatus.SEARCHING, actor=Actor.SYSTEM, reason="no open offer"
            )
        except DispatchError:
            return True
        return await self._search(call.id)

    async def _search(self, call_id: uuid.UUID) -> bool:
        async with self.sessions() as session:
            call = await call_repo.get_call(session, call_id)
            if call is None or call.status != CallStatus.SEARCHING.value:
                return True
            since = await call_repo.search_round_started(session, call_id)
            excluded = await offer_repo.offered_doctors(session, call_id, since=since)
            offers_so_far = await offer_repo.offer_count(session, call_id, since=since)
        if offers_so_far >= self.settings.max_offers:
            await self._escalate(call_id, f"no doctor accepted {offers_so_far} offers")
            return True
        wanted = self.settings.broadcast_k if call.urgency == Urgency.EMERGENCY.value else 1
        for radius in self.settings.rings_m:
            ranked = await self._candidates(call, radius, excluded, wanted)
            if not ranked:
                continue
            reserved = await self._reserve(ranked, wanted, radius)
            if not reserved:
                continue  # every candidate was taken by another call meanwhile: look further out
            if await self._offer(call_id, reserved):
                return True
            return True  # the call changed under us (cancelled, assigned by hand): nothing to do
        await self._escalate(call_id, f"no available doctor within {self.settings.rings_m[-1] / 1000:g} km")
        return True

    async def _candidates(
        self, call: Call, radius: float, excluded: set[uuid.UUID], wanted: int
    ) -> list[Ranked]:
        k = min(MAX_K, max(10, wanted * 3) + len(excluded))
        found = await self.locations.nearest_available(
            call.lat,
            call.lon,
            radius_m=radius,
            k=k,
            specialty=call.specialty,
            max_age_ms=self.settings.candidate_max_age_s * 1000,
        )
        nearby = {uuid.UUID(n.doctor_id): n for n in found if uuid.UUID(n.doctor_id) not in excluded}
        if not nearby:
            return []
        async with self.sessions() as session:
            if call.zone_id is not None:
                serving = await zone_repo.doctors_serving(session, list(nearby), call.zone_id)
                nearby = {d: n for d, n in nearby.items() if d in serving}
            ratings = await doctor_repo.ratings(session, list(nearby))
        candidates = []
        for doctor_id, near in nearby.items():
            if doctor_id not in ratings:
                continue  # no verified profile: never a candidate (the index should not have them)
            state = await self.states.get(str(doctor_id))
            candidates.append(Candidate(str(doctor_id), near.distance_m, ratings[doctor_id], state.since_ms))
        return rank(candidates, self.settings.ranking, self._now_ms())

    async def _reserve(self, ranked: list[Ranked], wanted: int, radius: float) -> list[Reserved]:
        reserved: list[Reserved] = []
        for choice in ranked:
            offer_id = uuid.uuid4()
            result = await self.states.compare_and_set(
                choice.candidate.doctor_id,
                expected=DoctorStatus.AVAILABLE,
                new=DoctorStatus.OFFERED,
                ref=str(offer_id),
            )
            if result.ok:
                reserved.append(Reserved(choice, offer_id, radius))
                if len(reserved) == wanted:
                    break
        return reserved

    async def _release(self, doctor_id: object, offer_id: uuid.UUID) -> None:
        """Give a doctor reserved for ``offer_id`` back to the pool (no-op if the state moved on)."""
        await self.states.compare_and_set(
            str(doctor_id),
            expected=DoctorStatus.OFFERED,
            expected_ref=str(offer_id),
            new=DoctorStatus.AVAILABLE,
        )

    async def _offer(self, call_id: uuid.UUID, reserved: list[Reserved]) -> bool:
        now = self.now()
        deadline = now + dt.timedelta(seconds=self.settings.offer_timeout_s)
        abandoned = False
        try:
            async with self.sessions.begin() as session:
                call = await call_repo.get_call(session, call_id, for_update=True)
                if call is None or call.status != CallStatus.SEARCHING.value:
                    abandoned = True
                else:
                    for r in reserved:
                        session.add(
                            Offer(
                                id=r.offer_id,
                                call_id=call_id,
                                doctor_id=uuid.UUID(r.ranked.candidate.doctor_id),
                                created_at=now,
                                deadline_at=deadline,
                                outcome=OfferOutcome.PENDING.value,
                                distance_m=r.ranked.candidate.distance_m,
                                eta_s=r.ranked.eta_s,
                                radius_m=r.radius_m,
                            )
                        )
                    data = {"offers": [str(r.offer_id) for r in reserved]}
                    previous = await self.calls.apply(
                        session, call, CallStatus.OFFERED, Actor.SYSTEM, SYSTEM, data=data
                    )
        except DispatchError as exc:
            await self._release_all(reserved)
            if exc.code in ("conflict", "invalid_transition"):
                return False  # another step or a person changed the call first
            raise
        except BaseException:
            await self._release_all(reserved)
            raise
        if abandoned or call is None:
            await self._release_all(reserved)
            return False
        deadline_ms = epoch_ms(deadline) or 0
        summary = call_summary(call)
        for r in reserved:
            await self.deadlines.schedule(f"{OFFER}{r.offer_id}", deadline_ms)
            await publish_doctor(
                self.broker,
                r.ranked.candidate.doctor_id,
                "offer.created",
                {
                    "offer": str(r.offer_id),
                    "call": summary,
                    "distance_m": round(r.ranked.candidate.distance_m, 1),
                    "eta_s": round(r.ranked.eta_s),
                    "deadline": deadline_ms,
                },
            )
        await publish_status(self.broker, call, previous.value, actor=Actor.SYSTEM.value)
        return True

    async def _release_all(self, reserved: list[Reserved]) -> None:
        for r in reserved:
            await self._release(r.ranked.candidate.doctor_id, r.offer_id)

    async def _escalate(self, call_id: uuid.UUID, reason: str) -> None:
        try:
            moved = await self.calls.move(
                SYSTEM, call_id, CallStatus.ESCALATED, actor=Actor.SYSTEM, reason=reason
            )
        except DispatchError:
            return  # the call moved on meanwhile
        await publish_dispatch(
            self.broker, "call.escalated", {"call": call_summary(moved.call), "reason": reason}
        )

    # --- answers to offers ------------------------------------------------------------------------

    async def accept(self, who: Who, offer_id: uuid.UUID) -> Moved:
        """The offered doctor takes the call. Raises ``DispatchError``: 404 (no such offer, or not
        yours), 409 ``offer_expired`` (too late), ``offer_withdrawn`` (another doctor took it, or the
        call was cancelled or assigned by hand), ``offer_declined``."""
        now = self.now()
        withdrawn: list[Offer] = []
        async with self.sessions.begin() as session:
            offer = await self._own_offer(session, who, offer_id)
            if offer.outcome == OfferOutcome.ACCEPTED.value:
                call = await call_repo.get_call(session, offer.call_id)
                assert call is not None
                return Moved(call, CallStatus(call.status))  # a retried accept: already yours
            self._check_pending(offer, now)
            call = await call_repo.get_call(session, offer.call_id, for_update=True)
            if call is None or call.status != CallStatus.OFFERED.value:
                await offer_repo.decide(session, offer.id, OfferOutcome.WITHDRAWN, now)
                raise DispatchError(409, "offer_withdrawn", "this call is no longer on offer")
            if not await offer_repo.decide(session, offer.id, OfferOutcome.ACCEPTED, now):
                raise DispatchError(409, "offer_withdrawn", "this call is no longer on offer")
            for other in await offer_repo.pending_offers(session, call.id):
                if await offer_repo.decide(session, other.id, OfferOutcome.WITHDRAWN, now):
                    withdrawn.append(other)

            def assign(c: Call) -> None:
                c.doctor_id = who.user_id
                c.assigned_at = now

            try:
                previous = await self.calls.apply(
                    session,
                    call,
                    CallStatus.ASSIGNED,
                    Actor.DOCTOR,
                    who,
                    data={"offer": str(offer.id)},
                    change=assign,
                )
            except DispatchError as exc:
                if exc.code != "conflict":
                    raise
                # Another doctor's accept (or a cancellation) changed the call first: this offer lost.
                raise DispatchError(409, "offer_withdrawn", "another doctor took this call") from None
            name = await self.calls.doctor_name(session, call)
        await self.states.compare_and_set(
            str(who.user_id),
            expected=frozenset(DoctorStatus) - {DoctorStatus.BUSY},
            new=DoctorStatus.BUSY,
            ref=str(call.id),
        )
        await self.deadlines.cancel(f"{OFFER}{offer.id}")
        await self._withdraw(withdrawn, call, "another doctor accepted")
        await publish_doctor(
            self.broker, who.user_id, "call.assigned", {"call": call_summary(call), "offer": str(offer.id)}
        )
        await publish_status(
            self.broker, call, previous.value, actor=Actor.DOCTOR.value, doctor_name=name, eta_s=offer.eta_s
        )
        return Moved(call, previous, name)

    async def decline(self, who: Who, offer_id: uuid.UUID, reason: str | None = None) -> None:
        """The offered doctor says no; the call goes to the next candidate."""
        now = self.now()
        async with self.sessions.begin() as session:
            offer = await self._own_offer(session, who, offer_id)
            if offer.outcome == OfferOutcome.DECLINED.value:
                return  # a retried decline
            self._check_pending(offer, now)
            await offer_repo.decide(session, offer.id, OfferOutcome.DECLINED, now)
            back = await self._back_to_searching(session, offer.call_id, "declined")
        await self._release(who.user_id, offer.id)
        await self.deadlines.cancel(f"{OFFER}{offer.id}")
        await self._after_back(back, "declined")

    async def expire(self, offer_id: uuid.UUID) -> None:
        """The deadline of an offer passed (a Deadlines claim): expire it, next candidate."""
        now = self.now()
        async with self.sessions.begin() as session:
            offer = await offer_repo.get_offer(session, offer_id, for_update=True)
            if offer is None or offer.outcome != OfferOutcome.PENDING.value:
                return
            await offer_repo.decide(session, offer.id, OfferOutcome.EXPIRED, now)
            back = await self._back_to_searching(session, offer.call_id, "offer expired")
        await self._release(offer.doctor_id, offer.id)
        await publish_doctor(
            self.broker,
            offer.doctor_id,
            "offer.expired",
            {"offer": str(offer.id), "call": str(offer.call_id)},
        )
        await self._after_back(back, "offer expired")

    async def _own_offer(self, session: Any, who: Who, offer_id: uuid.UUID) -> Offer:
        offer = await offer_repo.get_offer(session, offer_id, for_update=True)
        if offer is None or who.role is not Role.DOCTOR or offer.doctor_id != who.user_id:
            raise not_found("offer")
        return offer

    @staticmethod
    def _check_pending(offer: Offer, now: dt.datetime) -> None:
        outcome = OfferOutcome(offer.outcome)
        if outcome is OfferOutcome.EXPIRED or (outcome is OfferOutcome.PENDING and now >= offer.deadline_at):
            raise DispatchError(
                409, "offer_expired", "the offer's deadline has passed", deadline=epoch_ms(offer.deadline_at)
            )
        if outcome is OfferOutcome.WITHDRAWN:
            raise DispatchError(409, "offer_withdrawn", "this call is no longer on offer")
        if outcome is OfferOutcome.DECLINED:
            raise DispatchError(409, "offer_declined", "you declined this offer")
        if outcome is OfferOutcome.ACCEPTED:
            raise DispatchError(409, "offer_accepted", "this offer was already accepted")

    async def _back_to_searching(
        self, session: Any, call_id: uuid.UUID, reason: str
    ) -> tuple[Call, CallStatus] | None:
        """In the offer's transaction: an offered call whose last pending offer just closed goes back
        to searching. Returns the change to publish, or None."""
        call = await call_repo.get_call(session, call_id, for_update=True)
        if call is None or call.status != CallStatus.OFFERED.value:
            return None
        if await offer_repo.pending_offers(session, call_id):
            return None  # a broadcast still has open offers
        previous = await self.calls.apply(
            session, call, CallStatus.SEARCHING, Actor.SYSTEM, SYSTEM, reason=reason
        )
        return call, previous

    async def _after_back(self, back: tuple[Call, CallStatus] | None, reason: str) -> None:
        if back is None:
            return
        call, previous = back
        await publish_status(self.broker, call, previous.value, actor=Actor.SYSTEM.value, reason=reason)
        await self.trigger(call.id)

    async def _withdraw(self, offers: list[Offer], call: Call, reason: str) -> None:
        """Tell doctors whose offers were withdrawn (already marked in the database), free them."""
        for offer in offers:
            await self._release(offer.doctor_id, offer.id)
            await self.deadlines.cancel(f"{OFFER}{offer.id}")
            await publish_doctor(
                self.broker,
                offer.doctor_id,
                "offer.withdrawn",
                {"offer": str(offer.id), "call": str(call.id), "reason": reason},
            )

    # --- people stepping in -----------------------------------------------------------------------

    async def assign(
        self, who: Who, call_id: uuid.UUID, doctor_id: uuid.UUID, reason: str | None = None
    ) -> Moved:
        """A dispatcher assigns (or reassigns) the call to a doctor by hand, overriding the loop.
        Raises 404, 409 ``invalid_transition``, 409 ``doctor_unavailable``, 422 for a doctor who is not a
        verified doctor."""
        if not who.staff:
            raise DispatchError(403, "forbidden", "only dispatchers assign calls")
        async with self.sessions() as session:
            profile = await doctor_repo.get_profile(session, doctor_id)
        if profile is None or not profile.verified:
            raise DispatchError(422, "invalid_input", "doctor_id: not a verified doctor", field="doctor_id")
        before = await self.states.get(str(doctor_id))
        reserved = None
        if before.status in RESERVABLE_BY_HAND:
            reserved = await self.states.compare_and_set(
                str(doctor_id),
                expected=before.status,
                expected_version=before.version,
                new=DoctorStatus.BUSY,
                ref=str(call_id),
            )
        if reserved is None or not reserved.ok:
            current = before if reserved is None else reserved.state
            raise DispatchError(
                409,
                "doctor_unavailable",
                f"the doctor is {current.status.value}",
                doctor_status=current.status.value,
            )
        now = self.now()
        withdrawn: list[Offer] = []
        try:
            async with self.sessions.begin() as session:
                call = await call_repo.get_call(session, call_id, for_update=True)
                if call is None:
                    raise not_found("call")
                old_doctor = call.doctor_id if CallStatus(call.status) in DOCTOR_ON_CALL else None
                if old_doctor == doctor_id:
                    raise DispatchError(
                        409, "invalid_transition", "this doctor already has the call", status=call.status
                    )
                for other in await offer_repo.pending_offers(session, call_id):
                    await offer_repo.decide(session, other.id, OfferOutcome.WITHDRAWN, now)
                    withdrawn.append(other)

                def assign(c: Call) -> None:
                    c.doctor_id = doctor_id
                    c.assigned_at = now

                previous = await self.calls.apply(
                    session,
                    call,
                    CallStatus.ASSIGNED,
                    Actor.STAFF,
                    who,
                    reason=reason,
                    data={"doctor": str(doctor_id), "by_hand": True},
                    change=assign,
                )
                name = await self.calls.doctor_name(session, call)
        except BaseException:
            await self.states.compare_and_set(
                str(doctor_id), expected=DoctorStatus.BUSY, expected_ref=str(call_id), new=before.status
            )
            raise
        await self.deadlines.cancel(f"{STEP}{call_id}")
        await self._withdraw(withdrawn, call, "assigned by a dispatcher")
        if old_doctor is not None:
            await self._free_doctor(old_doctor, call, "call.unassigned", "reassigned by a dispatcher")
        await publish_doctor(
            self.broker, doctor_id, "call.assigned", {"call": call_summary(call), "by_hand": True}
        )
        await publish_status(
            self.broker, call, previous.value, actor=Actor.STAFF.value, reason=reason, doctor_name=name
        )
        return Moved(call, previous, name)

    async def _free_doctor(self, doctor_id: uuid.UUID, call: Call, event: str, reason: str) -> None:
        await self.states.compare_and_set(
            str(doctor_id), expected=DoctorStatus.BUSY, expected_ref=str(call.id), new=DoctorStatus.AVAILABLE
        )
        await publish_doctor(self.broker, doctor_id, event, {"call": str(call.id), "reason": reason})

    async def drop(self, who: Who, call_id: uuid.UUID, reason: str | None = None) -> Moved:
        """The assigned doctor (or a dispatcher) sends the call back to searching."""
        holder: dict[str, uuid.UUID | None] = {}

        def unassign(c: Call) -> None:
            holder["doctor"] = c.doctor_id
            c.doctor_id = None
            c.assigned_at = None

        moved = await self.calls.move(
            who, call_id, CallStatus.SEARCHING, reason=reason or "dropped", change=unassign
        )
        doctor = holder.get("doctor")
        if doctor is not None:
            await self._free_doctor(doctor, moved.call, "call.unassigned", reason or "dropped")
        await self.trigger(call_id)
        return moved

    async def relaunch(self, who: Who, call_id: uuid.UUID) -> Moved:
        """A dispatcher restarts the search of an escalated call (a fresh round: earlier refusals are
        asked again)."""
        moved = await self.calls.move(who, call_id, CallStatus.SEARCHING, reason="search re-launched")
        await self.trigger(call_id)
        return moved

    async def cancel(self, who: Who, call_id: uuid.UUID, reason: str) -> Moved:
        """Cancel with a reason: open offers are withdrawn, an assigned doctor is freed and told."""
        now = self.now()
        withdrawn: list[Offer] = []
        async with self.sessions.begin() as session:
            call = await call_repo.get_call(session, call_id, for_update=True)
            if call is None:
                raise not_found("call")
            actor = self.calls.actor_for(who, call)
            doctor = call.doctor_id if CallStatus(call.status) in DOCTOR_ON_CALL else None

            def cancelled(c: Call) -> None:
                c.cancel_reason = reason

            previous = await self.calls.apply(
                session, call, CallStatus.CANCELLED, actor, who, reason=reason, change=cancelled
            )
            for other in await offer_repo.pending_offers(session, call_id):
                await offer_repo.decide(session, other.id, OfferOutcome.WITHDRAWN, now)
                withdrawn.append(other)
        await self.deadlines.cancel(f"{STEP}{call_id}")
        await self._withdraw(withdrawn, call, "call cancelled")
        if doctor is not None:
            await self._free_doctor(doctor, call, "call.cancelled", reason)
        await publish_status(self.broker, call, previous.value, actor=actor.value, reason=reason)
        return Moved(call, previous)

    async def visit(self, who: Who, call_id: uuid.UUID, to: CallStatus, price_final: Any = None) -> Moved:
        """The assigned doctor reports en route, arrived, in progress, completed (with the final price);
        completing frees the doctor."""
        if to not in (CallStatus.EN_ROUTE, CallStatus.ARRIVED, CallStatus.IN_PROGRESS, CallStatus.COMPLETED):
            raise DispatchError(
                422, "invalid_input", "status: en_route, arrived, in_progress or completed", field="status"
            )
        now = self.now()

        def progress(c: Call) -> None:
            if to is CallStatus.COMPLETED:
                c.completed_at = now
                if price_final is not None:
                    c.price_final = price_final

        moved = await self.calls.move(who, call_id, to, change=progress)
        if to is CallStatus.COMPLETED and moved.call.doctor_id is not None:
            await self.states.compare_and_set(
                str(moved.call.doctor_id),
                expected=DoctorStatus.BUSY,
                expected_ref=str(call_id),
                new=DoctorStatus.AVAILABLE,
            )
        return moved

    # --- the worker -------------------------------------------------------------------------------

    async def handle(self, claim: Claim) -> None:
        """Handle one claimed deadline entry (idempotent: an entry can come back after a crash)."""
        key = claim.key
        if key.startswith(STEP):
            call_id = uuid.UUID(key[len(STEP) :])
            done = await self.step(call_id)
            if not done:
                await self.deadlines.schedule(key, self._now_ms() + int(self.settings.step_retry_s * 1000))
                return
        elif key.startswith(OFFER):
            await self.expire(uuid.UUID(key[len(OFFER) :]))
        await self.deadlines.complete(claim)

    async def run(self) -> None:
        """Claim due entries and handle them, until cancelled. A failed handler leaves its entry
        claimed; it comes back when the lease ends (at-least-once)."""
        while True:
            try:
                claims = await self.deadlines.claim_due(self._now_ms(), limit=100)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming deadlines failed")
                claims = []
            for claim in claims:
                self._spawn(self._handle_logged(claim))
            if not claims:
                nxt = await self._next_due()
                wait = (
                    WORKER_IDLE_S
                    if nxt is None
                    else min(WORKER_IDLE_S, max(0.0, (nxt - self._now_ms()) / 1000))
                )
                await asyncio.sleep(wait)

    async def _next_due(self) -> int | None:
        try:
            return await self.deadlines.next_due_ms()
        except Exception:
            return None

    async def _handle_logged(self, claim: Claim) -> None:
        try:
            await self.handle(claim)
        except Exception:
            log.exception(
                "deadline handler failed; the entry returns after its lease", extra={"key": claim.key}
            )

    async def resume(self) -> None:
        """After a start-up: make sure every call in dispatch has its step or offer deadlines (a memory
        engine loses them with the process; Redis keeps them, and scheduling again is harmless)."""
        async with self.sessions() as session:
            active = await call_repo.calls_in_status(
                session, [CallStatus.CREATED.value, CallStatus.SEARCHING.value, CallStatus.OFFERED.value]
            )
            offers = await offer_repo.all_pending(session)
        for offer in offers:
            await self.deadlines.schedule(f"{OFFER}{offer.id}", epoch_ms(offer.deadline_at) or 0)
        for call_id in active:
            if await self.deadlines.get(f"{STEP}{call_id}") is None:
                await self.deadlines.schedule(f"{STEP}{call_id}", self._now_ms())

    async def stop(self) -> None:
        """Cancel in-flight step tasks (their entries come back after the lease)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
