"""Notifications (issue 19): ``notifications``, their throttle and preferences, Telegram links, link
tokens and handled updates; ``users.language`` and quiet hours; ``outbox.notified_ms``.

Outbox rows already there are marked notified (history is not announced again).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUSES = ("queued", "sending", "sent", "failed", "suppressed")


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language", sa.String(length=8), server_default="ru", nullable=False))
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("quiet_start_min", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("quiet_end_min", sa.Integer(), nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notified_ms", sa.BigInteger(), nullable=True))
    op.execute("UPDATE outbox SET notified_ms = created_ms")
    op.create_index(
        "ix_outbox_unnotified",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("notified_ms IS NULL"),
        sqlite_where=sa.text("notified_ms IS NULL"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                *STATUSES, name="notification_status", native_enum=False, create_constraint=True, length=32
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("next_attempt_ms", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("sent_ms", sa.BigInteger(), nullable=True),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("read_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["users.id"],
            name=op.f("fk_notifications_person_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("event_id", "person_id", "channel", name="uq_notifications_event_person_channel"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_ms"],
        unique=False,
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
        sqlite_where=sa.text("status IN ('queued', 'sending')"),
    )
    op.create_index("ix_notifications_person", "notifications", ["person_id", "id"], unique=False)
    op.create_index(
        "ix_notifications_call",
        "notifications",
        ["call_id"],
        unique=False,
        postgresql_where=sa.text("call_id IS NOT NULL"),
        sqlite_where=sa.text("call_id IS NOT NULL"),
    )
    op.create_table(
        "notify_throttle",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("next_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_notify_throttle")),
    )
    op.create_table(
        "notify_preferences",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["users.id"],
            name=op.f("fk_notify_preferences_person_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "kind", "channel", name=op.f("pk_notify_preferences")),
    )
    op.create_table(
        "telegram_links",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("linked_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["users.id"], name=op.f("fk_telegram_links_person_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_telegram_links")),
        sa.UniqueConstraint("chat_id", name=op.f("uq_telegram_links_chat_id")),
    )
    op.create_table(
        "telegram_link_tokens",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["users.id"],
            name=op.f("fk_telegram_link_tokens_person_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_telegram_link_tokens")),
    )
    op.create_table(
        "telegram_updates",
        sa.Column("update_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("update_id", name=op.f("pk_telegram_updates")),
    )
    op.create_index(
        op.f("ix_telegram_updates_received_ms"), "telegram_updates", ["received_ms"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_telegram_updates_received_ms"), table_name="telegram_updates")
    op.drop_table("telegram_updates")
    op.drop_table("telegram_link_tokens")
    op.drop_table("telegram_links")
    op.drop_table("notify_preferences")
    op.drop_table("notify_throttle")
    op.drop_index("ix_notifications_call", table_name="notifications")
    op.drop_index("ix_notifications_person", table_name="notifications")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_outbox_unnotified", table_name="outbox")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("notified_ms")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("quiet_end_min")
        batch_op.drop_column("quiet_start_min")
        batch_op.drop_column("time_zone")
        batch_op.drop_column("language")
