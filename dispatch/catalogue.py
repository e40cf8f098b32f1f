"""A clinic's catalogue: its admins and the services it sells (name, specialty, duration, price,
buffers). Access: ``dispatch/clinic_access.py``."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import Who
from dispatch.clinic_access import check_manages_clinic
from dispatch.errors import DispatchError, forbidden, not_found
from models.clinic_catalogue import ClinicService
from models.enums import Role
from models.repositories import catalogue as catalogue_repo
from models.repositories import clinics as clinic_repo
from models.repositories import users as user_repo
from realtime.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class NewService:
    """A service to create: minutes for the duration and buffers, ``price`` in ``currency`` (ISO 4217)."""

    name: str
    specialty: str
    duration_min: int
    price: Decimal
    currency: str
    buffer_before_min: int = 0
    buffer_after_min: int = 0


class Catalogue:
    """Clinic admins and clinic services in the database of record."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def set_clinic_admin(self, who: Who, clinic_id: uuid.UUID, user_id: uuid.UUID) -> None:
        """An admin makes the ``clinic_admin`` account ``user_id`` the admin of ``clinic_id`` (an
        account manages one clinic: this replaces any other). Raises 403, 404 (clinic), 422
        (``user_id``: not a clinic_admin account)."""
        if who.role is not Role.ADMIN:
            raise forbidden("only admins appoint clinic admins")
        async with self.sessions.begin() as session:
            if await clinic_repo.get_clinic(session, clinic_id) is None:
                raise not_found("clinic")
            user = await user_repo.get_user(session, user_id)
            if user is None or user.role != Role.CLINIC_ADMIN.value:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT, "user_id: not a clinic_admin account", field="user_id"
                )
            await catalogue_repo.set_clinic_admin(session, user_id, clinic_id)

    async def create_service(self, who: Who, clinic_id: uuid.UUID, new: NewService) -> ClinicService:
        """Add a service to the clinic. Raises 403 (not its admin), 404 (clinic), 409
        ``service_exists``."""
        async with self.sessions.begin() as session:
            if await clinic_repo.get_clinic(session, clinic_id) is None:
                raise not_found("clinic")
            await check_manages_clinic(session, who, clinic_id)
            try:
                return await catalogue_repo.create_service(
                    session,
                    clinic_id=clinic_id,
                    name=new.name,
                    specialty=new.specialty,
                    duration_min=new.duration_min,
                    price=new.price,
                    currency=new.currency,
                    buffer_before_min=new.buffer_before_min,
                    buffer_after_min=new.buffer_after_min,
                )
            except catalogue_repo.DuplicateService:
                raise DispatchError(
                    ErrorCode.SERVICE_EXISTS, "the clinic has a service of this name", field="name"
                ) from None

    async def set_active(self, who: Who, service_id: uuid.UUID, active: bool) -> ClinicService:
        """Offer the service again, or no longer (booked visits keep it). Raises 403, 404."""
        return await self._change(who, service_id, lambda s: setattr(s, "active", active))

    async def _change(
        self, who: Who, service_id: uuid.UUID, change: Callable[[ClinicService], None]
    ) -> ClinicService:
        async with self.sessions.begin() as session:
            service = await catalogue_repo.get_service(session, service_id)
            if service is None:
                raise not_found("service")
            await check_manages_clinic(session, who, service.clinic_id)
            change(service)
            await session.flush()
            return service

    async def list_services(self, clinic_id: uuid.UUID) -> list[ClinicService]:
        """The clinic's services by name (anyone signed in). Raises 404 (clinic)."""
        async with self.sessions() as session:
            if await clinic_repo.get_clinic(session, clinic_id) is None:
                raise not_found("clinic")
            return await catalogue_repo.list_services(session, clinic_id)
