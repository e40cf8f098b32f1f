"""Ratings: a patient's 1-5 score of a completed visit."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk


class Rating(Base):
    """One rating per call (``call_id`` is unique): ``score`` 1-5 and an optional comment."""

    __tablename__ = "ratings"
    __table_args__ = (sa.CheckConstraint("score >= 1 AND score <= 5", name="score_range"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"), unique=True
    )
    patient_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    doctor_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"), index=True)
    score: Mapped[int] = mapped_column(sa.SmallInteger)
    comment: Mapped[str | None] = mapped_column(sa.String(2000))
    created_at: Mapped[dt.datetime] = timestamp_default_now()
