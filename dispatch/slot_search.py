"""Finding slots: which doctors can take a service at a place, and when (``GET /v1/slots``).

The doctors: verified, active, offering the service, with a schedule, and serving the place's zone
(``doctor_zones``; a doctor with none serves everywhere; with zones loaded a place in none is 422
``outside_service_area``). The times: ``dispatch/slots.py`` over each doctor's booked visits, for the
dates asked in the place's own time zone (``geo/time_zones.py``). The same checks refuse a chosen slot
when it is booked (``dispatch/booking.py``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.booking_holds import as_visit
from dispatch.errors import DispatchError
from dispatch.schedule_rules import Schedule, from_rows
from dispatch.slots import Rules, Service, open_slots, problem
from dispatch.zones import ZoneIndex
from geo.time_zones import zone_name_at
from models.clinic_catalogue import ClinicService
from models.repositories import catalogue as catalogue_repo
from models.repositories import doctors as doctor_repo
from models.repositories import schedules as schedule_repo
from models.repositories import visit_bookings as visit_repo
from models.repositories import zones as zone_repo
from models.schedules import DoctorSchedule
from realtime.errors import ErrorCode

MAX_DAYS = 31
"""The most dates one slot search covers."""


@dataclass(frozen=True, slots=True)
class Bookable:
    """A doctor who can take ``service`` at the place, with their schedule."""

    doctor_id: uuid.UUID
    service: ClinicService
    schedule: Schedule

    @property
    def times(self) -> Service:
        """The service's duration and buffers."""
        s = self.service
        return Service(
            dt.timedelta(minutes=s.duration_min),
            dt.timedelta(minutes=s.buffer_before_min),
            dt.timedelta(minutes=s.buffer_after_min),
        )


@dataclass(frozen=True, slots=True)
class SlotOffer:
    """One free slot: the doctor, the visit's start and end (aware UTC), the travel in seconds from the
    doctor's previous visit that day."""

    doctor_id: uuid.UUID
    doctor_name: str
    start: dt.datetime
    end: dt.datetime
    travel_in_s: int


@dataclass(frozen=True, slots=True)
class SlotList:
    """The slots found, in time order, and the place's time zone (IANA name) they are shown in."""

    service: ClinicService
    time_zone: str
    slots: list[SlotOffer]


def invalid(field: str, message: str) -> DispatchError:
    """422 ``invalid_input`` naming ``field``."""
    return DispatchError(ErrorCode.INVALID_INPUT, f"{field}: {message}", field=field)


def schedule_of(row: DoctorSchedule) -> Schedule:
    """The stored schedule as rules."""
    return from_rows(row.time_zone, row.weekly, row.exceptions, row.min_notice_min, row.daily_limit)


async def _service(session: AsyncSession, service_id: uuid.UUID) -> ClinicService:
    service = await catalogue_repo.get_service(session, service_id)
    if service is None:
        raise invalid("service_id", "no such service")
    if not service.active:
        raise invalid("service_id", "the service is no longer offered")
    return service


def _zone_id(zones: ZoneIndex, lat: float, lon: float) -> uuid.UUID | None:
    zone = zones.zone_at(lat, lon)
    if zone is None and not zones.empty:
        raise DispatchError(
            ErrorCode.OUTSIDE_SERVICE_AREA, "this address is outside every service zone", field="lat"
        )
    return None if zone is None else zone.id


