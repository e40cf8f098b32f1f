"""A clinic's own people and catalogue: which ``clinic_admin`` runs which clinic, and the services (kinds
of planned visit) the clinic sells."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk


class ClinicAdmin(Base):
    """A ``clinic_admin`` account and the one clinic it manages (its services, its doctors' schedules).

    One row per account (the primary key): a clinic admin belongs to one clinic. A clinic may have
    several admins. Deleting the account or the clinic deletes the row.
    """

    __tablename__ = "clinic_admins"

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    clinic_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), index=True
    )


class ClinicService(Base):
    """One kind of planned visit a clinic sells: a name, the specialty it needs, how long it takes
    (``duration_min`` minutes of the doctor at the door), its price (``price`` in ``currency``, an ISO
    4217 code, two decimals) and the doctor's time around it (``buffer_before_min`` to prepare,
    ``buffer_after_min`` to write up), which bookings hold as well (``dispatch/slots.py``).

    ``active`` false: no longer offered (no new slots or bookings); booked visits keep it.
    """

    __tablename__ = "clinic_services"
    __table_args__ = (
        sa.UniqueConstraint("clinic_id", "name", name="uq_clinic_services_clinic_name"),
        sa.CheckConstraint("duration_min > 0 AND duration_min <= 720", name="duration_range"),
        sa.CheckConstraint("buffer_before_min >= 0 AND buffer_after_min >= 0", name="buffers_nonnegative"),
        sa.CheckConstraint("price >= 0", name="price_nonnegative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    clinic_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    specialty: Mapped[str] = mapped_column(sa.String(64))
    duration_min: Mapped[int] = mapped_column(sa.Integer)
    price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))
    currency: Mapped[str] = mapped_column(sa.String(3))
    buffer_before_min: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    buffer_after_min: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    created_at: Mapped[dt.datetime] = timestamp_default_now()
