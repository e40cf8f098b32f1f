"""Accounts, databases and zones for the benchmarks.

The people are real accounts written in bulk (no REST registration: one argon2 hash costs ~0.2 s, so
all of them share one hash of one password) and their access tokens are minted with the secret the
benchmark gives its servers, exactly as a login would. The same rows go into every target's database
(a scratch SQLite file, or a scratch PostgreSQL/PostGIS database created, migrated and dropped by the
benchmark), so one token works against every target of a run.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from shapely import contains_xy, prepare, union_all
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from sqlalchemy.engine import make_url

from dispatch.zone_import import import_geojson_file
from migrations import runner as migrate
from models.db import make_engine
from models.doctors import DoctorProfile
from models.enums import Role
from models.types import utcnow
from models.users import User
from server.auth.passwords import hash_password
from server.auth.tokens import TokenService

DOCTOR_SPECIALTIES = ("therapist", "pediatrician", "neurologist")
"""Doctor ``i`` has ``DOCTOR_SPECIALTIES[i % 3]``: a third of the fleet can take a therapist's call."""
DEFAULT_DISTRICTS = Path("/work/shared/data/moscow-districts/moscow_raiony_clickthathood.geojson")
"""Moscow's 125 raions (shared data, read in place): the service zones of the dispatch benchmarks."""
DEFAULT_PG_SERVER = "postgresql+asyncpg://tot:tot@127.0.0.1:5432/postgres"
INSERT_CHUNK = 2_000


@dataclass
class People:
    """Accounts of one role: user ids and access tokens, index for index."""

    role: Role
    ids: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Accounts:
    """Everyone a benchmark uses, and the rows that create them in a database."""

    doctors: People
    patients: People
    dispatchers: People
    users: list[dict[str, Any]]
    profiles: list[dict[str, Any]]

    def doctor_specialty(self, index: int) -> str:
        return DOCTOR_SPECIALTIES[index % len(DOCTOR_SPECIALTIES)]


def plan_accounts(tokens: TokenService, doctors: int, patients: int = 0, dispatchers: int = 0) -> Accounts:
    """Rows for ``doctors`` verified doctors (specialties cycling through :data:`DOCTOR_SPECIALTIES`),
    ``patients`` patients and ``dispatchers`` dispatchers, with their access tokens. Nothing is written."""
    password_hash = hash_password("bench-account-password")  # one hash for all: argon2 is slow on purpose
    now = utcnow()
    accounts = Accounts(People(Role.DOCTOR), People(Role.PATIENT), People(Role.DISPATCHER), [], [])
    for role, count, people in (
        (Role.DOCTOR, doctors, accounts.doctors),
        (Role.PATIENT, patients, accounts.patients),
        (Role.DISPATCHER, dispatchers, accounts.dispatchers),
    ):
        for i in range(count):
            user_id = uuid.uuid4()
            accounts.users.append(
                {
                    "id": user_id,
                    "email": f"{role.value}{i}@bench.tot",
                    "phone": None,
                    "password_hash": password_hash,
                    "full_name": f"Bench {role.value.title()} {i}",
                    "role": role.value,
                    "is_active": True,
                    "created_at": now,
                }
            )
            if role is Role.DOCTOR:
                accounts.profiles.append(
                    {
                        "user_id": user_id,
                        "clinic_id": None,
                        "licence_number": f"BENCH-{i:06d}",
                        "specialties": [DOCTOR_SPECIALTIES[i % len(DOCTOR_SPECIALTIES)]],
                        "verified": True,
                        "verified_at": now,
                        "verified_by": None,
                        "rating_avg": None,
                        "rating_count": 0,
                    }
                )
            people.ids.append(str(user_id))
            people.tokens.append(tokens.issue(user_id, role).access_token)
    return accounts


def prepare_database(database_url: str, accounts: Accounts, districts: Path | None = None) -> None:
    """Migrate the database at ``database_url``, insert ``accounts`` and, when ``districts`` is given,
    import its polygons as service zones. Call outside an event loop."""
    migrate.upgrade(database_url)
    asyncio.run(_fill(database_url, accounts, districts))


async def _fill(database_url: str, accounts: Accounts, districts: Path | None) -> None:
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            for table, rows in ((User, accounts.users), (DoctorProfile, accounts.profiles)):
                for start in range(0, len(rows), INSERT_CHUNK):
                    await conn.execute(sa.insert(table), rows[start : start + INSERT_CHUNK])
    finally:
        await engine.dispose()
    if districts is not None:
        await import_geojson_file(database_url, districts)


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_pg_database(server_url: str, prefix: str = "tot_bench") -> str:
    """Create an empty database on the PostgreSQL server of ``server_url``; returns its SQLAlchemy URL.
    The migrations add PostGIS (``CREATE EXTENSION``), as in the scale-out deployment."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_asyncpg_dsn(server_url), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_pg_database`, disconnecting whoever is left on it."""
    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(url, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True)
class ServiceArea:
    """Where calls may be placed: the union of the zones (or everything, without zones)."""

    area: BaseGeometry | None
    description: str

    def contains(self, lat: float, lon: float) -> bool:
        """Whether (lat, lon) (WGS84 degrees) lies in a zone; always True without zones."""
        return self.area is None or bool(contains_xy(self.area, lon, lat))

    def sampler(
        self, box: tuple[float, float, float, float], rnd: random.Random
    ) -> Callable[[], tuple[float, float]]:
        """Draw uniform points ``(lat, lon)`` inside both the area and ``box`` (south, west, north, east)."""
        south, west, north, east = box

        def draw() -> tuple[float, float]:
            while True:
                lat, lon = rnd.uniform(south, north), rnd.uniform(west, east)
                if self.contains(lat, lon):
                    return lat, lon

        return draw


def service_area(districts: Path | None) -> ServiceArea:
    """The union of the polygons in ``districts`` (a GeoJSON FeatureCollection); without a file, no zones."""
    if districts is None:
        return ServiceArea(None, "no zones (every point is inside)")
    features = json.loads(districts.read_text())["features"]
    area = union_all([shape(f["geometry"]) for f in features])
    prepare(area)
    return ServiceArea(area, f"{len(features)} zones from {districts}")
