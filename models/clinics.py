"""Clinics: the organisations doctors work for."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk


class Clinic(Base):
    """A clinic. Doctors may belong to one; a ``clinic_admin`` user manages one (``clinic_admins``,
    ``models/clinic_catalogue.py``), with its services."""

    __tablename__ = "clinics"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    address: Mapped[str | None] = mapped_column(sa.String(500))
    phone: Mapped[str | None] = mapped_column(sa.String(20))
    created_at: Mapped[dt.datetime] = timestamp_default_now()
