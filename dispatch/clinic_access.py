"""Who manages what in a clinic: an ``admin`` manages every clinic and doctor; a ``clinic_admin`` its
own clinic (``clinic_admins``) and the doctors whose profile names that clinic; a doctor their own
schedule. Anything else is 403 ``forbidden``."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.calls import Who
from dispatch.errors import forbidden, not_found
from models.doctors import DoctorProfile
from models.enums import Role
from models.repositories import catalogue as catalogue_repo
from models.repositories import doctors as doctor_repo


async def check_manages_clinic(session: AsyncSession, who: Who, clinic_id: uuid.UUID) -> None:
    """Raises 403 unless ``who`` is an admin or the clinic's own clinic admin."""
    if who.role is Role.ADMIN:
        return
    if (
        who.role is Role.CLINIC_ADMIN
        and await catalogue_repo.clinic_of_admin(session, who.user_id) == clinic_id
    ):
        return
    raise forbidden("only an admin or this clinic's admin manages its catalogue")


async def check_manages_doctor(session: AsyncSession, who: Who, doctor_id: uuid.UUID) -> DoctorProfile:
    """The doctor's profile, when ``who`` may set their schedule: the doctor, an admin, or the clinic
    admin of the doctor's clinic. Raises 404 (no such doctor), 403."""
    profile = await doctor_repo.get_profile(session, doctor_id)
    if profile is None:
        raise not_found("doctor")
    if who.role is Role.ADMIN or (who.role is Role.DOCTOR and who.user_id == doctor_id):
        return profile
    if who.role is Role.CLINIC_ADMIN:
        clinic = await catalogue_repo.clinic_of_admin(session, who.user_id)
        if clinic is not None and profile.clinic_id == clinic:
            return profile
        raise forbidden("this doctor does not work for your clinic")
    raise forbidden("only the doctor, their clinic's admin or an admin manage a doctor's schedule")
