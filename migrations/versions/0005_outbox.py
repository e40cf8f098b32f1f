"""The transactional outbox (``outbox``) and its relay lease (``outbox_relay_lease``).

Domain events are written in the transaction of the change they announce and published after the
commit; a relay publishes what a crash left behind (models/outbox.py, dispatch/outbox_relay.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("published_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_ms IS NULL"),
        sqlite_where=sa.text("published_ms IS NULL"),
    )
    op.create_index(
        "ix_outbox_published",
        "outbox",
        ["published_ms"],
        unique=False,
        postgresql_where=sa.text("published_ms IS NOT NULL"),
        sqlite_where=sa.text("published_ms IS NOT NULL"),
    )
    op.create_table(
        "outbox_relay_lease",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_relay_lease")),
    )


def downgrade() -> None:
    op.drop_table("outbox_relay_lease")
    op.drop_index("ix_outbox_published", table_name="outbox")
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    op.drop_table("outbox")
