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
from dispatch.events import (
    CALL_UNASSIGNED,
    call_summary,
    epoch_ms,
    publish_dispatch,
    publish_doctor,
    publish_status,
)
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
from realtime.broker import Outgoing
from realtime.channels import doctor_channel
from realtime.errors import ErrorCode

log = logging.getLogger("tot.dispatch")

STEP = "step:"
OFFER = "offer:"
SEARCH_ATTEMPTS = 3
"""Searches one step makes when concurrent runs of the step keep changing the round under it."""
REARM_INTERVAL_S = 60.0
"""How often each process re-arms open calls without a deadline entry (see ``run``)."""
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


def _reservation(call_id: uuid.UUID, doctor_id: str) -> bytes:
    """The payload of an offer's Deadlines entry: whom it reserved, for which call."""
    return f"{call_id}/{doctor_id}".encode()


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

    def _dispatch_begins(self, call: Call) -> dt.datetime | None:
        """When a planned call's dispatch starts (``planned_lead_s`` before its time); None for others."""
        if call.urgency == Urgency.PLANNED.value and call.scheduled_at is not None:
            return call.scheduled_at - dt.timedelta(seconds=self.settings.planned_lead_s)
        return None

    async def start(self, call: Call) -> None:
        """Begin dispatching a new call: at once, or ``planned_lead_s`` before a planned call's time."""
        begin = self._dispatch_begins(call)
        if begin is not None and begin > self.now():
            await self.deadlines.schedule(f"{STEP}{call.id}", epoch_ms(begin) or 0)
            return
        await self.trigger(call.id, call)

    async def trigger(self, call_id: uuid.UUID, call: Call | None = None) -> None:
        """Run the call's next step now in this process, with the safety-net entry behind it.
        ``call``: the call as just committed, when the caller has it (saves the step a read)."""
        armed_ms = await self._arm_step(call_id)
        self._spawn(self._step_then_settle(call_id, armed_ms, call))

    async def _arm_step(self, call_id: uuid.UUID) -> int:
        """Schedule the call's safety-net step ``step_retry_s`` from now; returns its due time. Whatever
        commits a change that needs a next step arms it *before* the commit: a process that dies
        between the commit and :meth:`trigger` would otherwise leave the call with nobody to move it
        on (a spare step finds nothing to do and ends)."""
        retry_ms = self._now_ms() + int(self.settings.step_retry_s * 1000)
        await self.deadlines.schedule(f"{STEP}{call_id}", retry_ms)
        return retry_ms

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        entry = await self.deadlines.get(f"{STEP}{call_id}")
        if entry is not None and entry.attempt == 0 and entry.due_ms == armed_ms:
            await self.deadlines.cancel(f"{STEP}{call_id}")

    # --- the step ---------------------------------------------------------------------------------

    async def step(self, call_id: uuid.UUID, known: Call | None = None) -> bool:
        """Advance the call's dispatch: start the search, make offers, or escalate. Returns True when
        nothing further is due for this step (its safety-net entry can go). Safe to run twice
        concurrently: the second finds the call changed and gives back what it reserved.
        ``known``: the call as its creator committed it (read here otherwise); only a hint, every
        move is checked again under the call's row lock."""
        call = known
        if call is None:
            async with self.sessions() as session:
                call = await call_repo.get_call(session, call_id)
        if call is None:
            return True
        status = CallStatus(call.status)
        if status is CallStatus.CREATED:
            begin = self._dispatch_begins(call)
            if begin is not None and begin > self.now():
                # A planned call whose time has not come (a re-arm after a restart woke it early):
                # its entry moves to that time. Replacing the entry voids any claim on it, so the
                # caller's complete() leaves the new one in place.
                await self.deadlines.schedule(f"{STEP}{call_id}", epoch_ms(begin) or 0)
                return True
            if await self._first_offer(call):
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
        wanted = self.settings.broadcast_k if call.urgency == Urgency.EMERGENCY.value else 1
        for radius in self.settings.rings_m:
            ranked = await self._candidates(call, radius, set(), wanted)
            if not ranked:
                continue
            reserved = await self._reserve(call.id, ranked, wanted, radius)
            if not reserved:
                continue
            return await self._offer(call.id, reserved, (None, 0), first=True) is not None
        return False

    async def _start_search(self, call_id: uuid.UUID) -> CallStatus | None:
        """``created -> searching``, only if the call is still ``created`` under its row lock (another
        run of this step, or a person, may have moved it since it was read: from ``offered``, say, the
        same move would be a legal transition with the wrong meaning). Returns the status after (None:
        no such call)."""
        async with self.sessions.begin() as session:
            locked = await call_repo.get_call(session, call_id, for_update=True)
            if locked is None or locked.status != CallStatus.CREATED.value:
                return None if locked is None else CallStatus(locked.status)
            previous = await self.calls.apply(
                session, locked, CallStatus.SEARCHING, Actor.SYSTEM, SYSTEM, reason="search started"
            )
        await publish_status(
            self.broker, locked, previous.value, actor=Actor.SYSTEM.value, reason="search started"
        )
        return CallStatus.SEARCHING

    async def _repair_offered(self, call: Call) -> bool:
        """An ``offered`` call whose offers were made or decided by a process that died before it
        finished: a pending offer without its deadline entry gets it back; a call without any pending
        offer goes back to searching, checked again under the call's row lock (a call seen
        ``offered`` a moment ago may be searching, or offered again, by now)."""
        async with self.sessions() as session:
            pending = await offer_repo.pending_offers(session, call.id)
        for offer in pending:
            if await self.deadlines.get(f"{OFFER}{offer.id}") is None:
                await self.deadlines.schedule(f"{OFFER}{offer.id}", epoch_ms(offer.deadline_at) or 0)
        if pending:
            return True
        async with self.sessions.begin() as session:
            back = await self._back_to_searching(session, call.id, "no open offer")
        if back is None:
            return True
        moved, previous = back
        await publish_status(
            self.broker, moved, previous.value, actor=Actor.SYSTEM.value, reason="no open offer"
        )
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
            reserved = await self._reserve(call_id, ranked, wanted, radius)
            if not reserved:
                continue  # every candidate was taken by another call meanwhile: look further out
            offered = await self._offer(call_id, reserved, (since, offers_so_far))
            if offered is None:
                return None  # our view of the round is stale: search again
            return True  # offered, or the call changed under us (cancelled, assigned): nothing to do
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
        # Doctors without a verified profile are never candidates (the index should not have them).
        # Their idle times (fairness) are read in one batch: one awaited read per candidate was up to
        # k round trips to Redis on every search (loadtests/bench_dispatch.py).
        states = await self.states.get_many([str(d) for d in nearby if d in ratings])
        candidates = [
            Candidate(str(d), near.distance_m, ratings[d], states[str(d)].since_ms)
            for d, near in nearby.items()
            if d in ratings
        ]
        return rank(candidates, self.settings.ranking, self._now_ms())

    async def _reserve(
        self, call_id: uuid.UUID, ranked: list[Ranked], wanted: int, radius: float
    ) -> list[Reserved]:
        """Reserve up to ``wanted`` doctors (``available -> offered``, ref = a new offer id). Each
        reservation has its offer's Deadlines entry *before* it exists: should this process die before
        the offer is committed, the entry frees the doctor (:meth:`expire`), who would otherwise stay
        ``offered`` for good."""
        reserved: list[Reserved] = []
        due_ms = self._now_ms() + int((self.settings.offer_timeout_s + self.settings.step_retry_s) * 1000)
        for choice in ranked:
            offer_id = uuid.uuid4()
            doctor_id = choice.candidate.doctor_id
            await self.deadlines.schedule(f"{OFFER}{offer_id}", due_ms, _reservation(call_id, doctor_id))
            result = await self.states.compare_and_set(
                doctor_id, expected=DoctorStatus.AVAILABLE, new=DoctorStatus.OFFERED, ref=str(offer_id)
            )
            if not result.ok:
                await self.deadlines.cancel(f"{OFFER}{offer_id}")
                continue
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

    async def _offer(
        self,
        call_id: uuid.UUID,
        reserved: list[Reserved],
        round_seen: tuple[dt.datetime | None, int],
        *,
        first: bool = False,
    ) -> bool | None:
        """Make the offers to the reserved doctors. True when made; False when the call is no longer
        searching; None when the round changed since ``round_seen`` (its start, its offer count: a
        concurrent run of the step made an offer, so ours could ask a doctor twice or one too many).
        Whatever is not offered is released. ``first``: the call is expected ``created`` (see
        :meth:`_first_offer`); it starts its search in the same transaction, and a call found
        ``searching`` counts as a changed round (None).

        The offers' deadline entries are scheduled before the commit: once the call is ``offered``,
        nothing else would expire an offer whose process died right after the commit (a concurrent
        run of the step that saw the call change ends, completing the step's entry)."""
        abandoned = False
        stale = False
        deadline_ms = 0
        expected = CallStatus.CREATED if first else CallStatus.SEARCHING
        started: tuple[CallStatus, int] | None = None
        try:
            async with self.sessions.begin() as session:
                call = await call_repo.get_call(session, call_id, for_update=True)
                if call is None or call.status != expected.value:
                    abandoned = True
                    stale = first and call is not None and call.status == CallStatus.SEARCHING.value
                elif (
                    not first and await self._round(session, call_id) != round_seen
                ) or not await self._still_held(reserved):
                    abandoned = stale = True
                else:
                    if first:
                        before = await self.calls.apply(
                            session, call, CallStatus.SEARCHING, Actor.SYSTEM, SYSTEM, reason="search started"
                        )
                        started = (before, call.version)
                    now = self.now()  # under the lock: the doctor gets the whole time to answer
                    deadline = now + dt.timedelta(seconds=self.settings.offer_timeout_s)
                    deadline_ms = epoch_ms(deadline) or 0
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
                    for r in reserved:
                        payload = _reservation(call_id, r.ranked.candidate.doctor_id)
                        await self.deadlines.schedule(f"{OFFER}{r.offer_id}", deadline_ms, payload)
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
            return None if stale else False
        summary = call_summary(call)
        # An emergency's K offers go out as one batch (one Redis round trip, not K).
        await self.broker.publish_many(
            [
                Outgoing(
                    doctor_channel(r.ranked.candidate.doctor_id),
                    "offer.created",
                    {
                        "offer": str(r.offer_id),
                        "call": summary,
                        "distance_m": round(r.ranked.candidate.distance_m, 1),
                        "eta_s": round(r.ranked.eta_s),
                        "deadline": deadline_ms,
                    },
                )
                for r in reserved
            ]
        )
        if started is not None:
            before, version = started
            await publish_status(
                self.broker,
                call,
                before.value,
                actor=Actor.SYSTEM.value,
                reason="search started",
                as_of=(CallStatus.SEARCHING.value, version),
            )
        await publish_status(self.broker, call, previous.value, actor=Actor.SYSTEM.value)
        return True

    @staticmethod
    async def _round(session: Any, call_id: uuid.UUID) -> tuple[dt.datetime | None, int]:
        """The call's current search round: when it started, how many offers it made so far."""
        since = await call_repo.search_round_started(session, call_id)
        return since, await offer_repo.offer_count(session, call_id, since=since)

    async def _still_held(self, reserved: list[Reserved]) -> bool:
        """Under the call's row lock: every reservation is still ours (a step slower than its
        reservation's entry finds its doctors freed by :meth:`expire`, which takes the same lock)."""
        for r in reserved:
            state = await self.states.get(r.ranked.candidate.doctor_id)
            if state.status is not DoctorStatus.OFFERED or state.ref != str(r.offer_id):
                return False
        return True

    async def _release_all(self, reserved: list[Reserved]) -> None:
        """Give back reservations that did not become offers, with their Deadlines entries."""
        for r in reserved:
            await self._release(r.ranked.candidate.doctor_id, r.offer_id)
            await self.deadlines.cancel(f"{OFFER}{r.offer_id}")

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
                raise DispatchError(ErrorCode.OFFER_WITHDRAWN, "this call is no longer on offer")
            if not await offer_repo.decide(session, offer.id, OfferOutcome.ACCEPTED, now):
                raise DispatchError(ErrorCode.OFFER_WITHDRAWN, "this call is no longer on offer")
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
                raise DispatchError(ErrorCode.OFFER_WITHDRAWN, "another doctor took this call") from None
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

    async def expire(self, offer_id: uuid.UUID, reservation: bytes = b"") -> None:
        """The deadline of an offer passed (a Deadlines claim): expire it, next candidate.

        The entry also outlives a process that died halfway: with no offer row, the doctor's
        reservation (``reservation``: the entry's payload) is given back; with a decided offer, the
        doctor's state is made to follow it (freed, or busy with the call they accepted)."""
        now = self.now()
        pending = False
        async with self.sessions.begin() as session:
            offer = await offer_repo.get_offer(session, offer_id, for_update=True)
            if offer is None:
                pass
            elif offer.outcome != OfferOutcome.PENDING.value:
                decided_call = await call_repo.get_call(session, offer.call_id)
            else:
                pending = True
                await offer_repo.decide(session, offer.id, OfferOutcome.EXPIRED, now)
                back = await self._back_to_searching(session, offer.call_id, "offer expired")
        if offer is None:
            await self._free_unmade(offer_id, reservation)
            return
        if not pending:
            await self._settle_doctor(offer, decided_call)
            return
        await self._release(offer.doctor_id, offer.id)
        await publish_doctor(
            self.broker,
            offer.doctor_id,
            "offer.expired",
            {"offer": str(offer.id), "call": str(offer.call_id)},
        )
        await self._after_back(back, "offer expired")

    async def _free_unmade(self, offer_id: uuid.UUID, reservation: bytes) -> None:
        """A doctor reserved for an offer that was never committed: free them, under the call's row
        lock, unless the offer was committed meanwhile (then the entry stays, for its deadline)."""
        try:
            call_id, doctor_id = reservation.decode().split("/")
            call_uuid = uuid.UUID(call_id)
        except ValueError:
            return  # no reservation recorded (an entry re-armed for a committed offer)
        async with self.sessions.begin() as session:
            await call_repo.get_call(session, call_uuid, for_update=True)
            offer = await offer_repo.get_offer(session, offer_id)
            if offer is None:
                await self._release(doctor_id, offer_id)
        if offer is not None:  # committed while we waited for the lock: expire it at its deadline
            await self.deadlines.schedule(f"{OFFER}{offer_id}", epoch_ms(offer.deadline_at) or 0, reservation)

    async def _settle_doctor(self, offer: Offer, call: Call | None) -> None:
        """A decided offer whose process died before it freed or booked the doctor: a doctor still
        reserved for it becomes busy with the call if they hold it, else available."""
        holds = (
            offer.outcome == OfferOutcome.ACCEPTED.value
            and call is not None
            and call.doctor_id == offer.doctor_id
            and CallStatus(call.status) in DOCTOR_ON_CALL
        )
        if holds:
            await self.states.compare_and_set(
                str(offer.doctor_id),
                expected=DoctorStatus.OFFERED,
                expected_ref=str(offer.id),
                new=DoctorStatus.BUSY,
                ref=str(offer.call_id),
            )
        else:
            await self._release(offer.doctor_id, offer.id)

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
                ErrorCode.OFFER_EXPIRED,
                "the offer's deadline has passed",
                deadline=epoch_ms(offer.deadline_at),
            )
        if outcome is OfferOutcome.WITHDRAWN:
            raise DispatchError(ErrorCode.OFFER_WITHDRAWN, "this call is no longer on offer")
        if outcome is OfferOutcome.DECLINED:
            raise DispatchError(ErrorCode.OFFER_DECLINED, "you declined this offer")
        if outcome is OfferOutcome.ACCEPTED:
            raise DispatchError(ErrorCode.OFFER_ACCEPTED, "this offer was already accepted")

    async def _back_to_searching(
        self, session: Any, call_id: uuid.UUID, reason: str
    ) -> tuple[Call, CallStatus] | None:
        """In the offer's transaction: an offered call whose last pending offer just closed goes back
        to searching (its next step armed before the commit). Returns the change to publish, or None."""
        call = await call_repo.get_call(session, call_id, for_update=True)
        if call is None or call.status != CallStatus.OFFERED.value:
            return None
        if await offer_repo.pending_offers(session, call_id):
            return None  # a broadcast still has open offers
        await self._arm_step(call_id)
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
            raise DispatchError(ErrorCode.FORBIDDEN, "only dispatchers assign calls")
        async with self.sessions() as session:
            profile = await doctor_repo.get_profile(session, doctor_id)
        if profile is None or not profile.verified:
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "doctor_id: not a verified doctor", field="doctor_id"
            )
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
                ErrorCode.DOCTOR_UNAVAILABLE,
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
                        ErrorCode.INVALID_TRANSITION, "this doctor already has the call", status=call.status
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
            await self._free_doctor(old_doctor, call, CALL_UNASSIGNED, "reassigned by a dispatcher")
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
            await self._free_doctor(doctor, moved.call, CALL_UNASSIGNED, reason or "dropped")
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
                ErrorCode.INVALID_INPUT, "status: en_route, arrived, in_progress or completed", field="status"
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
            await self.expire(uuid.UUID(key[len(OFFER) :]), claim.payload)
        await self.deadlines.complete(claim)

    async def run(self) -> None:
        """Claim due entries and handle them, until cancelled. A failed handler leaves its entry
        claimed; it comes back when the lease ends (at-least-once). Every :data:`REARM_INTERVAL_S` it
        also re-arms open calls that have no entry (:meth:`resume`): a process that died between
        committing a change and arming the next step (a new call, a drop) leaves no call behind."""
        last_rearm = asyncio.get_running_loop().time()
        while True:
            if asyncio.get_running_loop().time() - last_rearm >= REARM_INTERVAL_S:
                last_rearm = asyncio.get_running_loop().time()
                try:
                    await self.resume()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("re-arming open calls failed")
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
        """Make sure every call in dispatch has a step or offer entry, arming only the missing ones (an
        existing entry may be claimed by a live process right now). Needed at start-up (a memory engine
        loses its entries with the process) and periodically (a process that died between a commit and
        arming the next step). Planned calls whose time has not come are re-armed for their time by
        the step itself."""
        async with self.sessions() as session:
            active = await call_repo.calls_in_status(
                session, [CallStatus.CREATED.value, CallStatus.SEARCHING.value, CallStatus.OFFERED.value]
            )
            offers = await offer_repo.all_pending(session)
        for offer in offers:
            if await self.deadlines.get(f"{OFFER}{offer.id}") is None:
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
