"""Run the Alembic migrations programmatically (the CLI, the demo and the tests use this).

It lives in ``migrations/`` (not ``models/``, its former home) because it needs this package's directory:
``migrations`` sits above ``models`` in the layer order (tests/unit/test_layers.py).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """An Alembic configuration for our migration scripts, bound to ``url`` or an open connection."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser treats % as interpolation; escape it in passwords.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``. Must not be called inside an event loop."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision``. Must not be called inside an event loop."""
    command.downgrade(alembic_config(url), revision)


async def upgrade_connection(connection: AsyncConnection, revision: str = "head") -> None:
    """Migrate through an open async connection (for callers already inside an event loop)."""
    await connection.run_sync(lambda sync: command.upgrade(alembic_config(connection=sync), revision))


async def downgrade_connection(connection: AsyncConnection, revision: str = "base") -> None:
    """Downgrade through an open async connection (for callers already inside an event loop)."""
    await connection.run_sync(lambda sync: command.downgrade(alembic_config(connection=sync), revision))


def head_revision() -> str:
    """The newest revision id in the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migration scripts found")
    return head
