"""Reading service zones from GeoJSON: which features become zones, under what code and name, and
how their geometry is checked and repaired. Pure functions (no database); the importer that writes the
result is ``dispatch/zone_import.py``.

A zone is a WGS84 ``MultiPolygon`` in (longitude, latitude) degrees, exterior rings counter-clockwise
and holes clockwise (the RFC 7946 winding), valid in the OGC sense. A feature's geometry may be a
``Polygon`` or a ``MultiPolygon``; an invalid one (a self-intersecting "bow-tie", overlapping parts,
a ring touching itself) is repaired with GEOS ``MakeValid`` in its ``structure`` mode
(``shapely.make_valid(method="structure")``, GEOS >= 3.10): the parts of a multipolygon are unioned,
a shell that crosses itself keeps all the area it encloses (a bow-tie becomes its two triangles), holes
are subtracted, and collapsed parts (lines, points: no area) are dropped. The default ``linework`` mode
is not used because it treats overlapping parts as exclusive-or: where two parts of one district overlap
it would cut a hole into the district.

Codes and names:

- ``code`` is the zone's stable key (the importer upserts by it): the value of ``code_property`` when
  one is given, else the feature's ``id``. Numbers are written without a fraction (``87`` for ``87.0``).
  A feature without one is skipped: inventing a key (a position in the file, a name) would give the
  zone a new identity on the next import of a reordered or renamed file.
- ``name`` is the value of ``name_property`` when given, else of the first of ``name``, ``NAME``,
  ``Name`` the feature has, else the code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

CODE_MAX_LENGTH = 100
NAME_MAX_LENGTH = 200
"""Column widths of ``zones.code`` and ``zones.name`` (models/zones.py)."""

NAME_PROPERTIES = ("name", "NAME", "Name")
"""Properties tried for a zone's name when no ``name_property`` is given, in this order."""

