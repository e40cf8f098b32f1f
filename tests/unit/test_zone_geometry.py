"""Reading zones from GeoJSON (codes, names, repair, refusals) and the zone index without a database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from shapely.geometry import GeometryCollection, LineString, MultiPolygon, Polygon, box

from dispatch.zones import ZoneIndex, ZoneRef
from geo.zones import GeoJSONError, parse_zones, polygonal

SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]]}  # clockwise


def fc(*features: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features), **extra}


def feat(geometry: Any = SQUARE, fid: Any = "z", **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Feature", "properties": properties, "geometry": geometry}
    if fid is not None:
        out["id"] = fid
    return out


@pytest.mark.parametrize(("fid", "code"), [("z", "z"), (87, "87"), (87.0, "87"), (" x ", "x"), (1.5, "1.5")])
def test_codes_from_feature_ids(fid: Any, code: str) -> None:
    [zone] = parse_zones(fc(feat(fid=fid))).zones
    assert zone.code == code


@pytest.mark.parametrize("fid", [None, "", "  ", True, {"a": 1}, [1]])
def test_features_without_a_usable_id_are_skipped(fid: Any) -> None:
    parsed = parse_zones(fc(feat(fid=fid)))
    assert parsed.zones == []
    assert parsed.skipped[0].reason.startswith("no code")


def test_names_default_to_common_properties_then_the_code() -> None:
    parsed = parse_zones(
        fc(
            feat(fid="a", name="lower"),
            feat(fid="b", NAME="UPPER"),
            feat(fid="c", Name="Title"),
            feat(fid="d"),
        )
    )
    assert [(z.code, z.name) for z in parsed.zones] == [
        ("a", "lower"),
        ("b", "UPPER"),
        ("c", "Title"),
        ("d", "d"),
    ]


def test_area_is_a_valid_counter_clockwise_multipolygon_in_2d() -> None:
    square_3d = {"type": "Polygon", "coordinates": [[[0, 0, 5], [0, 1, 5], [1, 1, 5], [1, 0, 5], [0, 0, 5]]]}
    [zone] = parse_zones(fc(feat(square_3d))).zones
    assert isinstance(zone.area, MultiPolygon)
    assert not zone.area.has_z
    assert zone.area.geoms[0].exterior.is_ccw
    assert zone.repaired is None


@pytest.mark.parametrize(
    ("geometry", "reason"),
    [
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "'LineString' is not Polygon"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "malformed geometry"),
        ({"type": "Polygon", "coordinates": "nope"}, "malformed geometry"),
        ({"type": "Polygon", "coordinates": []}, "empty geometry"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [0, 200], [1, 200], [0, 0]]]},
            "outside WGS84",
        ),
        # A ring that folds onto itself: repair leaves only lines, no area.
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2], [1, 1], [0, 0]]]}, "no area"),
    ],
)
def test_unusable_geometries_are_skipped_with_a_reason(geometry: Any, reason: str) -> None:
    parsed = parse_zones(fc(feat(geometry)))
    assert parsed.zones == []
    assert reason in parsed.skipped[0].reason


def test_overlapping_parts_are_merged() -> None:
    overlapping = {
        "type": "MultiPolygon",
        "coordinates": [
            [[[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]],
            [[[1, 1], [3, 1], [3, 3], [1, 3], [1, 1]]],
        ],
    }
    [zone] = parse_zones(fc(feat(overlapping))).zones
    assert zone.repaired is not None
    assert zone.area.is_valid
    assert zone.area.area == pytest.approx(7.0)


def test_polygonal_drops_lines_left_by_repair() -> None:
    collection = GeometryCollection([box(0, 0, 1, 1), LineString([(2, 2), (3, 3)])])
    area = polygonal(collection)
    assert area is not None and area.equals(MultiPolygon([box(0, 0, 1, 1)]))
    assert polygonal(LineString([(0, 0), (1, 1)])) is None


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"type": "Feature"},
        {"type": "FeatureCollection"},
        fc(crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}),
    ],
)
def test_unusable_documents_are_refused(document: Any) -> None:
    with pytest.raises(GeoJSONError):
        parse_zones(document)


def test_wgs84_crs_names_are_accepted() -> None:
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    assert len(parse_zones(fc(feat(), crs=crs)).zones) == 1


def ref(code: str) -> ZoneRef:
    return ZoneRef(uuid.uuid5(uuid.NAMESPACE_URL, code), code, code.title())


def test_overlapping_zones_smallest_wins_then_lowest_code() -> None:
    index = ZoneIndex.from_zones(
        [
            (ref("district"), box(0, 0, 10, 10)),
            (ref("clinic"), box(2, 2, 4, 4)),
            (ref("b-twin"), box(6, 6, 8, 8)),
            (ref("a-twin"), box(6, 6, 8, 8)),
        ]
    )
    assert index.zone_at(3, 3) == ref("clinic")  # lat 3, lon 3
    assert index.zone_at(1, 1) == ref("district")
    assert index.zone_at(7, 7) == ref("a-twin")
    assert index.zone_at(2, 2) == ref("clinic")  # on the clinic's boundary
    assert index.zone_at(11, 5) is None
    assert index.bounds == (0.0, 0.0, 10.0, 10.0)
    assert [z.code for z in index.zones] == ["a-twin", "b-twin", "clinic", "district"]


async def test_an_index_without_a_database_cannot_reload() -> None:
    index = ZoneIndex.from_zones([(ref("a"), Polygon([(0, 0), (1, 0), (1, 1)]))])
    assert not index.empty
    with pytest.raises(RuntimeError):
        await index.reload()
