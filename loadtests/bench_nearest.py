"""Benchmark of the nearest-available search and of position upserts, all engines in one run.

Run ``python -m loadtests.bench_nearest`` (``--help`` for options; ``--sizes 2000 --queries 200`` for
a quick run). For each fleet size it loads the same doctors into:

- the memory engine (``MemoryLocationIndex`` + ``MemoryDoctorStates``);
- the Redis engine (``RedisLocationIndex`` + ``RedisDoctorStates``, under a unique key prefix that is
  deleted at the end);
- PostGIS: a table in a scratch database (created and dropped on the ``--database-url`` server) with
  a GiST index, queried by KNN (``ORDER BY geog <-> point LIMIT k``) with the same filters;
- the naive Redis query: ``GEOSEARCH ... BYRADIUS 5 km ASC COUNT 10`` over every doctor, then the
  states and specialties of those 10 read in one pipeline and filtered (so it often returns fewer
  than 10 and misses closer qualifying doctors; its recall is reported).

and runs the same queries (k=10 within ``--radius-m``, a specialty filter, a 60 s freshness limit)
one at a time from one client, reporting p50/p99 latency, agreement with the memory engine's exact
answer, position upserts per second, and the ratios between engines. Doctors are spread uniformly
over Moscow's raion polygons read from ``--districts`` (the shared data folder; nothing is copied into
the repository), or over the 55.55-55.92 N, 37.35-37.85 E box when that file is absent.

Latencies are wall-clock and include each client library's own CPU; this machine has 2 shared cores,
so Redis, PostgreSQL and this process compete: compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from shapely import contains_xy, prepare, union_all
from shapely.geometry import shape
from sqlalchemy.engine import make_url

from dispatch.doctor_states import DoctorStates
from dispatch.doctor_states_memory import MemoryDoctorStates
from dispatch.doctor_states_redis import RedisDoctorStates
from geo.cells import GEOMETRY
from geo.location_index import DoctorPosition, LocationIndex
from geo.location_index_memory import MemoryLocationIndex
from geo.location_index_redis import RedisLocationIndex
from models.enums import DoctorStatus
from realtime.keys import Keys

DEFAULT_DISTRICTS = Path("/work/shared/data/moscow-districts/moscow_raiony_clickthathood.geojson")
MOSCOW_BOX = (55.55, 37.35, 55.92, 37.85)  # south, west, north, east

SPECIALTY_WEIGHTS = {
    "therapist": 0.55,
    "pediatrician": 0.25,
    "neurologist": 0.07,
    "cardiologist": 0.05,
    "surgeon": 0.04,
    "otolaryngologist": 0.04,
}
QUERY_SPECIALTIES = {"therapist": 0.7, "pediatrician": 0.3}
STATUS_WEIGHTS = {
    DoctorStatus.AVAILABLE: 0.6,
    DoctorStatus.BUSY: 0.25,
    DoctorStatus.OFFERED: 0.05,
    DoctorStatus.PAUSED: 0.1,
}
MAX_AGE_MS = 60_000
STALE_SHARE = 0.1  # doctors whose last fix is older than MAX_AGE_MS


@dataclass(frozen=True)
class Doctor:
    doctor_id: str
    lat: float
    lon: float
    ts_ms: int
    status: DoctorStatus
    specialties: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    lat: float
    lon: float
    specialty: str


@dataclass
class Timing:
    """Latencies in ms of one engine at one size, and how many answers agreed with the exact one."""

    name: str
    latencies_ms: list[float]
    agree: int = 0
    compared: int = 0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- data ---------------------------------------------------------------------------------------------


def area_sampler(
    path: Path, rnd: random.Random
) -> tuple[Callable[[], tuple[float, float]], str, tuple[float, float, float, float]]:
    """A function drawing uniform points over Moscow, a description of the area, its bounding box
    ``(south, west, north, east)``."""
    if path.exists():
        features = json.loads(path.read_text())["features"]
        area = union_all([shape(f["geometry"]) for f in features])
        prepare(area)
        west, south, east, north = area.bounds

        def draw() -> tuple[float, float]:
            while True:
                lon, lat = rnd.uniform(west, east), rnd.uniform(south, north)
                if contains_xy(area, lon, lat):
                    return lat, lon

        return draw, f"{len(features)} Moscow raion polygons from {path}", (south, west, north, east)
    south, west, north, east = MOSCOW_BOX

    def draw_box() -> tuple[float, float]:
        return rnd.uniform(south, north), rnd.uniform(west, east)

    return draw_box, f"the box {MOSCOW_BOX} ({path} not found)", MOSCOW_BOX


def make_doctors(
    n: int, draw: Callable[[], tuple[float, float]], rnd: random.Random, now: int
) -> list[Doctor]:
    specs, spec_w = list(SPECIALTY_WEIGHTS), list(SPECIALTY_WEIGHTS.values())
    statuses, status_w = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
    doctors = []
    for i in range(n):
        lat, lon = (round(x, 7) for x in draw())
        chosen = {rnd.choices(specs, spec_w)[0]}
        if rnd.random() < 0.25:
            chosen.add(rnd.choices(specs, spec_w)[0])
        age = (
            rnd.uniform(MAX_AGE_MS, 10 * MAX_AGE_MS) if rnd.random() < STALE_SHARE else rnd.uniform(0, 30_000)
        )
        doctors.append(
            Doctor(
                f"doc-{i:06d}",
                lat,
                lon,
                now - int(age),
                rnd.choices(statuses, status_w)[0],
                tuple(sorted(chosen)),
            )
        )
    return doctors


def make_queries(n: int, draw: Callable[[], tuple[float, float]], rnd: random.Random) -> list[Query]:
    names, weights = list(QUERY_SPECIALTIES), list(QUERY_SPECIALTIES.values())
    return [Query(*draw(), rnd.choices(names, weights)[0]) for _ in range(n)]


def moved(doctors: Sequence[Doctor], rnd: random.Random, now: int) -> list[DoctorPosition]:
    """Every doctor's next fix: up to ~30 m from the last one (a second of driving), fresh, with the
    precision a phone sends (7 decimals of a degree, heading and speed to 0.1)."""
    return [
        DoctorPosition(
            d.doctor_id,
            round(d.lat + rnd.uniform(-0.00027, 0.00027), 7),
            round(d.lon + rnd.uniform(-0.00045, 0.00045), 7),
            8.0,
            now,
            round(rnd.uniform(0, 359), 1),
            round(rnd.uniform(0, 15), 1),
        )
        for d in doctors
    ]


# --- engines ------------------------------------------------------------------------------------------


async def timed(
    name: str, queries: Sequence[Query], run: Callable[[Query], Awaitable[list[str]]]
) -> tuple[Timing, list[list[str]]]:
    """Run every query once, sequentially; per-query wall-clock latency."""
    for q in queries[:20]:  # warm-up: script loading, connection set-up, caches
        await run(q)
    gc.collect()
    latencies, answers = [], []
    for q in queries:
        started = time.perf_counter()
        answer = await run(q)
        latencies.append((time.perf_counter() - started) * 1e3)
        answers.append(answer)
    return Timing(name, latencies), answers


async def load_engine(
    index: LocationIndex, states: DoctorStates, doctors: Sequence[Doctor], batch: int, parallel: int
) -> None:
    """Profiles and states first (doctors come on shift), then the positions."""
    for start in range(0, len(doctors), parallel):
        chunk = doctors[start : start + parallel]
        await asyncio.gather(*(index.set_specialties(d.doctor_id, d.specialties) for d in chunk))
        await asyncio.gather(
            *(
                states.compare_and_set(d.doctor_id, expected=DoctorStatus.OFFLINE, new=DoctorStatus.AVAILABLE)
                for d in chunk
            )
        )
        await asyncio.gather(
            *(
                states.compare_and_set(
                    d.doctor_id,
                    expected=DoctorStatus.AVAILABLE,
                    new=d.status,
                    ref=f"ref-{d.doctor_id}"
                    if d.status in (DoctorStatus.OFFERED, DoctorStatus.BUSY)
                    else None,
                )
                for d in chunk
                if d.status != DoctorStatus.AVAILABLE
            )
        )
    positions = [DoctorPosition(d.doctor_id, d.lat, d.lon, 6.0, d.ts_ms) for d in doctors]
    for start in range(0, len(positions), batch):
        await index.upsert_many(positions[start : start + batch])


async def upsert_rate(index: LocationIndex, positions: Sequence[DoctorPosition], batch: int) -> float:
    """Positions per second through ``upsert_many`` in batches of ``batch`` (one call per tick)."""
    gc.collect()
    started = time.perf_counter()
    for start in range(0, len(positions), batch):
        await index.upsert_many(positions[start : start + batch])
    return len(positions) / (time.perf_counter() - started)


async def geoadd_rate(
    redis: aioredis.Redis, key: str, positions: Sequence[DoctorPosition], batch: int
) -> float:
    """Reference ceiling: bare pipelined GEOADD of the same batches (no exact position, no cells)."""
    gc.collect()
    started = time.perf_counter()
    for start in range(0, len(positions), batch):
        async with redis.pipeline(transaction=False) as pipe:
            for p in positions[start : start + batch]:
                pipe.geoadd(key, (p.lon, p.lat, p.doctor_id))
            await pipe.execute()
    return len(positions) / (time.perf_counter() - started)


def exact_ids(hits: Sequence[object]) -> list[str]:
    return [h.doctor_id for h in hits]  # type: ignore[attr-defined]


# --- PostGIS ------------------------------------------------------------------------------------------

PG_QUERY = """
SELECT id FROM bench_doctors
WHERE status = 'available' AND specialties @> ARRAY[$3::text] AND ts_ms >= $4
  AND ST_DWithin(geog, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $5, false)
