"""Service zones on both databases: GeoJSON import (repair, skips, idempotence, --replace), the
point-in-zone index, doctors' zone limits and the REST rules, and the real Moscow districts.

These tests run on databases of their own (one per dialect, created for this module): zones change
what the rest of the system accepts (a call outside every zone is refused), so they must not leak into
the session databases other tests share.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch import zone_import
from dispatch.zone_import import ImportReport, ZoneImportError
from dispatch.zones import ZoneIndex, warm_cells
from geo.zones import GeoJSONError
from migrations import runner
from models.repositories import zones as zone_repo
from models.zones import Zone
from tests.conftest import app_client_for, create_pg_database, drop_pg_database, make_settings, services_of
from tests.e2e.process import cli
from tests.helpers import as_cli, bearer, register, staff

MOSCOW_DIR = Path("/work/shared/data/moscow-districts")
MOSCOW_MO = MOSCOW_DIR / "moscow_municipal_mo.geojson"

# Small test shapes around lon 10, lat 50 (away from anything real); a 0.01-degree square is ~700 m wide.
SQUARE_WITH_HOLE = {
    "type": "Polygon",
    "coordinates": [
        [[10.0, 50.0], [10.1, 50.0], [10.1, 50.1], [10.0, 50.1], [10.0, 50.0]],
        [[10.04, 50.04], [10.06, 50.04], [10.06, 50.06], [10.04, 50.06], [10.04, 50.04]],
    ],
}
TWO_SQUARES = {
    "type": "MultiPolygon",
    "coordinates": [
        [[[10.2, 50.0], [10.3, 50.0], [10.3, 50.1], [10.2, 50.1], [10.2, 50.0]]],
        [[[10.4, 50.0], [10.5, 50.0], [10.5, 50.1], [10.4, 50.1], [10.4, 50.0]]],
    ],
}
# A "bow-tie": the ring crosses itself at (10.65, 50.05). Repair keeps both lobes as two triangles.
BOW_TIE = {
    "type": "Polygon",
    "coordinates": [[[10.6, 50.0], [10.7, 50.1], [10.7, 50.0], [10.6, 50.1], [10.6, 50.0]]],
}


def feature(geometry: dict[str, Any] | None, fid: Any = None, **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "Feature", "properties": properties, "geometry": geometry}
    if fid is not None:
        out["id"] = fid
    return out


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


SMALL = collection(
    feature(SQUARE_WITH_HOLE, "sq", name="Square"),
    feature(TWO_SQUARES, "mp", name="Two squares"),
    feature(BOW_TIE, "bt", name="Bow tie"),
    feature(None, "nogeo", name="Nowhere"),
    feature({"type": "Point", "coordinates": [10.0, 50.0]}, "pt"),
    feature(SQUARE_WITH_HOLE, None, name="No id"),
    feature(TWO_SQUARES, "sq", name="Same id again"),
)


def write(tmp_path: Path, document: dict[str, Any], name: str = "zones.geojson") -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(document))
    return path


# --- fixtures: a database of this module's own, per dialect ----------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def zone_db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('zones') / 'zones.db'}"
        await asyncio.to_thread(runner.upgrade, url)
        yield url
        return
    url = await create_pg_database("tot_zones")
    await asyncio.to_thread(runner.upgrade, url)
    yield url
    await drop_pg_database(url)


@pytest.fixture(scope="module")
async def zclient(zone_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client_for(make_settings(zone_db)) as http:
        yield http


@pytest.fixture(scope="module")
def sessions(zclient: httpx.AsyncClient) -> async_sessionmaker[AsyncSession]:
    """The app's own sessions (one SQLite connection per process: see tests/conftest.py services_of)."""
    return services_of(zclient).sessions


async def import_geojson_file(database_url: str, path: str | Path, **options: Any) -> ImportReport:
    """The zone import as ``tot-dispatch zones import`` runs it: in a process (here a thread and an
    event loop) of its own, beside the app."""
    return await as_cli(zone_import.import_geojson_file(database_url, path, **options))


