"""People stepping in: a dispatcher assigns or relaunches, a doctor drops a call, anyone allowed
cancels, the assigned doctor reports the visit's progress.

These override the loop: a manual assignment withdraws open offers and books the doctor by hand
(``RESERVABLE_BY_HAND``); a drop or relaunch sends the call back to searching and runs its next step;
a cancellation withdraws offers and frees the assigned doctor.
"""

from __future__ import annotations

import uuid
from typing import Any

from dispatch.calls import Moved, Who
from dispatch.dispatch_context import DispatchContext, step_key
from dispatch.errors import DispatchError, not_found
from dispatch.events import CALL_UNASSIGNED, call_summary
from dispatch.lifecycle import DOCTOR_ON_CALL, Actor
from dispatch.offer_step import OfferStep
from dispatch.planned_dispatch import release_displaced, stage_released
from dispatch.publisher import OutboxTransaction
from dispatch.reservations import free_busy, release_withdrawn, stage_freed, stage_withdrawn
from geo.distance import haversine_m
from models.calls import Call
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Urgency
from models.offers import Offer
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo
from models.repositories import visit_bookings as visit_repo
from realtime.errors import ErrorCode
from realtime.event_types import EventType

RESERVABLE_BY_HAND = frozenset({DoctorStatus.AVAILABLE, DoctorStatus.PAUSED, DoctorStatus.OFFLINE})
"""A dispatcher may assign a doctor who is free, on a break or off the app (they phoned them), but not one
holding an offer or another call."""