ORDER BY geog <-> ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography
LIMIT $6
"""

PG_UPDATE = """
UPDATE bench_doctors d SET geog = ST_SetSRID(ST_MakePoint(v.lon, v.lat), 4326)::geography, ts_ms = v.ts
FROM unnest($1::text[], $2::float8[], $3::float8[], $4::bigint[]) AS v(id, lon, lat, ts)
WHERE d.id = v.id
"""


async def pg_open(url: str) -> tuple[asyncpg.Connection, asyncpg.Connection, str]:
    """Create a scratch database with PostGIS on the server of ``url``; ``(admin, conn, name)``."""
    base = make_url(url).set(drivername="postgresql")
    name = f"tot_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base.render_as_string(hide_password=False), timeout=10)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(base.set(database=name).render_as_string(hide_password=False), timeout=10)
    await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return admin, conn, name


async def pg_load(conn: asyncpg.Connection, doctors: Sequence[Doctor]) -> None:
    await conn.execute("DROP TABLE IF EXISTS bench_doctors")
    await conn.execute(
        "CREATE TABLE bench_doctors (id text PRIMARY KEY, status text NOT NULL, specialties text[] NOT NULL,"
        " ts_ms bigint NOT NULL, lat float8, lon float8, geog geography(Point, 4326))"
    )
    await conn.copy_records_to_table(
        "bench_doctors",
        records=[(d.doctor_id, d.status.value, list(d.specialties), d.ts_ms, d.lat, d.lon) for d in doctors],
        columns=["id", "status", "specialties", "ts_ms", "lat", "lon"],
    )
    await conn.execute("UPDATE bench_doctors SET geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography")
    await conn.execute("CREATE INDEX bench_doctors_geog ON bench_doctors USING gist (geog)")
    await conn.execute("ANALYZE bench_doctors")


async def pg_upsert_rate(conn: asyncpg.Connection, positions: Sequence[DoctorPosition], batch: int) -> float:
    gc.collect()
    started = time.perf_counter()
    for start in range(0, len(positions), batch):
        chunk = positions[start : start + batch]
        await conn.execute(
            PG_UPDATE,
            [p.doctor_id for p in chunk],
            [p.lon for p in chunk],
            [p.lat for p in chunk],
            [p.ts_ms for p in chunk],
        )
    return len(positions) / (time.perf_counter() - started)


# --- one size -----------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    timings: list[Timing]
    rates: dict[str, float]


async def bench_size(args: argparse.Namespace, n: int, draw: Callable[[], tuple[float, float]]) -> SizeResult:
    rnd = random.Random(args.seed + n)
    now = int(time.time() * 1000)
    doctors = make_doctors(n, draw, rnd, now - 1_000)
    queries = make_queries(args.queries, draw, rnd)
    next_fixes = moved(doctors, rnd, now)
    clock = lambda: now  # noqa: E731 - one frozen engine time: freshness is identical for every engine
    radius, k = args.radius_m, args.k
    timings: list[Timing] = []
    rates: dict[str, float] = {}

    # Memory engine.
    mem_index = MemoryLocationIndex(clock=clock)
    mem_states = MemoryDoctorStates(clock=clock, index=mem_index)
    await load_engine(mem_index, mem_states, doctors, args.batch, 1_000)

    async def mem_query(q: Query) -> list[str]:
        hits = await mem_index.nearest_available(
            q.lat, q.lon, radius_m=radius, k=k, specialty=q.specialty, max_age_ms=MAX_AGE_MS
        )
        return exact_ids(hits)

    mem_timing, truth = await timed("memory engine", queries, mem_query)
    mem_timing.agree = mem_timing.compared = len(queries)
    timings.append(mem_timing)
    print(f"  memory engine: {mem_timing.pct(0.5):.3f} / {mem_timing.pct(0.99):.3f} ms", flush=True)

    # Redis engine and naive GEOSEARCH over the same Redis keys.
    pool = aioredis.BlockingConnectionPool.from_url(args.redis_url, max_connections=64, timeout=60)
    redis = aioredis.Redis(connection_pool=pool)
    keys = Keys(prefix=f"bench:{uuid.uuid4().hex[:8]}:")
    try:
        red_index = RedisLocationIndex(redis, keys, clock=clock)
        red_states = RedisDoctorStates(redis, keys, clock=clock)
        await load_engine(red_index, red_states, doctors, args.batch, 500)

        async def redis_query(q: Query) -> list[str]:
            hits = await red_index.nearest_available(
                q.lat, q.lon, radius_m=radius, k=k, specialty=q.specialty, max_age_ms=MAX_AGE_MS
            )
            return exact_ids(hits)

        red_timing, answers = await timed("redis engine", queries, redis_query)
        red_timing.compared = len(queries)
        red_timing.agree = sum(a == t for a, t in zip(answers, truth, strict=True))
        timings.append(red_timing)
        print(f"  redis engine: {red_timing.pct(0.5):.3f} / {red_timing.pct(0.99):.3f} ms", flush=True)

        geo_key = keys.loc_geo()

        async def geosearch_only(q: Query) -> list[str]:
            found = await redis.execute_command(
                "GEOSEARCH",
                geo_key,
                "FROMLONLAT",
                q.lon,
                q.lat,
                "BYRADIUS",
                radius / 1000,
                "km",
                "ASC",
                "COUNT",
                k,
            )
            return [m.decode() for m in found]

        async def geosearch_filtered(q: Query) -> list[str]:
            found = await geosearch_only(q)
            async with redis.pipeline(transaction=False) as pipe:
                for doctor_id in found:
                    pipe.hmget(keys.loc_doctor(doctor_id), ["st", "specs"])
                    pipe.get(keys.loc_position(doctor_id))
                replies = await pipe.execute()
            kept = []
            for i, doctor_id in enumerate(found):
                (st, specs), value = replies[2 * i], replies[2 * i + 1]
                if st != b"available" or specs is None or q.specialty not in specs.decode().split():
                    continue
                if value is None or int(value.split(b" ", 1)[0]) < now - MAX_AGE_MS:
                    continue
                kept.append(doctor_id)
            return kept

        raw_timing, _ = await timed("GEOSEARCH 5 km COUNT 10 (alone)", queries, geosearch_only)
        timings.append(raw_timing)
        naive_timing, naive_answers = await timed(
            "GEOSEARCH 5 km COUNT 10 + filter", queries, geosearch_filtered
        )
        naive_timing.compared = len(queries)
        naive_timing.agree = sum(a == t for a, t in zip(naive_answers, truth, strict=True))
        timings.append(naive_timing)
        print(
            f"  naive GEOSEARCH + filter: {naive_timing.pct(0.5):.3f} / {naive_timing.pct(0.99):.3f} ms",
            flush=True,
        )

        rates["memory engine upsert_many"] = await upsert_rate(mem_index, next_fixes, args.batch)
        rates["redis engine upsert_many (1 call per batch)"] = await upsert_rate(
            red_index, next_fixes, args.batch
        )
        rates["redis bare pipelined GEOADD (reference)"] = await geoadd_rate(
            redis, keys.loc_geo() + ":bare", next_fixes, args.batch
        )
    finally:
        names = [key async for key in redis.scan_iter(match=f"{keys.prefix}*", count=5_000)]
        for start in range(0, len(names), 5_000):
            await redis.delete(*names[start : start + 5_000])
        await redis.aclose()
        await pool.aclose()

    # PostGIS.
    if not args.skip_postgis:
        admin, conn, name = await pg_open(args.database_url)
        try:
            await pg_load(conn, doctors)
            statement = await conn.prepare(PG_QUERY)

            async def pg_query(q: Query) -> list[str]:
                rows = await statement.fetch(q.lon, q.lat, q.specialty, now - MAX_AGE_MS, radius, k)
                return [r["id"] for r in rows]

            pg_timing, pg_answers = await timed("PostGIS KNN (GiST)", queries, pg_query)
            pg_timing.compared = len(queries)
            pg_timing.agree = sum(a == t for a, t in zip(pg_answers, truth, strict=True))
            timings.append(pg_timing)
            print(f"  PostGIS: {pg_timing.pct(0.5):.3f} / {pg_timing.pct(0.99):.3f} ms", flush=True)
            rates["postgis batch UPDATE (reference)"] = await pg_upsert_rate(conn, next_fixes, args.batch)
        finally:
            await conn.close()
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    return SizeResult(n, timings, rates)


# --- report -------------------------------------------------------------------------------------------


def report(results: Sequence[SizeResult], args: argparse.Namespace, area: str) -> None:
    print()
    print(
        f"nearest-available: k={args.k}, radius {args.radius_m:.0f} m, specialty {QUERY_SPECIALTIES}, "
        f"freshness {MAX_AGE_MS // 1000} s; {args.queries} queries per engine, one client, sequential"
    )
    print(f"doctors: uniform over {area}; status {dict((s.value, w) for s, w in STATUS_WEIGHTS.items())}; ")
    print(f"         {STALE_SHARE:.0%} stale; specialties {SPECIALTY_WEIGHTS} (+25% have a second)")
    print()
    header = f"{'doctors':>8}  {'engine':<36}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}  exact answers"
    print(header)
    print("-" * len(header))
    for res in results:
        for t in res.timings:
            agree = f"{t.agree}/{t.compared}" if t.compared else "n/a (unfiltered)"
            print(
                f"{res.size:>8}  {t.name:<36}{t.pct(0.5):>9.3f}{t.pct(0.99):>9.3f}"
                f"{statistics.fmean(t.latencies_ms):>9.3f}  {agree}"
            )
    print()
    print(f"{'doctors':>8}  {'position upserts (batches of ' + str(args.batch) + ')':<52}{'per second':>12}")
    for res in results:
        for name, rate in res.rates.items():
            print(f"{res.size:>8}  {name:<52}{rate:>12,.0f}")
    print()
    print("ratios (p50 / p99 of the other engine divided by ours):")
    for res in results:
        by = {t.name: t for t in res.timings}
        mem, red = by["memory engine"], by["redis engine"]
        pairs = [("redis engine", "memory engine")]
        pairs += [(other, "redis engine") for other in by if other not in ("memory engine", "redis engine")]
        pairs += [(other, "memory engine") for other in by if other.startswith("PostGIS")]
        for other, ours in pairs:
            o, u = by[other], {"memory engine": mem, "redis engine": red}[ours]
            print(
                f"{res.size:>8}  {other + ' vs ' + ours:<60}"
                f"x{o.pct(0.5) / u.pct(0.5):>7.2f}  x{o.pct(0.99) / u.pct(0.99):>7.2f}"
            )
        rate_mem = res.rates["memory engine upsert_many"]
        rate_red = res.rates["redis engine upsert_many (1 call per batch)"]
        print(f"{res.size:>8}  {'upserts: memory engine vs redis engine':<60}x{rate_mem / rate_red:>7.2f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_nearest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated fleet sizes")
    parser.add_argument("--queries", type=int, default=2_000, help="queries per engine and size")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--radius-m", type=float, default=5_000.0)
    parser.add_argument("--batch", type=int, default=500, help="positions per upsert_many call")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--database-url", default="postgresql+asyncpg://tot:tot@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-postgis", action="store_true")
    parser.add_argument("--districts", type=Path, default=DEFAULT_DISTRICTS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--cold-cells", action="store_true", help="do not warm the H3 cell geometry cache first"
    )
    return parser.parse_args(argv)


async def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    draw, area, box = area_sampler(args.districts, random.Random(args.seed))
    started = time.perf_counter()
    if not args.cold_cells:
        # What a server does at start-up for its service area (geo/cells.py, CellGeometry.warm).
        cells = GEOMETRY.warm(*box)
        print(f"H3 cell geometry warmed for the area: {cells} cells in {time.perf_counter() - started:.2f} s")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size} doctors ...", flush=True)
        results.append(await bench_size(args, size, draw))
    report(results, args, area)
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    asyncio.run(main())
