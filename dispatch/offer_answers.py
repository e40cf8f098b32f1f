"""The answers to offers: a doctor accepts or declines, a deadline passes, a dead process is settled.

An offer is decided once (``pending ->`` one outcome, a conditional UPDATE), and an accept after the
deadline is refused (``offer_expired``). The ``offer:<id>`` Deadlines entry outlives a process that died
halfway: it frees a doctor reserved for an offer never committed, and brings a doctor's state in line
with an offer decided by a process that died before it freed or booked the doctor.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from dispatch.calls import Moved, Who
from dispatch.deadlines import Claim
from dispatch.dispatch_context import DispatchContext, offer_key
from dispatch.errors import DispatchError, not_found
from dispatch.events import call_summary, epoch_ms
from dispatch.lifecycle import DOCTOR_ON_CALL, Actor
from dispatch.offer_step import OfferStep
from dispatch.planned_dispatch import release_displaced
from dispatch.publisher import offer_subject
from dispatch.reservations import back_to_searching, release, release_withdrawn, stage_withdrawn
from models.calls import Call
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Role
from models.offers import Offer
from models.repositories import calls as call_repo
from models.repositories import offers as offer_repo
from realtime.errors import ErrorCode
from realtime.event_types import EventType


class OfferAnswers:
    """Accept, decline, expire; ``step`` runs the call's next step when it goes back to searching."""

    def __init__(self, ctx: DispatchContext, step: OfferStep) -> None:
        self.ctx = ctx
        self.step = step

    async def accept(self, who: Who, offer_id: uuid.UUID) -> Moved:
        """The offered doctor takes the call. Raises ``DispatchError``: 404 (no such offer, or not
        yours), 409 ``offer_expired`` (too late), ``offer_withdrawn`` (another doctor took it, or the
        call was cancelled or assigned by hand), ``offer_declined``."""
        ctx = self.ctx
        now = ctx.now()
        withdrawn: list[Offer] = []
        async with ctx.publisher.transaction() as tx:
            session = tx.session
            offer = await _own_offer(session, who, offer_id)
            if offer.outcome == OfferOutcome.ACCEPTED.value:
                call = await call_repo.get_call(session, offer.call_id)
                assert call is not None
                return Moved(call, CallStatus(call.status))  # a retried accept: already yours
            _check_pending(offer, now)
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
                previous = await ctx.calls.apply(
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
            name = await ctx.calls.doctor_name(session, call)
            # An emergency ignores bookings: the booked visits it makes its doctor miss are released.
            await release_displaced(ctx, tx, call, who.user_id, offer.eta_s or 0.0)
            stage_withdrawn(tx, withdrawn, call, "another doctor accepted")
            tx.doctor(
                who.user_id,
                EventType.CALL_ASSIGNED,
                {"call": call_summary(call), "offer": str(offer.id)},
                subject=offer_subject(offer.id),
            )
            tx.status(call, previous.value, actor=Actor.DOCTOR.value, doctor_name=name, eta_s=offer.eta_s)
        # Committed: the live engine follows. An engine failure here does not undo the accept; the
        # offer's entry (kept when cancelling it fails) settles the doctor, the repair sweep the rest.
        await ctx.publisher.follow_up("book the accepting doctor", self._book(who, call, offer))
        await ctx.publisher.follow_up("free withdrawn doctors", release_withdrawn(ctx, withdrawn))
        return Moved(call, previous, name)

    async def _book(self, who: Who, call: Call, offer: Offer) -> None:
        await self.ctx.states.compare_and_set(
            str(who.user_id),
            expected=frozenset(DoctorStatus) - {DoctorStatus.BUSY},
            new=DoctorStatus.BUSY,
            ref=str(call.id),
        )
        await self.ctx.deadlines.cancel(offer_key(offer.id))

    async def decline(self, who: Who, offer_id: uuid.UUID, reason: str | None = None) -> None:
        """The offered doctor says no; the call goes to the next candidate. Raises ``DispatchError``
        as :meth:`accept` does (404, 409 ``offer_expired`` / ``offer_withdrawn`` / ``offer_accepted``)."""
        ctx = self.ctx
        now = ctx.now()
        async with ctx.publisher.transaction() as tx:
            offer = await _own_offer(tx.session, who, offer_id)
            if offer.outcome == OfferOutcome.DECLINED.value:
                return  # a retried decline
            _check_pending(offer, now)
            await offer_repo.decide(tx.session, offer.id, OfferOutcome.DECLINED, now)
            back = await back_to_searching(ctx, tx, offer.call_id, "declined")
        await ctx.publisher.follow_up("free a declining doctor", self._free(who.user_id, offer.id))
        if back is not None:
            await self.step.trigger(back.id)

    async def _free(self, doctor_id: object, offer_id: uuid.UUID) -> None:
        await release(self.ctx, doctor_id, offer_id)
        await self.ctx.deadlines.cancel(offer_key(offer_id))

    async def on_deadline(self, ident: str, claim: Claim) -> None:
        """The ``offer`` entry of the offer ``ident`` came due (a Deadlines claim): :meth:`expire`."""
        await self.expire(uuid.UUID(ident), claim.payload)

    async def expire(self, offer_id: uuid.UUID, reservation: bytes = b"") -> None:
        """The deadline of an offer passed (a Deadlines claim): expire it, next candidate.

        The entry also outlives a process that died halfway: with no offer row, the doctor's
        reservation (``reservation``: the entry's payload) is given back; with a decided offer, the
        doctor's state is made to follow it (freed, or busy with the call they accepted)."""
        ctx = self.ctx
        now = ctx.now()
        pending = False
        async with ctx.publisher.transaction() as tx:
            offer = await offer_repo.get_offer(tx.session, offer_id, for_update=True)
            if offer is None:
                pass
            elif offer.outcome != OfferOutcome.PENDING.value:
                decided_call = await call_repo.get_call(tx.session, offer.call_id)
            else:
                pending = True
                await offer_repo.decide(tx.session, offer.id, OfferOutcome.EXPIRED, now)
                tx.doctor(
                    offer.doctor_id,
                    EventType.OFFER_EXPIRED,
                    {"offer": str(offer.id), "call": str(offer.call_id)},
                    subject=offer_subject(offer.id),
                )
                back = await back_to_searching(ctx, tx, offer.call_id, "offer expired")
        if offer is None:
            await self._free_unmade(offer_id, reservation)
            return
        if not pending:
            await self._settle_doctor(offer, decided_call)
            return
        # A deadline handler: an engine error here leaves the entry claimed, and it comes back after
        # its lease to settle the doctor (the offer is decided by then): raising is the retry.
        await release(ctx, offer.doctor_id, offer.id)
        if back is not None:
            await self.step.trigger(back.id)

    async def _free_unmade(self, offer_id: uuid.UUID, reservation: bytes) -> None:
        """A doctor reserved for an offer that was never committed: free them, under the call's row
        lock, unless the offer was committed meanwhile (then the entry stays, for its deadline)."""
        try:
            call_id, doctor_id = reservation.decode().split("/")
            call_uuid = uuid.UUID(call_id)
        except ValueError:
            return  # no reservation recorded (an entry re-armed for a committed offer)
        async with self.ctx.sessions.begin() as session:
            await call_repo.get_call(session, call_uuid, for_update=True)
            offer = await offer_repo.get_offer(session, offer_id)
            if offer is None:
                await release(self.ctx, doctor_id, offer_id)
        if offer is not None:  # committed while we waited for the lock: expire it at its deadline
            await self.ctx.deadlines.schedule(
                offer_key(offer_id), epoch_ms(offer.deadline_at) or 0, reservation
            )

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
            await self.ctx.states.compare_and_set(
                str(offer.doctor_id),
                expected=DoctorStatus.OFFERED,
                expected_ref=str(offer.id),
                new=DoctorStatus.BUSY,
                ref=str(offer.call_id),
            )
        else:
            await release(self.ctx, offer.doctor_id, offer.id)


async def _own_offer(session: Any, who: Who, offer_id: uuid.UUID) -> Offer:
    """The offer, locked, if ``who`` is its doctor. Raises 404 ``not_found`` otherwise."""
    offer = await offer_repo.get_offer(session, offer_id, for_update=True)
    if offer is None or who.role is not Role.DOCTOR or offer.doctor_id != who.user_id:
        raise not_found("offer")
    return offer


def _check_pending(offer: Offer, now: dt.datetime) -> None:
    """Raises 409 ``offer_expired`` / ``offer_withdrawn`` / ``offer_declined`` / ``offer_accepted``
    unless the offer still waits for an answer and its deadline has not passed."""
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
