"""SOS alerts: a doctor in danger or with a complex call, or a patient's emergency."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, enum_column, timestamp_default_now, uuid_pk
from models.enums import SosKind, SosStatus, values
from models.types import GeographyType, UTCDateTime


class SosAlert(Base):
    """One SOS. It repeats to dispatchers until ``acknowledged_at`` is set and stays open until
    resolved with a note. ``location`` and ``lat``/``lon`` (WGS84 degrees) are where it was raised,
    when known."""

    __tablename__ = "sos_alerts"
    __table_args__ = (sa.Index("ix_sos_alerts_status_created", "status", "created_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    raised_by: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"), index=True)
    call_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.Uuid(), sa.ForeignKey("calls.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(enum_column(values(SosKind), "sos_kind"))
    status: Mapped[str] = mapped_column(
        enum_column(values(SosStatus), "sos_status"), default=SosStatus.OPEN.value
    )
    location: Mapped[BaseGeometry | None] = mapped_column(GeographyType("POINT"))
    lat: Mapped[float | None] = mapped_column(sa.Float)
    lon: Mapped[float | None] = mapped_column(sa.Float)
    message: Mapped[str | None] = mapped_column(sa.String(1000))
    created_at: Mapped[dt.datetime] = timestamp_default_now()
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    resolution_note: Mapped[str | None] = mapped_column(sa.String(2000))


class SosEvent(Base):
    """One step of an SOS, for the audit: ``raised``, ``delivered`` (how many dispatchers and doctors
    it reached), ``repeated``, ``acknowledged``, ``resolved``. ``actor_id`` is ``None`` for the server."""

    __tablename__ = "sos_events"
    __table_args__ = (sa.Index("ix_sos_events_sos_created", "sos_id", "created_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    sos_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("sos_alerts.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(sa.String(32))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    actor_role: Mapped[str | None] = mapped_column(sa.String(32))
    data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = timestamp_default_now()
