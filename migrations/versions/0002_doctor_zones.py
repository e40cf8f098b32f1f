"""Doctor zone limits: ``doctor_zones`` (doctor, zone) pairs; a doctor without rows serves every zone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "doctor_zones",
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("zone_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_doctor_zones_doctor_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name=op.f("fk_doctor_zones_zone_id_zones"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("doctor_id", "zone_id", name=op.f("pk_doctor_zones")),
    )
    with op.batch_alter_table("doctor_zones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_doctor_zones_zone_id"), ["zone_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("doctor_zones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doctor_zones_zone_id"))
    op.drop_table("doctor_zones")