WGS84_CRS_NAMES = frozenset(
    {
        "urn:ogc:def:crs:OGC:1.3:CRS84",
        "urn:ogc:def:crs:OGC::CRS84",
        "CRS84",
        "EPSG:4326",
        "urn:ogc:def:crs:EPSG::4326",
        "http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    }
)
"""``crs`` names (the pre-RFC 7946 GeoJSON member) accepted as WGS84 longitude/latitude. RFC 7946
dropped ``crs``: a file without it is WGS84 by definition. EPSG:4326 is accepted because GeoJSON writers
that name it still write longitude first; coordinates outside the WGS84 ranges are refused anyway."""


class GeoJSONError(ValueError):
    """The document as a whole cannot be imported (not JSON, not a FeatureCollection, another CRS)."""


@dataclass(frozen=True)
class ZoneFeature:
    """One feature that becomes a zone. ``repaired`` is why its geometry was invalid (GEOS's
    ``IsValidReason``, e.g. ``"Self-intersection[37.5 55.7]"``), or ``None`` when it was valid."""

    code: str
    name: str
    area: MultiPolygon
    repaired: str | None = None


@dataclass(frozen=True)
class SkippedFeature:
    """A feature that was not imported: its 0-based position in ``features``, its code when known,
    and why."""

    index: int
    code: str | None
    reason: str


@dataclass
class ParsedZones:
    """The zones a document yields, in document order, and the features skipped."""

    zones: list[ZoneFeature] = field(default_factory=list)
    skipped: list[SkippedFeature] = field(default_factory=list)


def read_geojson(path: str | Path) -> Any:
    """The parsed JSON document at ``path``. Raises :class:`GeoJSONError` when it cannot be read or
    parsed."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise GeoJSONError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise GeoJSONError(f"{path} is not valid JSON: {exc}") from None


def parse_zones(
    document: Any, *, code_property: str | None = None, name_property: str | None = None
) -> ParsedZones:
    """The zones of a GeoJSON ``FeatureCollection`` (module docstring: codes, names, repair).

    Features that cannot become zones are skipped with a reason: no geometry, a geometry that is not a
    (multi)polygon, malformed or out-of-range coordinates, no area left after repair, no code, a code
    or name too long for its column, a code already used by an earlier feature of the document.
    Raises :class:`GeoJSONError` when the document is not a FeatureCollection or names a CRS other
    than WGS84.
    """
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise GeoJSONError("not a GeoJSON FeatureCollection")
    _check_crs(document.get("crs"))
    features = document.get("features")
    if not isinstance(features, list):
        raise GeoJSONError("the FeatureCollection has no 'features' list")
    result = ParsedZones()
    first_index: dict[str, int] = {}
    for index, feature in enumerate(features):
        outcome = _parse_feature(feature, code_property, name_property)
        if isinstance(outcome, tuple):
            code, reason = outcome
            result.skipped.append(SkippedFeature(index, code, reason))
        elif outcome.code in first_index:
            reason = f"duplicate code (feature #{first_index[outcome.code]} has it)"
            result.skipped.append(SkippedFeature(index, outcome.code, reason))
        else:
            first_index[outcome.code] = index
            result.zones.append(outcome)
    return result


def polygonal(geometry: BaseGeometry) -> MultiPolygon | None:
    """The area of ``geometry`` as a valid, RFC 7946-wound MultiPolygon, or ``None`` when it has none.

    Invalid input is repaired with ``make_valid`` (module docstring); lines and points (no area) are
    dropped.
    """
    geometry = shapely.force_2d(geometry)
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry, method="structure", keep_collapsed=False)
    polygons = [p for p in _polygons(geometry) if not p.is_empty and p.area > 0]
    if not polygons:
        return None
    area = MultiPolygon([orient(p, sign=1.0) for p in polygons])
    if not area.is_valid:
        # Parts that touch along an edge (possible when a collection is flattened): merge them.
        merged = shapely.make_valid(shapely.union_all(polygons), method="structure", keep_collapsed=False)
        polygons = [p for p in _polygons(merged) if not p.is_empty and p.area > 0]
        area = MultiPolygon([orient(p, sign=1.0) for p in polygons])
        if not polygons or not area.is_valid:
            return None
    return area


def _polygons(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    parts = getattr(geometry, "geoms", None)
    if parts is None:
        return []
    return [p for part in parts for p in _polygons(part)]


def _check_crs(crs: Any) -> None:
    if crs is None:
        return
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) else None
    if name not in WGS84_CRS_NAMES:
        raise GeoJSONError(f"unsupported CRS {name or crs!r}: reproject the file to WGS84 longitude/latitude")


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text or None
    return None


def _parse_feature(
    feature: Any, code_property: str | None, name_property: str | None
) -> ZoneFeature | tuple[str | None, str]:
    """A zone, or ``(code or None, reason)`` for a feature to skip."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return None, "not a GeoJSON Feature"
    properties = feature.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    if code_property is not None:
        code = _text(properties.get(code_property))
        if code is None:
            return None, f"no code: property {code_property!r} is missing or empty"
    else:
        code = _text(feature.get("id"))
        if code is None:
            return None, "no code: the feature has no id (pass --code-property)"
    if len(code) > CODE_MAX_LENGTH:
        return None, f"code longer than {CODE_MAX_LENGTH} characters"
    if name_property is not None:
        name = _text(properties.get(name_property)) or code
    else:
        name = next((n for p in NAME_PROPERTIES if (n := _text(properties.get(p)))), code)
    if len(name) > NAME_MAX_LENGTH:
        return code, f"name longer than {NAME_MAX_LENGTH} characters"

    raw = feature.get("geometry")
    if raw is None:
        return code, "no geometry"
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind not in ("Polygon", "MultiPolygon"):
        return code, f"geometry type {kind!r} is not Polygon or MultiPolygon"
    try:
        geometry = shape(raw)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
        return code, f"malformed geometry: {exc}"
    if geometry.is_empty:
        return code, "empty geometry"
    west, south, east, north = geometry.bounds
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        return code, "non-finite coordinates"
    if west < -180 or east > 180 or south < -90 or north > 90:
        return code, "coordinates outside WGS84 longitude/latitude ranges (another CRS, or lat/lon swapped?)"
    repaired = None if geometry.is_valid else shapely.is_valid_reason(geometry)
    area = polygonal(geometry)
    if area is None:
        return code, f"no area left after repair ({repaired})" if repaired else "no area"
    return ZoneFeature(code=code, name=name, area=area, repaired=repaired)