@pytest.fixture(autouse=True)
async def no_zones(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Every test starts with no zones (doctor limits go with them)."""
    async with sessions.begin() as session:
        await session.execute(sa.delete(Zone))


async def zone_ids(sessions: async_sessionmaker[AsyncSession]) -> dict[str, uuid.UUID]:
    async with sessions() as session:
        return {z.code: z.id for z in await zone_repo.list_zones(session)}


# --- import ----------------------------------------------------------------------------------------


async def test_import_repairs_skips_and_is_idempotent(
    zone_db: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = write(tmp_path, SMALL)
    report = await import_geojson_file(zone_db, path)
    assert sorted(report.created) == ["bt", "mp", "sq"]
    assert report.updated == report.unchanged == report.removed == []
    assert report.features == 7
    assert [(s.index, s.code) for s in report.skipped] == [(3, "nogeo"), (4, "pt"), (5, None), (6, "sq")]
    reasons = [s.reason for s in report.skipped]
    assert reasons[0] == "no geometry"
    assert "'Point' is not Polygon or MultiPolygon" in reasons[1]
    assert reasons[2].startswith("no code")
    assert reasons[3] == "duplicate code (feature #0 has it)"
    assert [code for code, _ in report.repaired] == ["bt"]
    assert "Self-intersection" in report.repaired[0][1]

    async with sessions() as session:
        stored = {z.code: z for z in await zone_repo.list_zones(session)}
    assert {c: z.name for c, z in stored.items()} == {"sq": "Square", "mp": "Two squares", "bt": "Bow tie"}
    for zone in stored.values():
        assert isinstance(zone.area, MultiPolygon) and zone.area.is_valid
    assert len(stored["mp"].area.geoms) == 2
    # The bow-tie became its two triangles and kept its whole area (2 x 0.1 x 0.05 / 2 square degrees).
    assert len(stored["bt"].area.geoms) == 2
    assert stored["bt"].area.area == pytest.approx(0.005)
    # The hole survived the round trip through the database.
    assert len(stored["sq"].area.geoms[0].interiors) == 1

    # The same file again changes nothing, and ids stay.
    before = await zone_ids(sessions)
    again = await import_geojson_file(zone_db, path)
    assert again.created == again.updated == [] and sorted(again.unchanged) == ["bt", "mp", "sq"]
    assert await zone_ids(sessions) == before

    # A renamed zone and a moved zone are updated in place (same id).
    changed = collection(
        feature(SQUARE_WITH_HOLE, "sq", name="Square, renamed"),
        feature(
            {"type": "Polygon", "coordinates": [TWO_SQUARES["coordinates"][0][0]]}, "mp", name="Two squares"
        ),
        feature(BOW_TIE, "bt", name="Bow tie"),
    )
    third = await import_geojson_file(zone_db, write(tmp_path, changed, "changed.geojson"))
    assert sorted(third.updated) == ["mp", "sq"] and third.unchanged == ["bt"]
    assert await zone_ids(sessions) == before
    async with sessions() as session:
        stored = {z.code: z for z in await zone_repo.list_zones(session)}
    assert stored["sq"].name == "Square, renamed"
    assert len(stored["mp"].area.geoms) == 1


async def test_code_and_name_properties(
    zone_db: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    document = collection(
        feature(SQUARE_WITH_HOLE, None, OKTMO=45382000, NAME="Тверской", title="T"),
        feature(TWO_SQUARES, None, OKTMO="  ", NAME="Blank code"),
        feature(BOW_TIE, None, OKTMO="45000001"),
    )
    report = await import_geojson_file(
        zone_db, write(tmp_path, document), code_property="OKTMO", name_property="title"
    )
    assert sorted(report.created) == ["45000001", "45382000"]
    assert report.skipped[0].reason == "no code: property 'OKTMO' is missing or empty"
    async with sessions() as session:
        names = {z.code: z.name for z in await zone_repo.list_zones(session)}
    # The name property when present, else the code.
    assert names == {"45382000": "T", "45000001": "45000001"}


async def test_unusable_files_are_refused_whole(zone_db: str, tmp_path: Path) -> None:
    for document, message in (
        ({"type": "Feature", "geometry": SQUARE_WITH_HOLE}, "not a GeoJSON FeatureCollection"),
        (
            {**collection(feature(SQUARE_WITH_HOLE, "x")), "crs": {"properties": {"name": "EPSG:3857"}}},
            "unsupported CRS",
        ),
    ):
        with pytest.raises(GeoJSONError, match=message):
            await import_geojson_file(zone_db, write(tmp_path, document))
    (tmp_path / "broken.geojson").write_text("{not json")
    with pytest.raises(GeoJSONError, match="not valid JSON"):
        await import_geojson_file(zone_db, tmp_path / "broken.geojson")
    with pytest.raises(GeoJSONError, match="cannot read"):
        await import_geojson_file(zone_db, tmp_path / "missing.geojson")


async def test_replace_removes_other_zones_but_never_widens_a_doctor(
    zone_db: str, sessions: async_sessionmaker[AsyncSession], zclient: httpx.AsyncClient, tmp_path: Path
) -> None:
    both = write(tmp_path, collection(feature(SQUARE_WITH_HOLE, "a"), feature(TWO_SQUARES, "b")), "ab.json")
    only_a = write(tmp_path, collection(feature(SQUARE_WITH_HOLE, "a")), "a.json")
    await import_geojson_file(zone_db, both)
    ids = await zone_ids(sessions)
    doctor = uuid.UUID((await register(zclient, "doctor"))["user"]["id"])
    async with sessions.begin() as session:
        await zone_repo.set_doctor_zones(session, doctor, [ids["b"]])

    # Deleting "b" would leave the doctor with no limit, i.e. serving everywhere: refused, nothing done.
    with pytest.raises(ZoneImportError, match=r"b \(1 doctors\)"):
        await import_geojson_file(zone_db, only_a, replace=True)
    assert await zone_ids(sessions) == ids

    async with sessions.begin() as session:
        await zone_repo.set_doctor_zones(session, doctor, [ids["a"]])
    report = await import_geojson_file(zone_db, only_a, replace=True)
    assert report.removed == ["b"] and report.unchanged == ["a"]
    assert await zone_ids(sessions) == {"a": ids["a"]}

    # A replacing import that yields no zone is refused rather than emptying the table.
    with pytest.raises(ZoneImportError, match="no zone"):
        await import_geojson_file(
            zone_db, write(tmp_path, collection(feature(None, "x")), "x.json"), replace=True
        )
    assert await zone_ids(sessions) == {"a": ids["a"]}


def test_cli_import_in_a_real_process(zone_db: str, tmp_path: Path, repo_root: Path) -> None:
    env = {"TOT_DATABASE_URL": zone_db}
    path = write(tmp_path, SMALL)
    first = cli(["zones", "import", str(path)], env, repo_root)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"zones import {path}"
    assert lines[1] == "7 features: 3 created, 0 updated, 0 unchanged, 0 removed, 4 skipped, 1 repaired"
    assert any(line.startswith("  repaired bt: ") for line in lines)
    assert "  skipped feature #3 (nogeo): no geometry" in lines
    second = cli(["zones", "import", str(path)], env, repo_root)
    assert second.returncode == 0, second.stderr
    assert "3 unchanged" in second.stdout.splitlines()[1]

    bad = write(tmp_path, {"type": "Topology"}, "bad.json")
    refused = cli(["zones", "import", str(bad)], env, repo_root)
    assert refused.returncode == 2
    assert refused.stderr.strip() == "tot-dispatch: not a GeoJSON FeatureCollection"


# --- the index ------------------------------------------------------------------------------------


async def test_zone_index_lookups_holes_and_reload(
    zone_db: str, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    index = await ZoneIndex.load(sessions)
    assert index.empty and len(index) == 0 and index.bounds is None
    assert index.zone_at(50.05, 10.01) is None
    assert warm_cells(index) == 0

    await import_geojson_file(zone_db, write(tmp_path, SMALL))
    assert index.empty  # a snapshot until reloaded
    assert await index.reload() == 3
    assert not index.empty
    assert index.bounds == pytest.approx((50.0, 10.0, 50.1, 10.7))
    ids = await zone_ids(sessions)

    def code_at(lat: float, lon: float) -> str | None:
        ref = index.zone_at(lat, lon)
        if ref is not None:
            assert ref.id == ids[ref.code]
        return None if ref is None else ref.code

    assert code_at(50.02, 10.02) == "sq"
    assert code_at(50.05, 10.05) is None  # in the hole
    assert code_at(50.04, 10.05) == "sq"  # on the hole's edge: covered
    assert code_at(50.0, 10.0) == "sq"  # on the outer corner
    assert code_at(50.05, 10.25) == "mp" and code_at(50.05, 10.45) == "mp"
    assert code_at(50.05, 10.35) is None  # between the two parts
    assert code_at(50.05, 10.61) == "bt" and code_at(50.05, 10.69) == "bt"  # both lobes
    assert code_at(50.09, 10.65) is None and code_at(50.01, 10.65) is None  # the notches
    assert code_at(55.75, 37.62) is None
    assert {z.code for z in index.zones} == {"sq", "mp", "bt"}
    assert index.zone_at(50.02, 10.02) == next(z for z in index.zones if z.code == "sq")
    assert warm_cells(index) > 0
    for lat, lon in ((float("nan"), 10.0), (91.0, 10.0), (50.0, 181.0)):
        with pytest.raises(ValueError):
            index.zone_at(lat, lon)


async def test_moscow_municipal_districts(zone_db: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    if not MOSCOW_MO.exists():
        pytest.skip(f"{MOSCOW_MO} is not on this machine")
    report = await import_geojson_file(zone_db, MOSCOW_MO, code_property="OKTMO", name_property="NAME")
    assert len(report.created) == 146 and report.skipped == []
    index = await ZoneIndex.load(sessions)
    assert len(index) == 146
    south, west, north, east = index.bounds or (0, 0, 0, 0)
    assert (south, west, north, east) == pytest.approx((55.14217, 36.8031, 56.02122, 37.96743), abs=1e-4)
    for (lat, lon), name in {
        (55.752, 37.617): "Тверской",  # the Kremlin, in the centre (ЦАО)
        (55.7601, 37.6186): "Тверской",  # the Bolshoi Theatre
        (55.7031, 37.5302): "Раменки",  # Moscow State University's main building
        (55.99, 37.19): "Старое Крюково",  # Zelenograd
    }.items():
        zone = index.zone_at(lat, lon)
        assert zone is not None and zone.name == name, (lat, lon, zone)
    assert index.zone_at(59.9398, 30.3146) is None  # St Petersburg
    assert index.zone_at(55.75, 38.5) is None  # east of the city
    again = await import_geojson_file(zone_db, MOSCOW_MO, code_property="OKTMO", name_property="NAME")
    assert len(again.unchanged) == 146


# --- doctors' zones ------------------------------------------------------------------------------


async def test_doctors_serving(
    zone_db: str, sessions: async_sessionmaker[AsyncSession], zclient: httpx.AsyncClient, tmp_path: Path
) -> None:
    await import_geojson_file(
        zone_db, write(tmp_path, collection(feature(SQUARE_WITH_HOLE, "a"), feature(TWO_SQUARES, "b")))
    )
    ids = await zone_ids(sessions)
    a, b = ids["a"], ids["b"]
    d = [uuid.UUID((await register(zclient, "doctor"))["user"]["id"]) for _ in range(4)]
    async with sessions.begin() as session:
        await zone_repo.set_doctor_zones(session, d[1], [a])
        await zone_repo.set_doctor_zones(session, d[2], [a, b, a])
        await zone_repo.set_doctor_zones(session, d[3], [b])
    async with sessions() as session:
        assert await zone_repo.doctors_serving(session, d, a) == {d[0], d[1], d[2]}
        assert await zone_repo.doctors_serving(session, d, b) == {d[0], d[2], d[3]}
        assert await zone_repo.doctors_serving(session, d, None) == {d[0]}
        assert await zone_repo.doctors_serving(session, [d[1], d[3]], a) == {d[1]}
        assert await zone_repo.doctors_serving(session, [], a) == set()
        assert [z.code for z in await zone_repo.get_doctor_zones(session, d[2])] == ["a", "b"]
        assert await zone_repo.get_doctor_zones(session, d[0]) == []

    # Setting replaces; an empty set lifts the limit.
    async with sessions.begin() as session:
        await zone_repo.set_doctor_zones(session, d[2], [b])
        await zone_repo.set_doctor_zones(session, d[3], [])
    async with sessions() as session:
        assert await zone_repo.doctors_serving(session, d, a) == {d[0], d[1], d[3]}

    # Unknown zones and non-doctors are refused whole.
    missing = uuid.uuid4()
    with pytest.raises(zone_repo.UnknownZones) as caught:
        async with sessions.begin() as session:
            await zone_repo.set_doctor_zones(session, d[0], [a, missing])
    assert caught.value.missing == [missing]
    patient = uuid.UUID((await register(zclient, "patient"))["user"]["id"])
    with pytest.raises(zone_repo.NoSuchDoctor):
        async with sessions.begin() as session:
            await zone_repo.set_doctor_zones(session, patient, [a])
    async with sessions() as session:
        assert await zone_repo.get_doctor_zones(session, d[0]) == []

    # Deleting a zone deletes the limits naming it (the database cascades).
    async with sessions.begin() as session:
        await zone_repo.delete_zones(session, [b])
    async with sessions() as session:
        assert await zone_repo.get_doctor_zones(session, d[2]) == []


# --- REST ----------------------------------------------------------------------------------------


async def test_rest_list_zones(zone_db: str, zclient: httpx.AsyncClient, tmp_path: Path) -> None:
    patient = await register(zclient)
    headers = bearer(patient["tokens"]["access_token"])
    empty = await zclient.get("/v1/zones", headers=headers)
    assert empty.status_code == 200 and empty.json() == {"items": []}
    await import_geojson_file(zone_db, write(tmp_path, SMALL))

    assert (await zclient.get("/v1/zones")).status_code == 401
    body = (await zclient.get("/v1/zones", headers=headers)).json()
    assert [z["code"] for z in body["items"]] == ["bt", "mp", "sq"]
    square = body["items"][2]
    assert square["name"] == "Square"
    assert square["bbox"] == pytest.approx([10.0, 50.0, 10.1, 50.1])
    assert square["area"]["type"] == "MultiPolygon"
    exterior, hole = square["area"]["coordinates"][0]
    assert len(exterior) == 5 and len(hole) == 5
    uuid.UUID(square["id"])

    in_box = await zclient.get("/v1/zones?bbox=10.15,49.9,10.45,50.2", headers=headers)
    assert [z["code"] for z in in_box.json()["items"]] == ["mp"]
    nowhere = await zclient.get("/v1/zones?bbox=30,59,31,60", headers=headers)
    assert nowhere.json()["items"] == []
    for bad in ("1,2,3", "a,b,c,d", "10,50,9,51", "0,-91,1,0", "nan,1,2,3"):
        refused = await zclient.get("/v1/zones", params={"bbox": bad}, headers=headers)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["field"] == "bbox"


async def test_rest_doctor_zones_access_rules(
    zone_db: str, sessions: async_sessionmaker[AsyncSession], zclient: httpx.AsyncClient, tmp_path: Path
) -> None:
    await import_geojson_file(
        zone_db, write(tmp_path, collection(feature(SQUARE_WITH_HOLE, "a"), feature(TWO_SQUARES, "b")))
    )
    ids = await zone_ids(sessions)
    doctor = await register(zclient, "doctor")
    other_doctor = await register(zclient, "doctor")
    patient = await register(zclient)
    admin = await staff(zclient, zone_db, "admin")
    clinic_admin = await staff(zclient, zone_db, "clinic_admin")
    dispatcher = await staff(zclient, zone_db, "dispatcher")
    path = f"/v1/doctors/{doctor['user']['id']}/zones"

    def auth(who: dict[str, Any]) -> dict[str, str]:
        return bearer(who["tokens"]["access_token"])

    # Who may set zones: admins and clinic admins only.
    body = {"zone_ids": [str(ids["a"])]}
    for who in (doctor, other_doctor, patient, dispatcher):
        refused = await zclient.put(path, json=body, headers=auth(who))
        assert refused.status_code == 403, who["user"]["role"]
    assert (await zclient.put(path, json=body)).status_code == 401
    set_by_admin = await zclient.put(path, json=body, headers=auth(admin))
    assert set_by_admin.status_code == 200, set_by_admin.text
    assert set_by_admin.json() == {
        "doctor_id": doctor["user"]["id"],
        "serves_everywhere": False,
        "zones": [{"id": str(ids["a"]), "code": "a", "name": "a"}],
    }
    both = {"zone_ids": [str(ids["b"]), str(ids["a"])]}
    # A clinic admin sets the zones of their own clinic's doctors only.
    refused = await zclient.put(path, json=both, headers=auth(clinic_admin))
    assert refused.status_code == 403, refused.text
    clinic = await zclient.post(
        "/v1/clinics", json={"name": f"Zones {uuid.uuid4().hex[:8]}"}, headers=auth(admin)
    )
    clinic_id = clinic.json()["id"]
    appointed = await zclient.put(
        f"/v1/clinics/{clinic_id}/admins/{clinic_admin['user']['id']}", headers=auth(admin)
    )
    assert appointed.status_code == 200, appointed.text
    joined = await zclient.patch("/v1/doctors/me", json={"clinic_id": clinic_id}, headers=auth(doctor))
    assert joined.status_code == 200, joined.text
    set_by_clinic_admin = await zclient.put(path, json=both, headers=auth(clinic_admin))
    assert set_by_clinic_admin.status_code == 200
    assert [z["code"] for z in set_by_clinic_admin.json()["zones"]] == ["a", "b"]

    # Who may read them: staff, and the doctor themselves (also as "me"); not patients or other doctors.
    for who in (admin, clinic_admin, dispatcher, doctor):
        seen = await zclient.get(path, headers=auth(who))
        assert seen.status_code == 200 and [z["code"] for z in seen.json()["zones"]] == ["a", "b"]
    me = await zclient.get("/v1/doctors/me/zones", headers=auth(doctor))
    assert me.json()["doctor_id"] == doctor["user"]["id"]
    for who in (patient, other_doctor):
        assert (await zclient.get(path, headers=auth(who))).status_code == 403
    other = await zclient.get("/v1/doctors/me/zones", headers=auth(other_doctor))
    assert other.json() == {"doctor_id": other_doctor["user"]["id"], "serves_everywhere": True, "zones": []}

    # Bad input.
    unknown = str(uuid.uuid4())
    refused = await zclient.put(path, json={"zone_ids": [str(ids["a"]), unknown]}, headers=auth(admin))
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "unknown_zone"
    assert refused.json()["error"]["zone_ids"] == [unknown]
    for bad_body in ({}, {"zone_ids": ["not-a-uuid"]}, {"zone_ids": [], "doctor_id": unknown}):
        response = await zclient.put(path, json=bad_body, headers=auth(admin))
        assert response.status_code == 422, bad_body
    for missing in (f"/v1/doctors/{uuid.uuid4()}/zones", f"/v1/doctors/{patient['user']['id']}/zones"):
        assert (await zclient.put(missing, json=body, headers=auth(admin))).status_code == 404
        assert (await zclient.get(missing, headers=auth(admin))).status_code == 404
    assert (await zclient.get("/v1/doctors/xyz/zones", headers=auth(admin))).status_code == 422
    # Nothing above changed the doctor's zones.
    still = await zclient.get(path, headers=auth(admin))
    assert [z["code"] for z in still.json()["zones"]] == ["a", "b"]

    # An empty list lifts the limit.
    cleared = await zclient.put(path, json={"zone_ids": []}, headers=auth(admin))
    assert cleared.json()["serves_everywhere"] is True and cleared.json()["zones"] == []


async def test_zone_geometry_round_trips_exactly(sessions: async_sessionmaker[AsyncSession]) -> None:
    """What goes into the area column comes back with the same coordinates on both databases (the
    importer relies on this to tell an unchanged zone from a changed one)."""
    area = MultiPolygon([box(10.123456789012, 50.987654321098, 10.2, 51.0)])
    async with sessions.begin() as session:
        result = await zone_repo.upsert_zones(session, [zone_repo.ZoneData("rt", "Round trip", area)])
    assert result.created == ["rt"]
    async with sessions.begin() as session:
        result = await zone_repo.upsert_zones(session, [zone_repo.ZoneData("rt", "Round trip", area)])
    assert result.unchanged == ["rt"]
    async with sessions() as session:
        [zone] = await zone_repo.list_zones(session)
    assert zone.area.equals_exact(area, 0)
    assert zone.area.covers(Point(10.15, 50.99))
