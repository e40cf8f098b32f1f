"""Reminders of booked visits: at T - 24 h and T - 2 h the patient is reminded, through the outbox and
the notification rules (``booking.reminder`` on ``call:<id>``, kind ``reminder``).

A reminder's due time is read from the database (no Deadlines entry to lose or re-arm): every
``interval_s`` each process scans the active bookings whose next reminder is due
(:meth:`BookingReminders.send_due`). ``visit_bookings.reminders_sent`` (0-2) counts the reminders
staged or skipped; the scan raises it with a conditional UPDATE (``WHERE reminders_sent = <read>``) in
the transaction that stages the event, so each reminder is staged once however many processes scan,
and the notifications' UNIQUE (event, person, channel) sends it once.

- **Booked or moved**: :func:`skipped` sets the count from the time left, so a visit booked (or moved
  to) 5 hours ahead gets no "tomorrow" reminder, only the 2-hour one. A reschedule re-sets it from the
  new time, which moves both reminders.
- **Cancelled or released**: the booking is no longer active; nothing more is staged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.events import epoch_ms
from dispatch.publisher import EventPublisher, OutboxTransaction
from models.visit_bookings import VisitBooking
from realtime.channels import call_channel
from realtime.event_types import EventType

log = logging.getLogger("tot.dispatch")

REMINDERS: tuple[dt.timedelta, ...] = (dt.timedelta(hours=24), dt.timedelta(hours=2))
"""How long before the visit each reminder is due, in order (issue 20)."""
INTERVAL_S = 30.0
"""How often a process scans for due reminders (a reminder is at most this late)."""


def due_count(start: dt.datetime, now: dt.datetime) -> int:
    """How many of :data:`REMINDERS` are due at ``now`` for a visit starting at ``start`` (0-2)."""
    return sum(1 for before in REMINDERS if now >= start - before)


def skipped(start: dt.datetime, now: dt.datetime) -> int:
    """The ``reminders_sent`` of a visit booked or moved at ``now``: the reminders already due are
    skipped (a visit booked 5 hours ahead needs no "tomorrow" reminder)."""
    return due_count(start, now)


def hours_before(count: int) -> int:
    """The reminder numbered ``count`` (1-2) in whole hours before the visit (24 or 2)."""
    return int(REMINDERS[count - 1].total_seconds() // 3600)


class BookingReminders:
    """The reminder scan (module docstring): ``sessions`` the database, ``publisher`` the outbox's one
    door, ``now`` the clock (aware UTC)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.sessions = sessions
        self.publisher = publisher
        self.now = now

    async def send_due(self) -> int:
        """Stage every reminder due now (at most one per booking per scan: the latest due; an earlier
        one missed while no process ran is not sent late). Returns how many were staged."""
        now = self.now()
        horizon = now + REMINDERS[0]
        async with self.sessions() as session:
            rows = await session.execute(
                sa.select(VisitBooking.id, VisitBooking.starts_at, VisitBooking.reminders_sent).where(
                    VisitBooking.active.is_(True),
                    VisitBooking.starts_at > now,
                    VisitBooking.starts_at <= horizon,
                    VisitBooking.reminders_sent < len(REMINDERS),
                )
            )
            due = [
                (r.id, r.starts_at, r.reminders_sent)
                for r in rows
                if due_count(r.starts_at, now) > r.reminders_sent
            ]
        staged = 0
        for booking_id, start, sent in due:
            async with self.publisher.transaction() as tx:
                if await _stage_one(tx, booking_id, sent, due_count(start, now)):
                    staged += 1
        return staged

    async def run(self, interval_s: float = INTERVAL_S) -> None:
        """Scan every ``interval_s`` seconds for the process's life (errors logged, the scan goes on)."""
        while True:
            try:
                await self.send_due()
            except Exception:
                log.exception("could not stage booking reminders")
            await asyncio.sleep(interval_s)


async def _stage_one(tx: OutboxTransaction, booking_id: uuid.UUID, sent: int, count: int) -> bool:
    """In one transaction: raise the booking's count from ``sent`` to ``count`` if nobody did first,
    and stage its reminder. Returns whether it was staged."""
    session = tx.session
    result = await session.execute(
        sa.update(VisitBooking)
        .where(
            VisitBooking.id == booking_id,
            VisitBooking.active.is_(True),
            VisitBooking.reminders_sent == sent,
        )
        .values(reminders_sent=count)
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return False
    booking = await session.get(VisitBooking, booking_id)
    if booking is None:
        return False
    payload = {
        "booking": str(booking.id),
        "call": str(booking.call_id),
        "doctor": str(booking.doctor_id),
        "scheduled_at": epoch_ms(booking.starts_at),
        "hours_before": hours_before(count),
    }
    tx.stage(call_channel(booking.call_id), EventType.BOOKING_REMINDER, payload)
    return True
