"""Setting and reading a doctor's schedule for planned visits (the rules: ``dispatch/schedule_rules.py``;
who may: ``dispatch/clinic_access.py``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import Who
from dispatch.clinic_access import check_manages_doctor
from dispatch.errors import DispatchError, not_found
from dispatch.schedule_rules import Schedule, ScheduleError, check, from_rows, to_rows
from models.doctors import DoctorProfile
from models.repositories import catalogue as catalogue_repo
from models.repositories import schedules as schedule_repo
from models.types import utcnow
from realtime.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class DoctorPlan:
    """A doctor's schedule and the ids of the services they offer."""

    doctor_id: uuid.UUID
    schedule: Schedule
    service_ids: list[uuid.UUID]
    updated_at: dt.datetime


def invalid(field: str, message: str) -> DispatchError:
    """422 ``invalid_input`` naming ``field``."""
    return DispatchError(ErrorCode.INVALID_INPUT, f"{field}: {message}", field=field)


class DoctorSchedules:
    """Doctors' schedules in the database of record."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], *, now: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.sessions = sessions
        self.now = now

    async def put(
        self, who: Who, doctor_id: uuid.UUID, schedule: Schedule, service_ids: Sequence[uuid.UUID]
    ) -> DoctorPlan:
        """Replace the doctor's schedule and services whole. Raises 403, 404, and 422 naming the field:
        an unverified doctor (``doctor_id``), a schedule that cannot be (``time_zone``,
        ``weekly.N.end``...), an unknown service, one of another clinic, inactive, or of a specialty
        the doctor does not have (``service_ids.N``). Bookings already made stay."""
        try:
            check(schedule)
        except ScheduleError as exc:
            raise invalid(exc.field, exc.message) from None
        async with self.sessions.begin() as session:
            profile = await check_manages_doctor(session, who, doctor_id)
            if not profile.verified:
                raise invalid("doctor_id", "the doctor is not verified yet")
            await self._check_services(session, profile, service_ids)
            weekly, exceptions = to_rows(schedule)
            row = await schedule_repo.put_schedule(
                session,
                doctor_id,
                time_zone=schedule.time_zone,
                weekly=weekly,
                exceptions=exceptions,
                min_notice_min=schedule.min_notice_min,
                daily_limit=schedule.daily_limit,
                service_ids=service_ids,
                at=self.now(),
            )
            return DoctorPlan(doctor_id, schedule, sorted(set(service_ids)), row.updated_at)

    @staticmethod
    async def _check_services(
        session: AsyncSession, profile: DoctorProfile, service_ids: Sequence[uuid.UUID]
    ) -> None:
        found = await catalogue_repo.services_by_ids(session, service_ids)
        for i, service_id in enumerate(service_ids):
            service = found.get(service_id)
            field = f"service_ids.{i}"
            if service is None:
                raise invalid(field, "no such service")
            if service.clinic_id != profile.clinic_id:
                raise invalid(field, "a service of another clinic than the doctor's")
            if not service.active:
                raise invalid(field, "the service is no longer offered")
            if service.specialty not in profile.specialties:
                raise invalid(
                    field, f"needs the specialty {service.specialty}, which the doctor does not have"
                )

    async def get(self, who: Who, doctor_id: uuid.UUID) -> DoctorPlan:
        """The doctor's schedule. Raises 403, 404 (no doctor, or no schedule yet)."""
        async with self.sessions() as session:
            await check_manages_doctor(session, who, doctor_id)
            row = await schedule_repo.get_schedule(session, doctor_id)
            if row is None:
                raise not_found("schedule")
            services = await schedule_repo.offered_services(session, doctor_id)
        schedule = from_rows(row.time_zone, row.weekly, row.exceptions, row.min_notice_min, row.daily_limit)
        return DoctorPlan(doctor_id, schedule, services, row.updated_at)
