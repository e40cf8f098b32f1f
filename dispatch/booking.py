"""Booking planned visits: a planned call and its doctor's booked time, made, moved and read together.

- **Book** (:meth:`BookingService.book`): the call (``dispatch/calls.py``, with its ``Idempotency-Key``)
  and its :class:`~models.visit_bookings.VisitBooking` are one transaction. Inside it the doctor's
  schedule row is locked (``SELECT ... FOR UPDATE``: one doctor's bookings check one at a time on
  PostgreSQL; SQLite's one connection serialises every transaction anyway), the doctor's other visits
  are read, and the slot rules (``dispatch/slots.py``) decide: taken (409 ``slot_taken``), the day full
  (409 ``daily_limit_reached``), or booked. PostgreSQL's exclusion constraint refuses an overlap that
  got past the check all the same (409 ``slot_taken``).
- **Move** (:meth:`BookingService.reschedule`): the same checks for the new start, in one transaction
  that leaves the booking as it was when refused.
- **Release**: cancelling the call (``Interventions.cancel``) releases its booking in the cancel's own
  transaction.

What a chosen start must be (422 ``slot.start``) and what the doctor must be (422 ``slot.doctor_id``:
verified, offering the service, with a schedule, serving the place's zone) are checked before the
transaction, with the same rules that list the slots (``dispatch/slot_search.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.booking_holds import as_visit, retravel
from dispatch.booking_reminders import skipped
from dispatch.calls import CallService, NewCall, Who
from dispatch.errors import DispatchError, forbidden, not_found
from dispatch.events import epoch_ms
from dispatch.lifecycle import Actor
from dispatch.publisher import OutboxTransaction
from dispatch.slot_search import Bookable, bookable, slot_problem
from dispatch.slots import Clash, Fit, Rules, fit
from models.calls import Call
from models.enums import CallStatus, Urgency
from models.repositories import calls as call_repo
from models.repositories import schedules as schedule_repo
from models.repositories import visit_bookings as visit_repo
from models.types import utcnow
from models.visit_bookings import VisitBooking
from realtime.channels import call_channel
from realtime.errors import MESSAGES, ErrorCode
from realtime.event_types import EventType

NEIGHBOURS = dt.timedelta(days=1)
"""How far around a visit the doctor's other visits are read (travel and the local day lie within)."""


@dataclass(frozen=True, slots=True)
class NewBooking:
    """A planned visit to book: the service, the chosen slot (doctor and start, aware), the place
    (``lat``/``lon`` WGS84 degrees) and the call's other fields."""

    service_id: uuid.UUID
    doctor_id: uuid.UUID
    start: dt.datetime
    address: str
    lat: float
    lon: float
    symptoms: str | None = None
    patient_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Booked:
    """A call and its booking; ``created`` false for an ``Idempotency-Key`` seen before."""

    call: Call
    booking: VisitBooking
    created: bool = True


def booking_payload(booking: VisitBooking) -> dict[str, str | int | None]:
    """The fields of a booking's events (docs/protocol.md): ids, and the visit's start in epoch ms."""
    return {
        "booking": str(booking.id),
        "call": str(booking.call_id),
        "doctor": str(booking.doctor_id),
        "scheduled_at": epoch_ms(booking.starts_at),
    }


def clash_error(clash: Clash) -> DispatchError:
    """The 409 of a :class:`~dispatch.slots.Clash`, in English (``message``) and Russian
    (``message_ru``): the patient reads it."""
    code = ErrorCode.DAILY_LIMIT_REACHED if clash is Clash.FULL else ErrorCode.SLOT_TAKEN
    english, russian = MESSAGES[code]
    return DispatchError(code, english, field="slot.start", message_ru=russian)


