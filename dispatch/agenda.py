"""Reading booked visits: a doctor's agenda (their bookings by the local days of their time zone) and a
patient's own visits (upcoming or past). Writes are ``dispatch/booking.py``'s; the ICS feed built from
the same rows is ``dispatch/calendar_feed.py``.

Who reads what (identity only from the token, :class:`~dispatch.calls.Who`): a doctor their own agenda;
an admin or a dispatcher any doctor's; a clinic admin the doctors of their clinic (else 403); a patient
only their own visits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import Who
from dispatch.clinic_access import check_manages_doctor
from dispatch.errors import not_found
from dispatch.lifecycle import FINAL
from models.calls import Call
from models.clinic_catalogue import ClinicService
from models.enums import CallStatus, Role
from models.repositories import doctors as doctor_repo
from models.repositories import schedules as schedule_repo
from models.types import utcnow
from models.users import User
from models.visit_bookings import VisitBooking

MAX_DAYS = 31
"""The most local days one agenda request covers."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One booked visit as the agenda, the patient's list and the feed show it: the booking, its call,
    its service and the patient's first name (the only part of the patient's name anyone sees here)."""

    booking: VisitBooking
    call: Call
    service: ClinicService
    patient_first_name: str

    @property
    def cancelled(self) -> bool:
        """Whether the visit was cancelled (its booking released, or its call cancelled)."""
        return not self.booking.active or self.call.status == CallStatus.CANCELLED.value


@dataclass(frozen=True, slots=True)
class Agenda:
    """A doctor's visits from local date ``first`` for ``days`` days in their IANA ``time_zone``."""

    doctor_id: uuid.UUID
    time_zone: str
    first: dt.date
    days: int
    visits: list[Visit]


def first_name(full_name: str) -> str:
    """The first word of a full name ("Anna Petrova" -> "Anna"); empty for an empty name."""
    parts = full_name.split()
    return parts[0] if parts else ""


def _visits_query() -> sa.Select[VisitBooking, Call, ClinicService, str]:
    return (
        sa.select(VisitBooking, Call, ClinicService, User.full_name)
        .join(Call, Call.id == VisitBooking.call_id)
        .join(ClinicService, ClinicService.id == VisitBooking.service_id)
        .join(User, User.id == Call.patient_id)
    )


async def visits_where(session: AsyncSession, *conditions: sa.ColumnElement[bool]) -> list[Visit]:
    """The visits matching ``conditions`` (on ``VisitBooking``/``Call``), in start order."""
    rows = await session.execute(_visits_query().where(*conditions).order_by(VisitBooking.starts_at))
    return [Visit(b, c, s, first_name(name)) for b, c, s, name in rows.all()]


class AgendaService:
    """Doctors' agendas and patients' visits from the database of record; ``now`` the app's clock."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, now: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.sessions = sessions
        self.now = now

    async def _check_reads(self, session: AsyncSession, who: Who, doctor_id: uuid.UUID) -> None:
        """Raises 404 (no such doctor) or 403 unless ``who`` may read the doctor's agenda."""
        if who.role is Role.DISPATCHER:
            if await doctor_repo.get_profile(session, doctor_id) is None:
                raise not_found("doctor")
            return
        await check_manages_doctor(session, who, doctor_id)

    async def agenda(self, who: Who, doctor_id: uuid.UUID, first: dt.date | None, days: int) -> Agenda:
        """The doctor's visits (cancelled ones included, marked) starting on local dates ``first`` to
        ``first + days - 1`` in the doctor's schedule's time zone (UTC without a schedule); ``first``
        defaults to today there. Raises 404, 403."""
        async with self.sessions() as session:
            await self._check_reads(session, who, doctor_id)
            schedule = await schedule_repo.get_schedule(session, doctor_id)
            zone_name = "UTC" if schedule is None else schedule.time_zone
            zone = ZoneInfo(zone_name)
            day = first or self.now().astimezone(zone).date()
            start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
            end = dt.datetime.combine(day + dt.timedelta(days=days), dt.time(), zone).astimezone(dt.UTC)
            visits = await visits_where(
                session,
                VisitBooking.doctor_id == doctor_id,
                VisitBooking.starts_at >= start,
                VisitBooking.starts_at < end,
            )
        return Agenda(doctor_id, zone_name, day, days, visits)

    async def of_patient(self, who: Who, *, upcoming: bool, limit: int) -> list[Visit]:
        """The signed-in patient's own visits. ``upcoming``: not cancelled or completed and not yet
        ended, soonest first; otherwise the rest (over, cancelled, completed), latest first."""
        now = self.now()
        final = [s.value for s in FINAL]
        is_upcoming = sa.and_(
            VisitBooking.active.is_(True), Call.status.not_in(final), VisitBooking.ends_at > now
        )
        async with self.sessions() as session:
            rows = await session.execute(
                _visits_query()
                .where(Call.patient_id == who.user_id, is_upcoming if upcoming else sa.not_(is_upcoming))
                .order_by(VisitBooking.starts_at if upcoming else VisitBooking.starts_at.desc())
                .limit(limit)
            )
            return [Visit(b, c, s, first_name(name)) for b, c, s, name in rows.all()]
