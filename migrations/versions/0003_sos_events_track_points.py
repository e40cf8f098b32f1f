"""SOS audit trail (``sos_events``) and doctors' tracks on calls (``track_points``).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.types import GeographyType, UTCDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sos_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sos_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_role", sa.String(length=32), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_sos_events_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["sos_id"], ["sos_alerts.id"], name=op.f("fk_sos_events_sos_id_sos_alerts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sos_events")),
    )
    with op.batch_alter_table("sos_events", schema=None) as batch_op:
        batch_op.create_index("ix_sos_events_sos_created", ["sos_id", "created_at"], unique=False)
    op.create_table(
        "track_points",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("accuracy_m", sa.Float(), nullable=True),
        sa.Column("location", GeographyType("POINT"), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_track_points_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["doctor_id"], ["users.id"], name=op.f("fk_track_points_doctor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_track_points")),
    )
    with op.batch_alter_table("track_points", schema=None) as batch_op:
        batch_op.create_index("ix_track_points_call_ts", ["call_id", "ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("track_points", schema=None) as batch_op:
        batch_op.drop_index("ix_track_points_call_ts")
    op.drop_table("track_points")
    with op.batch_alter_table("sos_events", schema=None) as batch_op:
        batch_op.drop_index("ix_sos_events_sos_created")
    op.drop_table("sos_events")
