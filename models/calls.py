"""Calls (a patient's request for a home visit) and their status history."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, enum_column, timestamp_default_now, uuid_pk
from models.enums import CallStatus, Role, Urgency, values
from models.types import GeographyType, UTCDateTime


class Call(Base):
    """One home-visit request.

    The place is kept three ways on purpose: ``location`` (a PostGIS geography point, for spatial
    queries and GiST indexes), ``lat``/``lon`` (WGS84 degrees, for cheap reads without geometry
    parsing) and ``h3_cell`` (the H3 cell id at the dispatch resolution, for bucketing and map
    channels). ``created_by`` differs from ``patient_id`` when a dispatcher files the call for a patient
    who phoned in. ``(created_by, idempotency_key)`` is unique, so a retried create returns the same call.
    Prices are in ``currency`` units with two decimals. ``version`` increments on every status change
    (optimistic concurrency for the state machine).
    """

    __tablename__ = "calls"
    __table_args__ = (
        sa.UniqueConstraint("created_by", "idempotency_key", name="uq_calls_idempotency"),
        sa.CheckConstraint("lat >= -90 AND lat <= 90", name="lat_range"),
        sa.CheckConstraint("lon >= -180 AND lon <= 180", name="lon_range"),
        sa.Index("ix_calls_status_created", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    patient_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"), index=True)
    created_by: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    doctor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"), index=True)
    zone_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.Uuid(), sa.ForeignKey("zones.id", ondelete="SET NULL"), index=True
    )
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128))
    address: Mapped[str] = mapped_column(sa.String(500))
    location: Mapped[BaseGeometry] = mapped_column(GeographyType("POINT"))
    lat: Mapped[float] = mapped_column(sa.Float)
    lon: Mapped[float] = mapped_column(sa.Float)
    h3_cell: Mapped[str] = mapped_column(sa.String(16), index=True)
    urgency: Mapped[str] = mapped_column(enum_column(values(Urgency), "call_urgency"))
    specialty: Mapped[str] = mapped_column(sa.String(64))
    symptoms: Mapped[str | None] = mapped_column(sa.Text)
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(
        enum_column(values(CallStatus), "call_status"), default=CallStatus.CREATED.value
    )
    price_estimate: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 2))
    price_final: Mapped[Decimal | None] = mapped_column(sa.Numeric(10, 2))
    currency: Mapped[str] = mapped_column(sa.String(3), default="RUB", server_default="RUB")
    cancel_reason: Mapped[str | None] = mapped_column(sa.String(500))
    version: Mapped[int] = mapped_column(sa.Integer, default=1, server_default="1")
    created_at: Mapped[dt.datetime] = timestamp_default_now()
    updated_at: Mapped[dt.datetime] = timestamp_default_now()
    assigned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    # Every UPDATE of a call carries "WHERE version = <the version read>" and bumps it: two writers that
    # read the same version cannot both win, on PostgreSQL or SQLite (where FOR UPDATE does nothing).
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy's declarative hook


call_location_gist = sa.Index("ix_calls_location_gist", Call.location, postgresql_using="gist").ddl_if(
    dialect="postgresql"
)


class CallEvent(Base):
    """One transition of a call's status: who moved it, from what, to what, why and when.

    Written in the same transaction as the status change. ``actor_id`` is ``None`` for the system
    (the offer loop, deadlines); ``data`` holds transition details (offer id, doctor id, ...).
    """

    __tablename__ = "call_events"
    __table_args__ = (sa.Index("ix_call_events_call_created", "call_id", "created_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(enum_column(values(CallStatus), "call_event_from"))
    to_status: Mapped[str] = mapped_column(enum_column(values(CallStatus), "call_event_to"))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    actor_role: Mapped[str | None] = mapped_column(enum_column(values(Role), "call_event_actor_role"))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = timestamp_default_now()
