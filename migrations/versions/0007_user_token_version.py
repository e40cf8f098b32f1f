"""Revocation: ``users.token_version``, the version every token of the user carries (claim ``ver``).

Disabling, re-enabling, changing the role of an account and logging out raise it by one; a token
whose ``ver`` is below the account's current one (or, for a disabled account, below the next one) is
refused (server/auth/access.py). The live engine holds a cache of it (realtime/revocations.py); this
column is the truth it is rebuilt from.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_version")