class Interventions:
    """Assign, drop, relaunch, cancel, visit; ``step`` runs a call's next step after a drop or relaunch."""

    def __init__(self, ctx: DispatchContext, step: OfferStep) -> None:
        self.ctx = ctx
        self.step = step

    async def assign(
        self, who: Who, call_id: uuid.UUID, doctor_id: uuid.UUID, reason: str | None = None
    ) -> Moved:
        """A dispatcher assigns (or reassigns) the call to a doctor by hand, overriding the loop.
        Raises 404, 409 ``invalid_transition``, 409 ``doctor_unavailable``, 422 for a doctor who is not a
        verified doctor."""
        if not who.staff:
            raise DispatchError(ErrorCode.FORBIDDEN, "only dispatchers assign calls")
        async with self.ctx.sessions() as session:
            profile = await doctor_repo.get_profile(session, doctor_id)
        if profile is None or not profile.verified:
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "doctor_id: not a verified doctor", field="doctor_id"
            )
        before = await self.ctx.states.get(str(doctor_id))
        reserved = None
        if before.status in RESERVABLE_BY_HAND:
            reserved = await self.ctx.states.compare_and_set(
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
        now = self.ctx.now()
        withdrawn: list[Offer] = []
        made: OutboxTransaction | None = None
        try:
            async with self.ctx.publisher.transaction() as tx:
                made, session = tx, tx.session
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

                previous = await self.ctx.calls.apply(
                    session,
                    call,
                    CallStatus.ASSIGNED,
                    Actor.STAFF,
                    who,
                    reason=reason,
                    data={"doctor": str(doctor_id), "by_hand": True},
                    change=assign,
                )
                name = await self.ctx.calls.doctor_name(session, call)
                # An emergency ignores bookings: the booked visits it makes its doctor miss are released.
                if call.urgency == Urgency.EMERGENCY.value:
                    await release_displaced(self.ctx, tx, call, doctor_id, await self._eta_s(doctor_id, call))
                stage_withdrawn(tx, withdrawn, call, "assigned by a dispatcher")
                if old_doctor is not None:
                    stage_freed(tx, old_doctor, call, CALL_UNASSIGNED, "reassigned by a dispatcher")
                tx.doctor(doctor_id, EventType.CALL_ASSIGNED, {"call": call_summary(call), "by_hand": True})
                tx.status(call, previous.value, actor=Actor.STAFF.value, reason=reason, doctor_name=name)
        except BaseException:
            if made is None or not made.committed:  # a committed assignment keeps its doctor
                await self.ctx.states.compare_and_set(
                    str(doctor_id), expected=DoctorStatus.BUSY, expected_ref=str(call_id), new=before.status
                )
            raise
        # Committed: the live engine follows, never turning the assignment into an error.
        follow_up = self.ctx.publisher.follow_up
        await follow_up("drop an assigned call's step", self.ctx.deadlines.cancel(step_key(call_id)))
        await follow_up("free withdrawn doctors", release_withdrawn(self.ctx, withdrawn))
        if old_doctor is not None:
            await follow_up("free a reassigned doctor", free_busy(self.ctx, old_doctor, call_id))
        return Moved(call, previous, name)

    async def _eta_s(self, doctor_id: uuid.UUID, call: Call) -> float:
        """The ranking's ETA (seconds) of the doctor's last known position to the call; 0 without one."""
        position = await self.ctx.locations.get(str(doctor_id))
        if position is None:
            return 0.0
        return self.ctx.settings.ranking.eta_s(haversine_m(position.lat, position.lon, call.lat, call.lon))

    async def drop(self, who: Who, call_id: uuid.UUID, reason: str | None = None) -> Moved:
        """The assigned doctor (or a dispatcher) sends the call back to searching."""
        holder: dict[str, uuid.UUID | None] = {}

        def unassign(c: Call) -> None:
            holder["doctor"] = c.doctor_id
            c.doctor_id = None
            c.assigned_at = None

        def unassigned(tx: OutboxTransaction, call: Call) -> None:
            doctor = holder.get("doctor")
            if doctor is not None:
                stage_freed(tx, doctor, call, CALL_UNASSIGNED, reason or "dropped")

        moved = await self.ctx.calls.move(
            who, call_id, CallStatus.SEARCHING, reason=reason or "dropped", change=unassign, also=unassigned
        )
        doctor = holder.get("doctor")
        if doctor is not None:
            await self.ctx.publisher.follow_up("free a dropping doctor", free_busy(self.ctx, doctor, call_id))
        await self.step.trigger(call_id)
        return moved

    async def relaunch(self, who: Who, call_id: uuid.UUID) -> Moved:
        """A dispatcher restarts the search of an escalated call (a fresh round: earlier refusals are
        asked again)."""
        moved = await self.ctx.calls.move(who, call_id, CallStatus.SEARCHING, reason="search re-launched")
        await self.step.trigger(call_id)
        return moved

    async def cancel(self, who: Who, call_id: uuid.UUID, reason: str) -> Moved:
        """Cancel with a reason: open offers are withdrawn, an assigned doctor is freed and told, a
        planned visit's booking released (in the same transaction)."""
        now = self.ctx.now()
        withdrawn: list[Offer] = []
        async with self.ctx.publisher.transaction() as tx:
            session = tx.session
            call = await call_repo.get_call(session, call_id, for_update=True)
            if call is None:
                raise not_found("call")
            actor = self.ctx.calls.actor_for(who, call)
            doctor = call.doctor_id if CallStatus(call.status) in DOCTOR_ON_CALL else None

            def cancelled(c: Call) -> None:
                c.cancel_reason = reason

            previous = await self.ctx.calls.apply(
                session, call, CallStatus.CANCELLED, actor, who, reason=reason, change=cancelled
            )
            # A planned visit's booked time is free again with the cancellation's commit.
            booking = await visit_repo.booking_of_call(session, call_id)
            if await visit_repo.release_of_call(session, call_id, now, "call_cancelled") and booking:
                stage_released(tx, booking, "call_cancelled")
            for other in await offer_repo.pending_offers(session, call_id):
                await offer_repo.decide(session, other.id, OfferOutcome.WITHDRAWN, now)
                withdrawn.append(other)
            stage_withdrawn(tx, withdrawn, call, "call cancelled")
            if doctor is not None:
                stage_freed(tx, doctor, call, EventType.CALL_CANCELLED, reason)
            tx.status(call, previous.value, actor=actor.value, reason=reason)
        follow_up = self.ctx.publisher.follow_up
        await follow_up("drop a cancelled call's step", self.ctx.deadlines.cancel(step_key(call_id)))
        await follow_up("free withdrawn doctors", release_withdrawn(self.ctx, withdrawn))
        if doctor is not None:
            await follow_up("free a cancelled call's doctor", free_busy(self.ctx, doctor, call_id))
        return Moved(call, previous)

    async def visit(self, who: Who, call_id: uuid.UUID, to: CallStatus, price_final: Any = None) -> Moved:
        """The assigned doctor reports en route, arrived, in progress, completed (with the final price);
        completing frees the doctor."""
        if to not in (CallStatus.EN_ROUTE, CallStatus.ARRIVED, CallStatus.IN_PROGRESS, CallStatus.COMPLETED):
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "status: en_route, arrived, in_progress or completed", field="status"
            )
        now = self.ctx.now()

        def progress(c: Call) -> None:
            if to is CallStatus.COMPLETED:
                c.completed_at = now
                if price_final is not None:
                    c.price_final = price_final

        moved = await self.ctx.calls.move(who, call_id, to, change=progress)
        if to is CallStatus.COMPLETED and moved.call.doctor_id is not None:
            # Committed: a failure to free the doctor is the repair sweep's (a doctor busy for a
            # final call), never an error for the completed visit.
            await self.ctx.publisher.follow_up(
                "free a doctor after completion", free_busy(self.ctx, moved.call.doctor_id, call_id)
            )
        return moved
