"""Dispatching booked visits (issue 20): the booked doctor first, bookings released when they cannot be
kept.

- **The booked doctor first.** At ``scheduled_at - planned_lead_s`` a call with an active booking
  (``models/visit_bookings.py``) is offered to the booked doctor alone (:func:`offer_to_booked`; the
  ``offer.created`` payload carries ``planned: true``, ``booking`` and ``scheduled_at``). If that
  doctor is not available in the live engine (offline, paused, busy, or taken by another offer), the
  booking is released at once and the ordinary search follows in the same step; if they decline or
  let the offer expire, the call goes back to searching and the search releases it
  (:func:`release_before_search`). A release is ``booking.released`` on ``call:<id>`` and ``dispatch``
  with its reason.
- **Booked time kept clear** (``dispatch/booked_time.py``, used by every search's candidates): a
  non-emergency call is not offered to a doctor who could not be back for one of their booked visits.
- **Emergencies ignore bookings.** When a doctor accepts an emergency (or a dispatcher assigns one to
  them), each of their booked visits
  that can no longer be kept is released (reason ``displaced``, :func:`release_displaced`); its call,
  still waiting for its time, is dispatched at its lead time by the ordinary search, and its patient
  is told (the notification rules read ``booking.released``).
"""

from __future__ import annotations

import uuid

from dispatch.booked_time import LOOKAHEAD, missed, visit_start
from dispatch.dispatch_context import DispatchContext
from dispatch.events import epoch_ms
from dispatch.offer_making import make_offers, reserve
from dispatch.publisher import OutboxTransaction
from dispatch.ranking import Candidate, Ranked
from geo.distance import haversine_m
from models.calls import Call
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Urgency
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo
from models.repositories import visit_bookings as visit_repo
from models.visit_bookings import VisitBooking
from realtime.channels import call_channel
from realtime.event_types import EventType

DOCTOR_UNAVAILABLE = "doctor_unavailable"
DECLINED = "declined"
EXPIRED = "expired"
DISPLACED = "displaced"
"""The reasons of ``booking.released``."""


def stage_released(tx: OutboxTransaction, booking: VisitBooking, reason: str) -> None:
    """In the releasing transaction: ``booking.released`` on the call's channel and ``dispatch``."""
    payload = {
        "booking": str(booking.id),
        "call": str(booking.call_id),
        "doctor": str(booking.doctor_id),
        "scheduled_at": epoch_ms(booking.starts_at),
        "reason": reason,
    }
    tx.stage(call_channel(booking.call_id), EventType.BOOKING_RELEASED, payload)
    tx.dispatch(EventType.BOOKING_RELEASED, payload)


async def release_booking(
    ctx: DispatchContext, call_id: uuid.UUID, reason: str, *, while_status: CallStatus | None = None
) -> bool:
    """Release the call's active booking, if any, under the call's row lock, with its event; with
    ``while_status``, only while the call still has that status (a concurrent run of the step that
    offered it meanwhile keeps the booking). Returns whether one was released."""
    async with ctx.publisher.transaction() as tx:
        call = await call_repo.get_call(tx.session, call_id, for_update=True)
        if call is None or (while_status is not None and call.status != while_status.value):
            return False
        booking = await visit_repo.booking_of_call(tx.session, call_id)
        if booking is None or not booking.active:
            return False
        await visit_repo.release_of_call(tx.session, call_id, ctx.now(), reason)
        stage_released(tx, booking, reason)
    return True


async def offer_to_booked(ctx: DispatchContext, call: Call) -> bool:
    """A ``created`` call at its lead time: offer it to its booked doctor alone. True when done
    (offered, or the call moved on meanwhile); False when the ordinary path follows: the call has no
    active booking, or its doctor was not available (the booking is then released)."""
    if call.urgency != Urgency.PLANNED.value:
        return False  # no read on the path of a new urgent call (its first offer's latency)
    async with ctx.sessions() as session:
        booking = await visit_repo.booking_of_call(session, call.id)
        ratings = None if booking is None else await doctor_repo.ratings(session, [booking.doctor_id])
    if booking is None or not booking.active or ratings is None:
        return False
    doctor = str(booking.doctor_id)
    state = await ctx.states.get(doctor)
    reserved = []
    if state.status is DoctorStatus.AVAILABLE:
        position = await ctx.locations.get(doctor)
        distance = 0.0 if position is None else haversine_m(position.lat, position.lon, call.lat, call.lon)
        candidate = Candidate(doctor, distance, ratings.get(booking.doctor_id), state.since_ms)
        ranked = Ranked(candidate, ctx.settings.ranking.eta_s(distance))
        reserved = await reserve(ctx, call.id, [ranked], 1, distance)
    if not reserved:
        await release_booking(ctx, call.id, DOCTOR_UNAVAILABLE, while_status=CallStatus.CREATED)
        return False
    planned = {"planned": True, "booking": str(booking.id), "scheduled_at": epoch_ms(booking.starts_at)}
    return await make_offers(ctx, call.id, reserved, (None, 0), first=True, extra=planned) is not None


async def release_before_search(ctx: DispatchContext, call: Call) -> None:
    """A planned call about to be searched for: its booking (if still active) is released, the reason
    read from the booked doctor's last offer (declined, expired, else not available)."""
    if call.urgency != Urgency.PLANNED.value:
        return
    async with ctx.sessions() as session:
        booking = await visit_repo.booking_of_call(session, call.id)
        if booking is None or not booking.active:
            return
        offers = await offer_repo.offers_of_call(session, call.id)
    offers = [o for o in offers if o.doctor_id == booking.doctor_id]
    outcome = offers[-1].outcome if offers else None
    reason = {OfferOutcome.DECLINED.value: DECLINED, OfferOutcome.EXPIRED.value: EXPIRED}.get(
        outcome or "", DOCTOR_UNAVAILABLE
    )
    await release_booking(ctx, call.id, reason)


async def release_displaced(
    ctx: DispatchContext, tx: OutboxTransaction, call: Call, doctor_id: uuid.UUID, eta_s: float
) -> list[VisitBooking]:
    """In the transaction where ``doctor_id`` takes the emergency ``call`` (``eta_s`` away): release
    each of their booked visits the emergency makes them miss (:func:`missed`; reason ``displaced``,
    ``booking.released`` staged, so the patient is told). Their calls keep their lead-time step, which
    then runs the ordinary search. Returns the released bookings."""
    if call.urgency != Urgency.EMERGENCY.value:
        return []
    now = ctx.now()
    settings = ctx.settings
    found = await visit_repo.active_of_doctors(tx.session, [doctor_id], now - LOOKAHEAD, now + LOOKAHEAD)
    start = visit_start(call, now, eta_s)
    released: list[VisitBooking] = []
    remaining = list(found[doctor_id])
    estimate = settings.visit_estimate_s
    while (booking := missed(call, start, remaining, settings.ranking, estimate)) is not None:
        remaining.remove(booking)
        await visit_repo.release_of_call(tx.session, booking.call_id, now, DISPLACED)
        stage_released(tx, booking, DISPLACED)
        released.append(booking)
    return released
