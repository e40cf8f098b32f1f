"""Both deployments as real server processes, with a signed-in user of each role: SQLite with the
in-memory engine (embedded), and PostgreSQL with the Redis engine (scale-out)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from models.base import Base
from server.accounts import NewAccount, create_account
from tests.conftest import create_migrated_pg_database, drop_pg_database, migrated_sqlite_url, redis_test_url
from tests.e2e.dispatch_world import forget_engine_keys
from tests.e2e.process import RunningServer, run_server

SECRET = "deploy-secret-" + "d" * 32
PASSWORD = "deploy-password-1"
REPO = Path(__file__).resolve().parents[2]
ROLES = ("patient", "doctor", "dispatcher", "admin")
DEPLOYMENTS = ("sqlite", "postgresql")


@dataclass
class Deployment:
    """A running server of one deployment: its ``database_url`` and an access token per role."""

    kind: str
    server: RunningServer
    database_url: str
    tokens: dict[str, str]

    def row_counts(self) -> dict[str, int]:
        """Rows in every table of the schema, read straight from the database."""

        async def count() -> dict[str, int]:
            engine = create_async_engine(self.database_url)
            try:
                async with engine.connect() as conn:
                    return {
                        t.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0)
                        for t in Base.metadata.sorted_tables
                    }
            finally:
                await engine.dispose()

        return asyncio.run(count())


def create_accounts(database_url: str, accounts: list[NewAccount]) -> list[str]:
    """Create ``accounts`` as ``tot-dispatch users create`` does (the same function, in this process:
    a child process per account cost seconds each on the loaded CI machine; the command itself is tested
    in test_cli_and_server.py); returns their ids. Raises ``AccountError`` as the command fails."""

    async def create() -> list[str]:
        return [str(await create_account(database_url, account)) for account in accounts]

    return asyncio.run(create())


def _role_accounts() -> list[NewAccount]:
    """One account per role: ``users create --role R --email R@deploy.test --name R --password
    PASSWORD`` (the doctor with ``--licence DEP-1 --specialty therapist --verified``)."""
    return [
        NewAccount(
            role=role,
            email=f"{role}@deploy.test",
            full_name=role,
            password=PASSWORD,
            licence_number="DEP-1" if role == "doctor" else None,
            specialties=["therapist"] if role == "doctor" else [],
            verified=role == "doctor",
        )
        for role in ROLES
    ]


@contextlib.contextmanager
def deployment(kind: str, cwd: Path, settings: dict[str, str] | None = None) -> Iterator[Deployment]:
    """Copy a database migrated to head (tests/conftest.py's templates), create one verified doctor and
    one user of every other role (:func:`create_accounts`), start the server and sign everyone in.
    ``kind``: ``sqlite`` (memory engine) or ``postgresql`` (Redis engine); ``settings``: more ``TOT_*``
    variables for the server."""
    prefix = f"dep{uuid.uuid4().hex[:8]}:"
    if kind == "sqlite":
        database_url, engine_url = migrated_sqlite_url(cwd / "tot.db"), "memory://"
    else:
        database_url, engine_url = asyncio.run(create_migrated_pg_database("tot_deploy")), redis_test_url()
    env = {
        "TOT_SECRET_KEY": SECRET,
        "TOT_DATABASE_URL": database_url,
        "TOT_ENGINE_URL": engine_url,
        "TOT_ENGINE_PREFIX": prefix,
        # The processes run in a scratch directory: import this checkout, not whatever is installed.
        "PYTHONPATH": str(REPO),
        **(settings or {}),
    }
    try:
        create_accounts(database_url, _role_accounts())
        with run_server(["serve"], env, cwd) as server:
            tokens = {}
            for role in ROLES:
                login = {"login": f"{role}@deploy.test", "password": PASSWORD}
                response = httpx.post(f"{server.url}/v1/auth/login", json=login, timeout=10)
                assert response.status_code == 200, response.text
                tokens[role] = response.json()["tokens"]["access_token"]
            yield Deployment(kind, server, database_url, tokens)
    finally:
        if kind == "postgresql":
            asyncio.run(forget_engine_keys(prefix))
            asyncio.run(drop_pg_database(database_url))
