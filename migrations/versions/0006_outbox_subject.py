"""An outbox row's ``subject`` and ``stale_ms``: events the relay must not deliver late.

A row whose committer died before publishing it is published by the relay after the committer's lease,
possibly after newer rows of its channel. For an offer's creation that is wrong: the doctor would be
offered a call after its outcome (expired, withdrawn, their own acceptance of another) was delivered.
The relay skips a row once a newer row of its ``subject`` exists or its ``stale_ms`` has passed
(dispatch/outbox_relay.py).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("stale_ms", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_outbox_subject",
        "outbox",
        ["subject", "id"],
        unique=False,
        postgresql_where=sa.text("subject IS NOT NULL"),
        sqlite_where=sa.text("subject IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_subject", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("stale_ms")
        batch_op.drop_column("subject")
