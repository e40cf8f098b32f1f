"""Which zones a doctor serves. A doctor with no rows here serves every zone."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class DoctorZone(Base):
    """One zone a doctor is limited to (a doctor may have several; none means "everywhere").

    Deleting the doctor's account or the zone deletes the row. Note that removing a doctor's last row
    widens them to every zone; the zone importer refuses to delete zones still listed here for that
    reason (see ``dispatch/zone_import.py``).
    """

    __tablename__ = "doctor_zones"

    doctor_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    zone_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("zones.id", ondelete="CASCADE"), primary_key=True, index=True
    )
