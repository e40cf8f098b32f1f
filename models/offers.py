"""Offers: a call proposed to one doctor, with a deadline."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, enum_column, timestamp_default_now, uuid_pk
from models.enums import OfferOutcome, values
from models.types import UTCDateTime


class Offer(Base):
    """One offer of ``call_id`` to ``doctor_id``, open until ``deadline_at``.

    ``distance_m`` and ``eta_s`` are the ranking's straight-line distance (metres) and ETA (seconds) at
    offer time; ``radius_m`` is the search ring the doctor was found in. ``outcome`` starts ``pending``
    and is decided once (accepted, declined, expired, withdrawn) at ``decided_at``.
    """

    __tablename__ = "offers"
    __table_args__ = (
        sa.Index("ix_offers_call_created", "call_id", "created_at"),
        sa.Index("ix_offers_doctor_created", "doctor_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"))
    doctor_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = timestamp_default_now()
    deadline_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(
        enum_column(values(OfferOutcome), "offer_outcome"), default=OfferOutcome.PENDING.value
    )
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    distance_m: Mapped[float | None] = mapped_column(sa.Float)
    eta_s: Mapped[float | None] = mapped_column(sa.Float)
    radius_m: Mapped[float | None] = mapped_column(sa.Float)
