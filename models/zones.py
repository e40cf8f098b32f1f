"""Service zones: the polygons a call is matched to (city districts, clinic areas)."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, timestamp_default_now, uuid_pk
from models.types import GeographyType


class Zone(Base):
    """A named service area. ``area`` is a WGS84 (multi)polygon; ``code`` is the importer's stable key."""

    __tablename__ = "zones"

    id: Mapped[uuid.UUID] = uuid_pk()
    code: Mapped[str] = mapped_column(sa.String(100), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    area: Mapped[BaseGeometry] = mapped_column(GeographyType("MULTIPOLYGON"))
    created_at: Mapped[dt.datetime] = timestamp_default_now()


zone_area_gist = sa.Index("ix_zones_area_gist", Zone.area, postgresql_using="gist").ddl_if(
    dialect="postgresql"
)
