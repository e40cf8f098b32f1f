"""Reservation helpers shared by the offer loop's parts: give doctors back, withdraw offers, free an
assigned doctor, send an offered call back to searching (with its next step armed before the commit).

Events are staged in the transaction of the change (``stage_*``, on an ``OutboxTransaction``); the
live engine follows after the commit (``release_withdrawn``, ``free_busy``), wrapped by the callers in
``EventPublisher.follow_up`` so that an engine failure never turns a committed change into an error.

Every helper is safe to repeat: a doctor's state changes only by compare-and-set on the exact
reservation (``offered`` with ``ref`` = the offer id, ``busy`` with ``ref`` = the call id), so a helper
running after the state moved on does nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from dispatch.calls import SYSTEM
from dispatch.dispatch_context import DispatchContext, offer_key, step_key
from dispatch.lifecycle import Actor
from dispatch.publisher import OutboxTransaction, offer_subject
from models.calls import Call
from models.enums import CallStatus, DoctorStatus
from models.offers import Offer
from models.repositories import calls as call_repo
from models.repositories import offers as offer_repo
from realtime.event_types import EventType


async def release(ctx: DispatchContext, doctor_id: object, offer_id: uuid.UUID) -> None:
    """Give a doctor reserved for ``offer_id`` back to the pool (no-op if the state moved on)."""
    await ctx.states.compare_and_set(
        str(doctor_id),
        expected=DoctorStatus.OFFERED,
        expected_ref=str(offer_id),
        new=DoctorStatus.AVAILABLE,
    )


async def release_all(ctx: DispatchContext, reserved: Iterable[tuple[str, uuid.UUID]]) -> None:
    """Give back reservations ``(doctor id, offer id)`` that did not become offers, with their
    Deadlines entries."""
    for doctor_id, offer_id in reserved:
        await release(ctx, doctor_id, offer_id)
        await ctx.deadlines.cancel(offer_key(offer_id))


def stage_withdrawn(tx: OutboxTransaction, offers: list[Offer], call: Call, reason: str) -> None:
    """In the transaction that withdrew ``offers`` (decided in the database): tell their doctors
    (``offer.withdrawn`` on each ``doctor:<id>``)."""
    for offer in offers:
        tx.doctor(
            offer.doctor_id,
            EventType.OFFER_WITHDRAWN,
            {"offer": str(offer.id), "call": str(call.id), "reason": reason},
            subject=offer_subject(offer.id),
        )


async def release_withdrawn(ctx: DispatchContext, offers: list[Offer]) -> None:
    """After the commit that withdrew ``offers``: free their doctors and drop their deadline entries.
    Raises engine errors (callers wrap it in ``EventPublisher.follow_up``)."""
    for offer in offers:
        await release(ctx, offer.doctor_id, offer.id)
        await ctx.deadlines.cancel(offer_key(offer.id))


def stage_freed(
    tx: OutboxTransaction, doctor_id: uuid.UUID, call: Call, event: EventType, reason: str
) -> None:
    """In the transaction that took ``call`` from its doctor: tell them (``event`` on ``doctor:<id>``)."""
    tx.doctor(doctor_id, event, {"call": str(call.id), "reason": reason})


async def free_busy(ctx: DispatchContext, doctor_id: uuid.UUID, call_id: uuid.UUID) -> None:
    """After the commit: a doctor busy with ``call_id`` becomes available (no-op if the state moved
    on). Raises engine errors (callers wrap it in ``EventPublisher.follow_up``; the repair sweep frees
    a doctor left busy for a final call)."""
    await ctx.states.compare_and_set(
        str(doctor_id), expected=DoctorStatus.BUSY, expected_ref=str(call_id), new=DoctorStatus.AVAILABLE
    )


async def arm_step(ctx: DispatchContext, call_id: uuid.UUID) -> int:
    """Schedule the call's safety-net step ``step_retry_s`` from now; returns its due time (epoch ms).
    Whatever commits a change that needs a next step arms it *before* the commit: a process that dies
    between the commit and the trigger would otherwise leave the call with nobody to move it on (a
    spare step finds nothing to do and ends)."""
    retry_ms = ctx.now_ms() + int(ctx.settings.step_retry_s * 1000)
    await ctx.deadlines.schedule(step_key(call_id), retry_ms)
    return retry_ms


async def back_to_searching(
    ctx: DispatchContext, tx: OutboxTransaction, call_id: uuid.UUID, reason: str
) -> Call | None:
    """In the offer's transaction: an offered call whose last pending offer just closed goes back
    to searching (its next step armed before the commit, its ``call.status`` staged). Returns the
    call, or None (the call is not offered, or a broadcast still has open offers)."""
    session = tx.session
    call = await call_repo.get_call(session, call_id, for_update=True)
    if call is None or call.status != CallStatus.OFFERED.value:
        return None
    if await offer_repo.pending_offers(session, call_id):
        return None  # a broadcast still has open offers
    await arm_step(ctx, call_id)
    previous = await ctx.calls.apply(session, call, CallStatus.SEARCHING, Actor.SYSTEM, SYSTEM, reason=reason)
    tx.status(call, previous.value, actor=Actor.SYSTEM.value, reason=reason)
    return call
