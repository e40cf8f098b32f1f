"""Column types that behave the same on PostgreSQL/PostGIS and on SQLite.

- :class:`GeographyType` is a PostGIS ``geography`` (WGS84, SRID 4326) on PostgreSQL, so KNN and
  ``ST_DWithin`` work with GiST indexes; on SQLite it is the geometry's WKT text. Python code always
  sees a shapely geometry (x = longitude, y = latitude, degrees), whatever the database.
- :class:`UTCDateTime` stores timezone-aware UTC instants on both (SQLite keeps no zone, so the zone is
  put back on read); naive datetimes are refused rather than guessed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import shapely
import sqlalchemy as sa
from geoalchemy2 import Geography, WKBElement
from geoalchemy2.shape import to_shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

WGS84_SRID = 4326


class GeographyType(TypeDecorator[BaseGeometry]):
    """A WGS84 geometry column: PostGIS ``geography(<kind>, 4326)`` or WKT text on SQLite.

    ``kind`` is the PostGIS geometry type name (``POINT``, ``MULTIPOLYGON``, ``LINESTRING``...).
    Values are shapely geometries in (longitude, latitude) degree order.
    """

    impl = sa.Text
    cache_ok = True
    # GeoAlchemy2's DDL hooks read this through the decorator; GiST indexes are declared explicitly.
    spatial_index = False

    def __init__(self, kind: str = "GEOMETRY") -> None:
        super().__init__()
        self.kind = kind.upper()

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(
                Geography(geometry_type=self.kind, srid=WGS84_SRID, spatial_index=False)
            )
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: BaseGeometry | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return f"SRID={WGS84_SRID};{value.wkt}"
        return str(value.wkt)

    def process_result_value(self, value: Any, dialect: Dialect) -> BaseGeometry | None:
        if value is None:
            return None
        if isinstance(value, WKBElement):
            return to_shape(value)
        if isinstance(value, bytes | memoryview):
            return shapely.from_wkb(bytes(value))
        return shapely.from_wkt(value)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every database.

    Raises ``ValueError`` on bind when given a naive datetime (a naive time is ambiguous).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; attach a timezone")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    """The current instant, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