async def bookable(
    sessions: async_sessionmaker[AsyncSession],
    zones: ZoneIndex,
    service_id: uuid.UUID,
    doctor_id: uuid.UUID,
    lat: float,
    lon: float,
) -> Bookable:
    """The doctor as a :class:`Bookable` for the service at the place. Raises 422 naming
    ``service_id`` (unknown, no longer offered) or ``slot.doctor_id`` (no such doctor, unverified, does
    not offer the service, has no schedule, does not serve the place), 422 ``outside_service_area``."""
    zone_id = _zone_id(zones, lat, lon)
    async with sessions() as session:
        service = await _service(session, service_id)
        profile = await doctor_repo.get_profile(session, doctor_id)
        if profile is None:
            raise invalid("slot.doctor_id", "no such doctor")
        if not profile.verified:
            raise invalid("slot.doctor_id", "the doctor is not verified")
        if not await schedule_repo.offers(session, doctor_id, service_id):
            raise invalid("slot.doctor_id", "the doctor does not offer this service")
        row = await schedule_repo.get_schedule(session, doctor_id)
        if row is None:
            raise invalid("slot.doctor_id", "the doctor takes no planned visits")
        if doctor_id not in await zone_repo.doctors_serving(session, [doctor_id], zone_id):
            raise invalid("slot.doctor_id", "the doctor does not serve this place")
    return Bookable(doctor_id, service, schedule_of(row))


def slot_problem(target: Bookable, start: dt.datetime, now: dt.datetime, rules: Rules) -> None:
    """Raises 422 naming ``slot.start`` when ``start`` is not on offer (``dispatch/slots.py``: off the
    grid, outside hours, before the notice, beyond the horizon)."""
    found = problem(target.schedule, target.times, start, now, rules)
    if found is not None:
        raise invalid("slot.start", found.value)


async def search(
    sessions: async_sessionmaker[AsyncSession],
    zones: ZoneIndex,
    rules: Rules,
    *,
    service_id: uuid.UUID,
    lat: float,
    lon: float,
    first: dt.date,
    last: dt.date,
    now: dt.datetime,
) -> SlotList:
    """Every free slot of the service at the place on the place's local dates ``first`` to ``last``.
    Raises 422 naming ``service_id``, ``to`` (before ``from``, or more than :data:`MAX_DAYS` dates), 422
    ``outside_service_area``."""
    if last < first:
        raise invalid("to", "must not be before from")
    if (last - first).days + 1 > MAX_DAYS:
        raise invalid("to", f"at most {MAX_DAYS} dates at once")
    zone_id = _zone_id(zones, lat, lon)
    # Dates outside [yesterday, the horizon] hold no slot: left out before any calendar arithmetic.
    first = max(first, (now - dt.timedelta(days=1)).date())
    last = min(last, (now + rules.horizon + dt.timedelta(days=1)).date())
    place_zone = zone_name_at(lat, lon)
    tz = ZoneInfo(place_zone)
    begin = dt.datetime.combine(first, dt.time(), tz).astimezone(dt.UTC)
    finish = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz).astimezone(dt.UTC)
    async with sessions() as session:
        service = await _service(session, service_id)
        doctors = await schedule_repo.bookable_doctors(session, service_id)
        serving = await zone_repo.doctors_serving(session, [s.doctor_id for s, _ in doctors], zone_id)
        doctors = [(s, name) for s, name in doctors if s.doctor_id in serving]
        booked = await visit_repo.active_of_doctors(
            session,
            [s.doctor_id for s, _ in doctors],
            begin - dt.timedelta(days=1),
            finish + dt.timedelta(days=1),
        )
    found: list[SlotOffer] = []
    if last < first:
        return SlotList(service, place_zone, found)
    for row, name in doctors:
        target = Bookable(row.doctor_id, service, schedule_of(row))
        own = target.schedule.zone
        visits = [as_visit(b) for b in booked[row.doctor_id]]
        fits = open_slots(
            target.schedule,
            target.times,
            begin.astimezone(own).date(),
            finish.astimezone(own).date(),
            lat,
            lon,
            visits,
            now,
            rules,
        )
        found += [
            SlotOffer(row.doctor_id, name, f.start, f.end, f.travel_in_s)
            for f in fits
            if begin <= f.start < finish
        ]
    found.sort(key=lambda s: (s.start, str(s.doctor_id)))
    return SlotList(service, place_zone, found)
