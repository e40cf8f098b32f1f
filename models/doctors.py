"""Doctor profiles: what a doctor can treat and whether an admin has verified them."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.types import UTCDateTime


class DoctorProfile(Base):
    """The professional side of a ``doctor`` user (one-to-one, keyed by the user id).

    ``specialties`` is a list of lower-case specialty codes (``["therapist", "pediatrician"]``).
    A doctor starts unverified and receives no calls until an admin verifies them. ``rating_avg`` is the
    mean of ``rating_count`` ratings on a 1-5 scale (``None`` before the first rating).
    """

    __tablename__ = "doctor_profiles"
    __table_args__ = (
        sa.CheckConstraint("rating_count >= 0", name="rating_count_nonnegative"),
        sa.CheckConstraint(
            "rating_avg IS NULL OR (rating_avg >= 1 AND rating_avg <= 5)", name="rating_avg_range"
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    clinic_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.Uuid(), sa.ForeignKey("clinics.id", ondelete="SET NULL"), index=True
    )
    licence_number: Mapped[str] = mapped_column(sa.String(64), unique=True)
    specialties: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    verified: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    verified_by: Mapped[uuid.UUID | None] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    rating_avg: Mapped[float | None] = mapped_column(sa.Float)
    rating_count: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # The availability the doctor last chose (``available``, ``paused`` or ``offline``; never ``offered``
    # or ``busy``, which the open calls and offers imply). The live engine is a cache: when it is lost
    # (a Redis restart) each doctor's state is rebuilt from this and from the open calls and offers.
    chosen_status: Mapped[str] = mapped_column(sa.String(16), default="offline", server_default="offline")
    chosen_status_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