class BookingService:
    """Planned visits' bookings in the database of record."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        calls: CallService,
        rules: Rules,
        *,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.calls = calls
        self.rules = rules
        self.now = now

    async def book(self, who: Who, new: NewBooking, idempotency_key: str | None) -> Booked:
        """Book ``new`` as a planned call. With an ``idempotency_key`` seen before from ``who``, the
        first call and its booking (``created`` false). Raises ``DispatchError``: 403, 422 (naming
        ``service_id``, ``slot.doctor_id``, ``slot.start`` or the call's fields), 409 ``slot_taken`` /
        ``daily_limit_reached``."""
        if idempotency_key is not None and (earlier := await self._earlier(who, idempotency_key)) is not None:
            return earlier
        target = await bookable(
            self.sessions, self.calls.zones, new.service_id, new.doctor_id, new.lat, new.lon
        )
        slot_problem(target, new.start, self.now(), self.rules)
        service = target.service
        call_new = NewCall(
            address=new.address,
            lat=new.lat,
            lon=new.lon,
            urgency=Urgency.PLANNED,
            specialty=service.specialty,
            symptoms=new.symptoms,
            scheduled_at=new.start,
            patient_id=new.patient_id,
            price_estimate=service.price,
            currency=service.currency,
        )
        made: list[VisitBooking] = []

        async def attach(tx: OutboxTransaction, call: Call) -> None:
            booking = await self._hold(tx.session, target, call.id, new.start, new.lat, new.lon)
            made.append(booking)
            tx.stage(call_channel(call.id), EventType.BOOKING_BOOKED, booking_payload(booking))

        try:
            call, created = await self.calls.create(who, call_new, idempotency_key, attach=attach)
        except (DispatchError, IntegrityError) as error:
            if isinstance(error, IntegrityError) and not visit_repo.is_overlap(error):
                raise
            # A concurrent retry with the same key that lost the race for the slot: the first call.
            if (
                idempotency_key is not None
                and (earlier := await self._earlier(who, idempotency_key)) is not None
            ):
                return earlier
            if isinstance(error, IntegrityError):
                raise clash_error(Clash.TAKEN) from None
            raise
        if not created:
            earlier = await self._earlier(who, idempotency_key or "")
            if earlier is None:
                raise DispatchError(
                    ErrorCode.CONFLICT, "this Idempotency-Key named a call that is not a booking"
                )
            return earlier
        return Booked(call, made[0], True)

    async def _earlier(self, who: Who, key: str) -> Booked | None:
        async with self.sessions() as session:
            call = await call_repo.find_by_idempotency_key(session, who.user_id, key)
            if call is None:
                return None
            booking = await visit_repo.booking_of_call(session, call.id)
        if booking is None:
            raise DispatchError(ErrorCode.CONFLICT, "this Idempotency-Key named a call that is not a booking")
        return Booked(call, booking, False)

    async def _hold(
        self,
        session: AsyncSession,
        target: Bookable,
        call_id: uuid.UUID,
        start: dt.datetime,
        lat: float,
        lon: float,
        moving: VisitBooking | None = None,
    ) -> VisitBooking:
        """Inside the transaction: lock the doctor's schedule, check ``start`` against their other
        visits, and hold the time (a new booking, or ``moving`` moved). Raises the :class:`Clash`'s 409."""
        doctor_id = target.doctor_id
        locked = await schedule_repo.get_schedule(session, doctor_id, for_update=True)
        if locked is None:
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "slot.doctor_id: takes no planned visits", field="slot.doctor_id"
            )
        service = target.times
        end = start + service.duration
        first, last = start, end
        if moving is not None:  # the day it leaves is recomputed too
            first, last = min(start, moving.starts_at), max(end, moving.ends_at)
        around = await visit_repo.active_of_doctors(
            session, [doctor_id], first - NEIGHBOURS, last + NEIGHBOURS
        )
        others = [b for b in around[doctor_id] if moving is None or b.id != moving.id]
        result = fit(target.schedule, service, start, lat, lon, [as_visit(b) for b in others], self.rules)
        if isinstance(result, Clash):
            raise clash_error(result)
        now = self.now()
        booking = moving or VisitBooking(
            id=uuid.uuid4(), call_id=call_id, doctor_id=doctor_id, created_at=now
        )
        old_day = None if moving is None else moving.local_day
        if moving is not None:
            # Out of the database's overlap check while the day's holds are recomputed around it.
            moving.active = False
            moving.sequence = (moving.sequence or 0) + 1  # the calendar feed's SEQUENCE
            await session.flush()
        self._place(booking, target, result, lat, lon, now)
        for day in {result.local_day, old_day} - {None}:
            day_bookings = [b for b in others if b.local_day == day]
            if day == result.local_day:
                day_bookings.append(booking)
            retravel(day_bookings, self.rules, now)
        await session.flush()  # the neighbours' holds first, then this one: never two overlapping at once
        booking.active = True
        booking.released_at = None
        booking.release_reason = None
        if moving is None:
            session.add(booking)
        await session.flush()
        return booking

    @staticmethod
    def _place(
        booking: VisitBooking, target: Bookable, slot: Fit, lat: float, lon: float, now: dt.datetime
    ) -> None:
        service = target.times
        booking.service_id = target.service.id
        booking.starts_at = slot.start
        booking.ends_at = slot.end
        booking.travel_s = slot.travel_in_s
        booking.held_from = slot.start - service.before - dt.timedelta(seconds=slot.travel_in_s)
        booking.held_until = slot.end + service.after
        booking.local_day = slot.local_day
        booking.lat = lat
        booking.lon = lon
        booking.reminders_sent = skipped(slot.start, now)  # booked or moved: reminders from the new time
        booking.updated_at = now

    async def get(self, who: Who, booking_id: uuid.UUID) -> Booked:
        """The booking and its call, for the call's patient, its doctor and staff (404 for anyone else)."""
        async with self.sessions() as session:
            booking = await visit_repo.get_booking(session, booking_id)
            call = None if booking is None else await call_repo.get_call(session, booking.call_id)
        if booking is None or call is None:
            raise not_found("booking")
        self.calls.actor_for(who, call)
        if who.role.value == "doctor" and booking.doctor_id != who.user_id:
            raise not_found("booking")
        return Booked(call, booking, False)

    async def reschedule(self, who: Who, booking_id: uuid.UUID, start: dt.datetime) -> Booked:
        """Move the booking (same doctor, service and place) to ``start``. Raises 404, 403 (only the
        patient and staff move a visit), 409 ``invalid_transition`` (the call is no longer waiting for
        its time, or the booking was released), 422 ``slot.start``, 409 ``slot_taken`` /
        ``daily_limit_reached`` (the booking stays as it was)."""
        current = await self.get(who, booking_id)
        actor = self.calls.actor_for(who, current.call)
        if actor not in (Actor.PATIENT, Actor.STAFF):
            raise forbidden("only the patient and staff move a planned visit")
        booking = current.booking
        target = await bookable(
            self.sessions, self.calls.zones, booking.service_id, booking.doctor_id, booking.lat, booking.lon
        )
        slot_problem(target, start, self.now(), self.rules)
        try:
            async with self.calls.publisher.transaction() as tx:
                session = tx.session
                call = await call_repo.get_call(session, booking.call_id, for_update=True)
                row = await visit_repo.get_booking(session, booking_id)
                if call is None or row is None:
                    raise not_found("booking")
                if call.status != CallStatus.CREATED.value or not row.active:
                    raise DispatchError(
                        ErrorCode.INVALID_TRANSITION,
                        "only a booked visit still waiting for its time can move",
                        status=call.status,
                        allowed=[],
                    )
                previous = row.starts_at
                await self._hold(session, target, call.id, start, row.lat, row.lon, moving=row)
                call.scheduled_at = start
                call.updated_at = self.now()
                await session.flush()
                moved = {**booking_payload(row), "previous": epoch_ms(previous)}
                tx.stage(call_channel(call.id), EventType.BOOKING_RESCHEDULED, moved)
        except IntegrityError as error:
            if not visit_repo.is_overlap(error):
                raise
            raise clash_error(Clash.TAKEN) from None
        return Booked(call, row, False)
