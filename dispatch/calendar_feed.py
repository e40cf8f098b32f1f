"""A doctor's secret calendar feed: an ICS document (RFC 5545, written with the ``icalendar`` package) of
their booked visits at ``/v1/calendar/<token>.ics``, for a phone's or a desktop's calendar to subscribe.

The token is the only credential: 32 bytes from the operating system's random source, URL-safe base64
(43 characters); only its SHA-256 is stored (``models/calendar_feeds.py``), as for share links. A doctor
has at most one: making a new one replaces the stored hash, so the old address answers 404 at once.

The feed: one ``VEVENT`` per booking whose visit starts at most ``KEEP_PAST`` ago (cancelled ones
included, ``STATUS:CANCELLED``, so a subscribed calendar removes them), ``UID`` the call's id,
``DTSTART``/``DTEND`` in UTC, ``SUMMARY`` the service's name, ``LOCATION`` the address, ``DESCRIPTION``
the patient's first name, ``SEQUENCE`` how many times the visit was moved or cancelled
(``visit_bookings.sequence``, RFC 5545 3.8.7.4), ``LAST-MODIFIED`` its last change. Nothing else of the
patient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable, Sequence

import icalendar
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.agenda import Visit, visits_where
from models.calendar_feeds import CalendarFeed
from models.types import utcnow
from models.visit_bookings import VisitBooking

TOKEN_BYTES = 32
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{43}$"
_TOKEN = re.compile(TOKEN_PATTERN)
KEEP_PAST = dt.timedelta(days=30)
"""How far back the feed reaches (visits, cancelled or not, that started longer ago are left out)."""
PRODID = "-//TOT Dispatch//Planned visits//EN"


def token_hash(token: str) -> str:
    """The stored form of a token: SHA-256, 64 lowercase hex characters."""
    return hashlib.sha256(token.encode()).hexdigest()


def ics(visits: Sequence[Visit], stamp: dt.datetime, name: str) -> bytes:
    """The ICS document of ``visits`` (``stamp`` the ``DTSTAMP``, aware; ``name`` the calendar's name)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    for visit in visits:
        b = visit.booking
        event = icalendar.Event()
        event.add("uid", str(visit.call.id))
        event.add("dtstamp", stamp.astimezone(dt.UTC))
        event.add("dtstart", b.starts_at.astimezone(dt.UTC))
        event.add("dtend", b.ends_at.astimezone(dt.UTC))
        event.add("summary", visit.service.name)
        event.add("location", visit.call.address)
        if visit.patient_first_name:
            event.add("description", visit.patient_first_name)
        event.add("status", "CANCELLED" if visit.cancelled else "CONFIRMED")
        event.add("sequence", b.sequence or 0)
        event.add("last-modified", b.updated_at.astimezone(dt.UTC))
        calendar.add_component(event)
    return bytes(calendar.to_ical())


class CalendarFeeds:
    """Doctors' feed tokens and feeds in the database of record; ``now`` the app's clock."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, now: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.sessions = sessions
        self.now = now

    async def rotate(self, doctor_id: uuid.UUID) -> str:
        """A new token for the doctor's feed (the first, or one replacing the old, which stops working
        at the commit). Returns the token: shown once, never stored."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        async with self.sessions.begin() as session:
            feed = await session.get(CalendarFeed, doctor_id)
            if feed is None:
                session.add(
                    CalendarFeed(doctor_id=doctor_id, token_hash=token_hash(token), created_at=self.now())
                )
            else:
                feed.token_hash = token_hash(token)
                feed.created_at = self.now()
        return token

    async def feed(self, token: str) -> bytes | None:
        """The ICS document of the token's doctor, or None for a token that is not (or no longer) one."""
        if not _TOKEN.match(token):
            return None
        now = self.now()
        async with self.sessions() as session:
            doctor_id = await session.scalar(
                sa.select(CalendarFeed.doctor_id).where(CalendarFeed.token_hash == token_hash(token))
            )
            if doctor_id is None:
                return None
            visits = await visits_where(
                session, VisitBooking.doctor_id == doctor_id, VisitBooking.starts_at >= now - KEEP_PAST
            )
        return ics(visits, now, "TOT Dispatch")
