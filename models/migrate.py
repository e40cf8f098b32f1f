"""The migration runner's former home, kept so that ``from models import migrate`` still works.

The runner moved to :mod:`migrations.runner` (``migrations`` is above ``models`` in the layer order);
this re-export is the one entry of the layer test's allow-list and goes once no caller imports it.
"""

from __future__ import annotations

from migrations.runner import (
    MIGRATIONS_DIR,
    alembic_config,
    downgrade,
    downgrade_connection,
    head_revision,
    upgrade,
    upgrade_connection,
)

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "downgrade",
    "downgrade_connection",
    "head_revision",
    "upgrade",
    "upgrade_connection",
]
