"""Shared fixtures: where the real PostgreSQL and Redis used by the tests live.

``TOT_TEST_DATABASE_URL`` names a PostgreSQL server (any database on it; each test session creates and
drops its own database there). ``TOT_TEST_REDIS_URL`` names a Redis database; tests isolate themselves
with random key prefixes, and the few that must flush use this database only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from migrations import runner as migrate
from server.app import create_app
from server.services import Services
from server.settings import Settings

DEFAULT_TEST_DATABASE_URL = "postgresql+asyncpg://tot:tot@127.0.0.1:5432/postgres"
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/9"


def pg_server_url() -> str:
    """The PostgreSQL server URL for tests (SQLAlchemy async form)."""
    return os.environ.get("TOT_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)


def redis_test_url() -> str:
    """The Redis URL for tests."""
    return os.environ.get("TOT_TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)


def redis_flush_url() -> str:
    """A second Redis database next to the test one, for the tests that must FLUSHDB: flushing the
    shared test database would wipe what concurrently running tests (other developers' runs, the
    e2e servers) keep there."""
    parts = urlsplit(redis_test_url())
    db = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{15 if db != 15 else 14}"))


# --- databases ------------------------------------------------------------------------------------


TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_pg_database(prefix: str = "tot_test", *, template: str | None = None) -> str:
    """Create an empty database on the test PostgreSQL server (a copy of the database ``template`` when
    given: nobody may be connected to it meanwhile); returns its SQLAlchemy URL.

    Fails (never skips) when the server is unreachable: the suite promises real PostgreSQL.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(pg_server_url()), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL at TOT_TEST_DATABASE_URL is unreachable ({exc}); run `make test`")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    finally:
        await conn.close()
    return make_url(pg_server_url()).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_pg_database`, disconnecting whoever is left on it."""
    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(pg_server_url()), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# --- migrated databases from templates -------------------------------------------------------------
# Migrating to head costs seconds of CPU (a second or two on a quiet core, ten and more on the shared
# CI machine), and e2e tests used to pay it for every world they built, as a `tot-dispatch migrate`
# child process. The process migrates once per dialect into a template (PostgreSQL: a database copied
# by `CREATE DATABASE ... TEMPLATE`; SQLite: a file copied); the session fixture below drops both at the
# end. The migrations themselves stay tested where they are the subject: tests/integration/
# test_migrations.py, and the `migrate` command in tests/e2e/test_cli_and_server.py.

_templates: dict[str, str] = {}
"""``"postgresql"``: the name of this process's migrated template database; ``"sqlite"``: its file."""


async def _pg_template() -> str:
    if "postgresql" not in _templates:
        url = await create_pg_database("tot_template")
        _templates["postgresql"] = str(make_url(url).database)
        await asyncio.to_thread(migrate.upgrade, url)  # alembic runs its own loop: off this one
    return _templates["postgresql"]


async def create_migrated_pg_database(prefix: str = "tot_test") -> str:
    """Like :func:`create_pg_database`, but migrated to head: a copy of this process's template database
    (migrated once). Returns its SQLAlchemy URL; drop it with :func:`drop_pg_database`."""
    template = await _pg_template()
    return await create_pg_database(prefix, template=template)


def migrated_sqlite_url(path: Path) -> str:
    """Copy this process's SQLite file migrated to head (migrated once) to ``path``; returns its
    SQLAlchemy URL. Must not be called inside an event loop (the first call migrates)."""
    if "sqlite" not in _templates:
        template = Path(tempfile.mkdtemp(prefix="tot-template-")) / "template.db"
        migrate.upgrade(f"sqlite+aiosqlite:///{template}")
        _templates["sqlite"] = str(template)
    shutil.copyfile(_templates["sqlite"], path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session", autouse=True)
async def _drop_templates() -> AsyncIterator[None]:
    """Drop the templates the session made (after every module fixture that copied them)."""
    yield
    if "postgresql" in _templates:
        conn = await asyncpg.connect(_asyncpg_dsn(pg_server_url()), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{_templates.pop("postgresql")}" WITH (FORCE)')
        finally:
            await conn.close()
    if "sqlite" in _templates:
        shutil.rmtree(Path(_templates.pop("sqlite")).parent, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg_database_url() -> AsyncIterator[str]:
    """A PostgreSQL/PostGIS database migrated to head, shared by the session, dropped at the end."""
    url = await create_migrated_pg_database()
    yield url
    await drop_pg_database(url)


@pytest.fixture(scope="session")
async def sqlite_database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An SQLite file migrated to head, shared by the session."""
    path = tmp_path_factory.mktemp("sqlite") / "tot.db"
    return await asyncio.to_thread(migrated_sqlite_url, path)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL/PostGIS."""
    name = "sqlite_database_url" if request.param == "sqlite" else "pg_database_url"
    return str(request.getfixturevalue(name))


UNLIMITED_SETTINGS: dict[str, object] = {
    "login_limit_address": "",
    "login_limit_account": "",
    "register_limit_address": "",
    "register_limit_account": "",
    "hash_queue": 10_000,
    "ws_max_per_user": 100_000,
    "ws_max_per_address": 1_000_000,
}
"""The abuse limits off (server/abuse.py): the session's app registers and signs in hundreds of accounts
from one address. Tests of the limits set them (tests/e2e/test_abuse.py)."""


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for an in-process app on ``database_url`` and the memory engine."""
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET_KEY,
        **UNLIMITED_SETTINGS,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def app_client_for(
    settings: Settings, *, now: Callable[[], dt.datetime] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to a fresh in-process app (lifespan entered) for ``settings``; ``now``:
    the app's clock for calls and planned visits (a ``ManualClock.utcnow``; default the wall clock)."""
    app = create_app(settings) if now is None else create_app(settings, now=now)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tot.test") as client:
            _APP_SERVICES[client] = app.state.services
            yield client


_APP_SERVICES: weakref.WeakKeyDictionary[httpx.AsyncClient, Services] = weakref.WeakKeyDictionary()


def services_of(client: httpx.AsyncClient) -> Services:
    """The services (``db`` engine, ``sessions``...) of the in-process app behind ``client``.

    Why tests reach the database through the app's own engine: on SQLite the embedded driver runs
    inline on the loop's thread with one connection per process (models/sqlite_driver.py). A second
    engine opened by a test on that thread is a second connection that can wait for the app's locks
    on the thread the app needs to release them: SQLAlchemy commits a ``sessions.begin()`` block in a
    task of its own (``_run_to_completion``), so the app's background writers (the outbox relay's lease
    and prune, the publisher's marker, the repair sweep) hold SQLite's write lock across one loop
    iteration, and a test's write in that iteration blocked the loop in ``busy_timeout`` for 10 s,
    then failed "database is locked". Through the app's engine the test's sessions wait in its pool
    instead, as the app's own sessions do."""
    return _APP_SERVICES[client]


@pytest.fixture(scope="session")
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process app on the session's database (both dialects, via ``database_url``)."""
    async with app_client_for(make_settings(database_url)) as http:
        yield http


@pytest.fixture
def repo_root() -> Iterator[Path]:
    """The repository's root folder."""
    yield Path(__file__).resolve().parent.parent
