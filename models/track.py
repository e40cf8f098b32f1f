"""The track of a doctor on a call: GPS fixes stored in batches, for the route and its length."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, uuid_pk
from models.types import GeographyType, UTCDateTime


class TrackPoint(Base):
    """One fix of the assigned doctor while on a call. ``lat``/``lon`` WGS84 degrees, ``accuracy_m``
    metres, ``ts`` the fix time; ``location`` the same point as geography (PostGIS measures the route)."""

    __tablename__ = "track_points"
    __table_args__ = (sa.Index("ix_track_points_call_ts", "call_id", "ts"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    call_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("calls.id", ondelete="CASCADE"))
    doctor_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), sa.ForeignKey("users.id"))
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    lat: Mapped[float] = mapped_column(sa.Float)
    lon: Mapped[float] = mapped_column(sa.Float)
    accuracy_m: Mapped[float | None] = mapped_column(sa.Float)
    location: Mapped[BaseGeometry] = mapped_column(GeographyType("POINT"))
