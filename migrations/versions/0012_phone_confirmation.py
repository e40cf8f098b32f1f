"""Phone confirmation and the dispatchers' Telegram group (issue 19): ``users.phone_confirmed``,
``phone_codes`` (hashed SMS codes), and ``notifications.person_id`` nullable for a group chat's rows
with their own UNIQUE (event, channel).

Existing accounts are confirmed (``server_default`` true).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status IN ('queued', 'sending')")
WITH_CALL = sa.text("call_id IS NOT NULL")
GROUP = sa.text("person_id IS NULL")


def _drop_partial_indexes() -> None:
    # SQLite's batch mode copies the table; its partial indexes are dropped and made again around it
    # so that their WHERE clauses survive on every SQLAlchemy version.
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_index("ix_notifications_call", table_name="notifications")


def _create_partial_indexes() -> None:
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_ms"],
        unique=False,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )
    op.create_index(
        "ix_notifications_call",
        "notifications",
        ["call_id"],
        unique=False,
        postgresql_where=WITH_CALL,
        sqlite_where=WITH_CALL,
    )


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phone_confirmed", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.create_table(
        "phone_codes",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["users.id"], name=op.f("fk_phone_codes_person_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_phone_codes")),
    )
    _drop_partial_indexes()
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("person_id", existing_type=sa.Uuid(), nullable=True)
    _create_partial_indexes()
    op.create_index(
        "uq_notifications_group_event_channel",
        "notifications",
        ["event_id", "channel"],
        unique=True,
        postgresql_where=GROUP,
        sqlite_where=GROUP,
    )


def downgrade() -> None:
    op.drop_index("uq_notifications_group_event_channel", table_name="notifications")
    op.execute("DELETE FROM notifications WHERE person_id IS NULL")
    _drop_partial_indexes()
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.alter_column("person_id", existing_type=sa.Uuid(), nullable=False)
    _create_partial_indexes()
    op.drop_table("phone_codes")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("phone_confirmed")
