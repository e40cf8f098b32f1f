"""The route of a call and its length, on SQLite and on PostgreSQL/PostGIS: the same answer."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import uuid

import httpx

from geo.distance import haversine_m
from geo.route import route_length_m
from models.db import make_engine, make_sessionmaker
from models.repositories.track import Fix, add_fixes
from tests.helpers import as_cli, bearer, new_call, register, staff


async def _call_with_track(database_url: str, patient_id: str, points: list[tuple[float, float]]) -> str:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            call = new_call(patient_id, *points[-1], status="completed", address="Route street 1")
            session.add(call)
            await session.flush()
            start = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
            fixes = [
                Fix(call.id, uuid.UUID(patient_id), start + dt.timedelta(seconds=i), lat, lon, 5.0)
                for i, (lat, lon) in enumerate(points)
            ]
            assert await add_fixes(session, fixes) == len(points)
        return str(call.id)
    finally:
        await engine.dispose()


async def test_route_geojson_and_length_agree_on_both_databases(
    client: httpx.AsyncClient, database_url: str
) -> None:
    patient = await register(client)
    # A drive through Moscow: north along a meridian, then east, then a diagonal (about 6.5 km).
    points = [(55.75 + 0.002 * i, 37.60) for i in range(16)]
    points += [(points[-1][0], 37.60 + 0.004 * i) for i in range(1, 11)]
    points += [(points[-1][0] - 0.001 * i, points[-1][1] + 0.0015 * i) for i in range(1, 8)]
    # Written as another process would (tests/helpers.py as_cli): the app's SQLite connection is busy.
    call_id = await as_cli(_call_with_track(database_url, patient["user"]["id"], points))
    dispatcher = await staff(client, database_url, "dispatcher")
    response = await client.get(
        f"/v1/calls/{call_id}/route", headers=bearer(dispatcher["tokens"]["access_token"])
    )
    assert response.status_code == 200
    route = response.json()
    assert route["geometry"]["type"] == "LineString"
    assert route["geometry"]["coordinates"][0] == [37.60, 55.75]  # GeoJSON is lon, lat
    assert route["properties"]["points"] == len(points)
    length = route["properties"]["length_m"]
    expected = route_length_m(points)
    # PostGIS (on PostgreSQL) and GeographicLib (here) measure the same ellipsoidal length.
    assert math.isclose(length, expected, abs_tol=0.01), (
        route["properties"]["measured_by"],
        length,
        expected,
    )
    spherical = sum(haversine_m(*a, *b) for a, b in itertools.pairwise(points))
    assert abs(length - spherical) / spherical < 0.005  # and it is the route, not something else
    assert route["properties"]["measured_by"] == (
        "postgis" if database_url.startswith("postgresql") else "geographiclib"
    )
    # The patient of the call may see it; another patient may not.
    mine = await client.get(f"/v1/calls/{call_id}/route", headers=bearer(patient["tokens"]["access_token"]))
    assert mine.status_code == 200
    other = await register(client)
    assert (
        await client.get(f"/v1/calls/{call_id}/route", headers=bearer(other["tokens"]["access_token"]))
    ).status_code == 404


def _meridian_arc_m(lat1: float, lat2: float, steps: int = 2000) -> float:
    """Meridian arc length on WGS84 by Simpson integration of the meridian radius of curvature
    M(phi) = a (1 - e^2) / (1 - e^2 sin^2 phi)^(3/2) (e.g. Snyder, Map Projections: A Working Manual,
    1987, eq. 4-18): an implementation independent of GeographicLib."""
    a, f = 6_378_137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    lo, hi = math.radians(lat1), math.radians(lat2)
    h = (hi - lo) / steps
    # float ** float is typed Any (a negative base gives a complex); these bases are positive.
    m: list[float] = [a * (1 - e2) / (1 - e2 * math.sin(lo + i * h) ** 2) ** 1.5 for i in range(steps + 1)]
    return h / 3 * (m[0] + m[-1] + 4 * sum(m[1:-1:2]) + 2 * sum(m[2:-1:2]))


def test_route_length_basics() -> None:
    assert route_length_m([]) == 0.0
    assert route_length_m([(55.0, 37.0)]) == 0.0
    # One degree of latitude at 55 N along a meridian, against the independent integral.
    assert math.isclose(
        route_length_m([(54.5, 37.0), (55.5, 37.0)]), _meridian_arc_m(54.5, 55.5), abs_tol=0.001
    )
