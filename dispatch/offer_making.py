"""Making offers, one search ring at a time: rank the candidates, reserve doctors, commit the offers.

A doctor is reserved with the DoctorStates compare-and-set (``available -> offered``, ``ref`` = a new
offer id), which admits one winner among all processes. Each reservation has its offer's Deadlines
entry *before* it exists, and the offers' entries carry their deadlines before the commit that makes
them (dispatch/offer_loop.py says why). Whatever is not offered is given back.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from dispatch.booked_time import conflicts_of
from dispatch.booked_time import window as booked_window
from dispatch.calls import SYSTEM
from dispatch.dispatch_context import DispatchContext, offer_key, reservation
from dispatch.errors import DispatchError
from dispatch.events import call_summary, epoch_ms
from dispatch.lifecycle import Actor
from dispatch.publisher import Event, OutboxTransaction, offer_subject
from dispatch.ranking import Candidate, Ranked, rank
from dispatch.reservations import release_all
from geo.location_index import MAX_K
from models.calls import Call
from models.enums import CallStatus, DoctorStatus, OfferOutcome
from models.offers import Offer
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo
from models.repositories import zones as zone_repo
from realtime.channels import doctor_channel
from realtime.event_types import EventType

Round = tuple[dt.datetime | None, int]
"""A call's search round as a step saw it: when it started (None: never), how many offers it made."""


@dataclass(frozen=True, slots=True)
class Reserved:
    """A doctor reserved for an offer (DoctorStates ``offered`` with ``ref`` = the offer id), found
    within ``radius_m`` metres."""

    ranked: Ranked
    offer_id: uuid.UUID
    radius_m: float


async def candidates(
    ctx: DispatchContext, call: Call, radius: float, excluded: set[uuid.UUID], wanted: int
) -> list[Ranked]:
    """Available doctors within ``radius`` metres of the call, not in ``excluded``, serving its zone,
    verified, best first (at least ``wanted`` looked for), without those it would make miss a booked
    visit (``dispatch/booked_time.py``; not for an emergency)."""
    k = min(MAX_K, max(10, wanted * 3) + len(excluded))
    found = await ctx.locations.nearest_available(
        call.lat,
        call.lon,
        radius_m=radius,
        k=k,
        specialty=call.specialty,
        max_age_ms=ctx.settings.candidate_max_age_s * 1000,
    )
    nearby = {uuid.UUID(n.doctor_id): n for n in found if uuid.UUID(n.doctor_id) not in excluded}
    if not nearby:
        return []
    async with ctx.sessions() as session:
        if call.zone_id is not None:
            serving = await zone_repo.doctors_serving(session, list(nearby), call.zone_id)
            nearby = {d: n for d, n in nearby.items() if d in serving}
        now = ctx.now()
        span = booked_window(call, now)
        holding: set[uuid.UUID]
        if span is None:
            ratings, holding = await doctor_repo.ratings(session, list(nearby)), set()
        else:
            ratings, holding = await doctor_repo.ratings_and_booked(session, list(nearby), *span)
        settings = ctx.settings
        # Bookings are read only for doctors who hold one in the span: usually nobody, no statement.
        etas = {d: settings.ranking.eta_s(n.distance_m) for d, n in nearby.items() if d in holding}
        estimate = settings.visit_estimate_s
        booked = await conflicts_of(session, call, now, etas, settings.ranking, estimate)
        nearby = {d: n for d, n in nearby.items() if d not in booked}
    # Doctors without a verified profile are never candidates (the index should not have them).
    # Their idle times (fairness) are read in one batch: one awaited read per candidate was up to
    # k round trips to Redis on every search (loadtests/bench_dispatch.py).
    states = await ctx.states.get_many([str(d) for d in nearby if d in ratings])
    found_candidates = [
        Candidate(str(d), near.distance_m, ratings[d], states[str(d)].since_ms)
        for d, near in nearby.items()
        if d in ratings
    ]
    return rank(found_candidates, ctx.settings.ranking, ctx.now_ms())


async def reserve(
    ctx: DispatchContext, call_id: uuid.UUID, ranked: list[Ranked], wanted: int, radius: float
) -> list[Reserved]:
    """Reserve up to ``wanted`` doctors (``available -> offered``, ref = a new offer id). Each
    reservation has its offer's Deadlines entry *before* it exists: should this process die before
    the offer is committed, the entry frees the doctor (the expiry), who would otherwise stay
    ``offered`` for good."""
    reserved: list[Reserved] = []
    due_ms = ctx.now_ms() + int((ctx.settings.offer_timeout_s + ctx.settings.step_retry_s) * 1000)
    for choice in ranked:
        offer_id = uuid.uuid4()
        doctor_id = choice.candidate.doctor_id
        await ctx.deadlines.schedule(offer_key(offer_id), due_ms, reservation(call_id, doctor_id))
        result = await ctx.states.compare_and_set(
            doctor_id, expected=DoctorStatus.AVAILABLE, new=DoctorStatus.OFFERED, ref=str(offer_id)
        )
        if not result.ok:
            await ctx.deadlines.cancel(offer_key(offer_id))
            continue
        reserved.append(Reserved(choice, offer_id, radius))
        if len(reserved) == wanted:
            break
    return reserved


