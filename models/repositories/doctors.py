"""Reading and writing doctor profiles."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.doctors import DoctorProfile
from models.enums import Role
from models.types import utcnow
from models.users import User
from models.visit_bookings import VisitBooking


class DuplicateLicence(Exception):
    """Another doctor already holds this licence number."""


async def create_profile(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    licence_number: str,
    specialties: Sequence[str],
    clinic_id: uuid.UUID | None,
) -> DoctorProfile:
    """Insert an unverified profile (flushed). Raises :class:`DuplicateLicence`."""
    if await licence_taken(session, licence_number):
        raise DuplicateLicence(licence_number)
    profile = DoctorProfile(
        user_id=user_id,
        licence_number=licence_number,
        specialties=sorted(set(specialties)),
        clinic_id=clinic_id,
        verified=False,
        rating_count=0,
    )
    session.add(profile)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise DuplicateLicence(licence_number) from None
    return profile


async def get_profile(session: AsyncSession, user_id: uuid.UUID) -> DoctorProfile | None:
    """The profile of doctor ``user_id``, or ``None``."""
    return await session.get(DoctorProfile, user_id)


async def set_verified(
    session: AsyncSession, profile: DoctorProfile, verified: bool, by: uuid.UUID
) -> DoctorProfile:
    """Mark a profile verified (recording who and when) or revoke the verification."""
    profile.verified = verified
    profile.verified_at = utcnow() if verified else None
    profile.verified_by = by if verified else None
    await session.flush()
    return profile


async def set_chosen_status(session: AsyncSession, user_id: uuid.UUID, status: str, at: dt.datetime) -> bool:
    """Record the availability the doctor ``user_id`` chose (``available``, ``paused`` or ``offline``)
    at ``at``, in one UPDATE. Returns whether a profile was there to change."""
    result = await session.execute(
        sa.update(DoctorProfile)
        .where(DoctorProfile.user_id == user_id)
        .values(chosen_status=status, chosen_status_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def set_chosen_statuses(
    session: AsyncSession, choices: Sequence[tuple[uuid.UUID, str, dt.datetime]]
) -> None:
    """Record several doctors' chosen availability, ``(user id, status, at)`` each, with one UPDATE
    statement executed for every choice (``executemany``; a batch of shift starts, see
    ``dispatch/status_writes.py``). Choices apply in order: of two for one doctor the later stays."""
    if not choices:
        return
    table = cast(sa.Table, DoctorProfile.__table__)
    statement = (
        sa.update(table)
        .where(table.c.user_id == sa.bindparam("b_user"))
        .values(chosen_status=sa.bindparam("b_status"), chosen_status_at=sa.bindparam("b_at"))
    )
    await session.execute(
        statement, [{"b_user": user, "b_status": status, "b_at": at} for user, status, at in choices]
    )


async def list_profiles(
    session: AsyncSession,
    *,
    verified: bool | None,
    clinic_id: uuid.UUID | None,
    limit: int,
    offset: int,
) -> list[tuple[User, DoctorProfile]]:
    """Doctors with their accounts, newest account first, filtered and paged."""
    query = sa.select(User, DoctorProfile).join(DoctorProfile, DoctorProfile.user_id == User.id)
    if verified is not None:
        query = query.where(DoctorProfile.verified == verified)
    if clinic_id is not None:
        query = query.where(DoctorProfile.clinic_id == clinic_id)
    query = query.order_by(User.created_at.desc(), User.id).limit(limit).offset(offset)
    rows = await session.execute(query)
    return [(user, profile) for user, profile in rows.all()]


async def licence_taken(session: AsyncSession, licence_number: str) -> bool:
    """True when some profile holds ``licence_number``."""
    found = await session.scalar(
        sa.select(DoctorProfile.user_id).where(DoctorProfile.licence_number == licence_number)
    )
    return found is not None


async def ratings(session: AsyncSession, doctor_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, float | None]:
    """Rating average (1-5, ``None`` if unrated) of each *verified* doctor among ``doctor_ids``; doctors
    without a verified profile, whose account is disabled or no longer has the doctor role are absent
    from the result (so never dispatch candidates)."""
    if not doctor_ids:
        return {}
    rows = await session.execute(
        sa.select(DoctorProfile.user_id, DoctorProfile.rating_avg)
        .join(User, User.id == DoctorProfile.user_id)
        .where(
            DoctorProfile.user_id.in_(list(doctor_ids)),
            DoctorProfile.verified.is_(True),
            User.is_active.is_(True),
            User.role == Role.DOCTOR.value,
        )
    )
    return {user_id: rating for user_id, rating in rows.all()}


async def ratings_and_booked(
    session: AsyncSession,
    doctor_ids: Sequence[uuid.UUID],
    booked_from: dt.datetime,
    booked_until: dt.datetime,
) -> tuple[dict[uuid.UUID, float | None], set[uuid.UUID]]:
    """:func:`ratings`, and which of those doctors hold an active booking whose held time touches
    ``[booked_from, booked_until]``, in one statement (a correlated EXISTS on the bookings' doctor
    index): a search reads the bookings themselves only for those, and usually for nobody, so the
    first offer of an urgent call costs no extra round trip (docs/benchmarks.md, issue 16)."""
    if not doctor_ids:
        return {}, set()
    booked = (
        sa.exists()
        .where(
            VisitBooking.doctor_id == DoctorProfile.user_id,
            VisitBooking.active.is_(True),
            VisitBooking.held_until >= booked_from,
            VisitBooking.held_from <= booked_until,
        )
        .correlate(DoctorProfile)
    )
    rows = await session.execute(
        sa.select(DoctorProfile.user_id, DoctorProfile.rating_avg, booked)
        .join(User, User.id == DoctorProfile.user_id)
        .where(
            DoctorProfile.user_id.in_(list(doctor_ids)),
            DoctorProfile.verified.is_(True),
            User.is_active.is_(True),
            User.role == Role.DOCTOR.value,
        )
    )
    found: dict[uuid.UUID, float | None] = {}
    holding: set[uuid.UUID] = set()
    for user_id, rating, has_booking in rows.all():
        found[user_id] = rating
        if has_booking:
            holding.add(user_id)
    return found, holding


async def add_rating(session: AsyncSession, doctor_id: uuid.UUID, score: int) -> None:
    """Fold one 1-5 score into the doctor's average and count, in one UPDATE (concurrent ratings of
    the same doctor cannot lose each other): avg' = (avg * n + score) / (n + 1)."""
    await session.execute(
        sa.update(DoctorProfile)
        .where(DoctorProfile.user_id == doctor_id)
        .values(
            rating_avg=(sa.func.coalesce(DoctorProfile.rating_avg, 0) * DoctorProfile.rating_count + score)
            / (DoctorProfile.rating_count + 1),
            rating_count=DoctorProfile.rating_count + 1,
        )
        .execution_options(synchronize_session=False)
    )


# --- the live engine's rebuild and repair sweep (dispatch/rebuild.py, dispatch/repair_sweep.py) ----

ID_CHUNK = 1000
"""Ids per ``IN (...)`` list: SQLite caps the bound parameters of one statement."""


async def profiles_on_shift(session: AsyncSession) -> list[DoctorProfile]:
    """Profiles whose doctor last chose to be on shift (``chosen_status`` other than ``offline``)."""
    rows = await session.scalars(sa.select(DoctorProfile).where(DoctorProfile.chosen_status != "offline"))
    return list(rows)


async def profiles_by_user(
    session: AsyncSession, user_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, DoctorProfile]:
    """The profiles of ``user_ids`` that exist, by user id (queried :data:`ID_CHUNK` ids at a time)."""
    found: dict[uuid.UUID, DoctorProfile] = {}
    ids = list(dict.fromkeys(user_ids))
    for start in range(0, len(ids), ID_CHUNK):
        rows = await session.scalars(
            sa.select(DoctorProfile).where(DoctorProfile.user_id.in_(ids[start : start + ID_CHUNK]))
        )
        found.update((profile.user_id, profile) for profile in rows)
    return found