async def give_back(ctx: DispatchContext, reserved: list[Reserved]) -> None:
    """Give back reservations that did not become offers, with their Deadlines entries."""
    await release_all(ctx, [(r.ranked.candidate.doctor_id, r.offer_id) for r in reserved])


async def make_offers(
    ctx: DispatchContext,
    call_id: uuid.UUID,
    reserved: list[Reserved],
    round_seen: Round,
    *,
    first: bool = False,
    extra: dict[str, Any] | None = None,
) -> bool | None:
    """Make the offers to the reserved doctors. True when made; False when the call is no longer
    searching; None when the round changed since ``round_seen`` (its start, its offer count: a
    concurrent run of the step made an offer, so ours could ask a doctor twice or one too many).
    Whatever is not offered is released. ``first``: the call is expected ``created`` (the fast path
    of a new call); it starts its search in the same transaction, and a call found ``searching``
    counts as a changed round (None). ``extra``: more fields of each ``offer.created`` payload (a
    booked visit's ``planned``, ``booking``, ``scheduled_at``). Raises the ``DispatchError`` of a
    refused move other than a conflict, after giving the reservations back.

    The offers' deadline entries are scheduled before the commit: once the call is ``offered``,
    nothing else would expire an offer whose process died right after the commit (a concurrent
    run of the step that saw the call change ends, completing the step's entry)."""
    abandoned = False
    stale = False
    deadline_ms = 0
    expected = CallStatus.CREATED if first else CallStatus.SEARCHING
    started: tuple[CallStatus, int] | None = None
    made: OutboxTransaction | None = None
    try:
        async with ctx.publisher.transaction() as tx:
            made = tx
            session = tx.session
            call = await call_repo.get_call(session, call_id, for_update=True)
            if call is None or call.status != expected.value:
                abandoned = True
                stale = first and call is not None and call.status == CallStatus.SEARCHING.value
            elif (not first and await search_round(session, call_id) != round_seen) or not await _still_held(
                ctx, reserved
            ):
                abandoned = stale = True
            else:
                if first:
                    # Flushed with the offers below: one UPDATE of the call for both changes.
                    before = await ctx.calls.apply(
                        session,
                        call,
                        CallStatus.SEARCHING,
                        Actor.SYSTEM,
                        SYSTEM,
                        reason="search started",
                        flush=False,
                    )
                    started = (before, call.version)
                now = ctx.now()  # under the lock: the doctor gets the whole time to answer
                deadline = now + dt.timedelta(seconds=ctx.settings.offer_timeout_s)
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
                previous = await ctx.calls.apply(
                    session, call, CallStatus.OFFERED, Actor.SYSTEM, SYSTEM, data=data
                )
                for r in reserved:
                    payload = reservation(call_id, r.ranked.candidate.doctor_id)
                    await ctx.deadlines.schedule(offer_key(r.offer_id), deadline_ms, payload)
                _stage_offers(tx, call, reserved, deadline_ms, started, extra or {})
                tx.status(call, previous.value, actor=Actor.SYSTEM.value)
    except DispatchError as exc:
        await give_back(ctx, reserved)
        if exc.code in ("conflict", "invalid_transition"):
            return False  # another step or a person changed the call first
        raise
    except BaseException:
        if made is None or not made.committed:  # a cancellation while publishing committed offers keeps them
            await give_back(ctx, reserved)
        raise
    if abandoned or call is None:
        await give_back(ctx, reserved)
        return None if stale else False
    return True


def _stage_offers(
    tx: OutboxTransaction,
    call: Call,
    reserved: list[Reserved],
    deadline_ms: int,
    started: tuple[CallStatus, int] | None,
    extra: dict[str, Any],
) -> None:
    """In the offers' transaction: ``offer.created`` to each doctor (an emergency's K offers leave as
    one batch with the rest: one Redis round trip, not K), then the start of the search when this
    transaction made it (``as_of``: the call object holds its later ``offered``)."""
    summary = call_summary(call)
    tx.stage_all(
        [
            Event(
                doctor_channel(r.ranked.candidate.doctor_id),
                EventType.OFFER_CREATED,
                {
                    "offer": str(r.offer_id),
                    "call": summary,
                    "distance_m": round(r.ranked.candidate.distance_m, 1),
                    "eta_s": round(r.ranked.eta_s),
                    "deadline": deadline_ms,
                    **extra,
                },
                subject=offer_subject(r.offer_id),
                stale_ms=deadline_ms,
            )
            for r in reserved
        ]
    )
    if started is not None:
        before, version = started
        tx.status(
            call,
            before.value,
            actor=Actor.SYSTEM.value,
            reason="search started",
            as_of=(CallStatus.SEARCHING.value, version),
        )


async def search_round(session: Any, call_id: uuid.UUID) -> Round:
    """The call's current search round: when it started, how many offers it made so far."""
    since = await call_repo.search_round_started(session, call_id)
    return since, await offer_repo.offer_count(session, call_id, since=since)


async def _still_held(ctx: DispatchContext, reserved: list[Reserved]) -> bool:
    """Under the call's row lock: every reservation is still ours (a step slower than its
    reservation's entry finds its doctors freed by the expiry, which takes the same lock)."""
    for r in reserved:
        state = await ctx.states.get(r.ranked.candidate.doctor_id)
        if state.status is not DoctorStatus.OFFERED or state.ref != str(r.offer_id):
            return False
    return True
