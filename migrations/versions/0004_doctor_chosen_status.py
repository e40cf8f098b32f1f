"""The availability each doctor last chose: ``doctor_profiles.chosen_status`` and ``chosen_status_at``.

The live engine (Redis or memory) is a cache rebuilt from the database when it is lost; a doctor's chosen
availability is the one part of a doctor's live state that no call or offer implies, so it is persisted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("doctor_profiles", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chosen_status", sa.String(length=16), server_default="offline", nullable=False)
        )
        batch_op.add_column(sa.Column("chosen_status_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("doctor_profiles", schema=None) as batch_op:
        batch_op.drop_column("chosen_status_at")
        batch_op.drop_column("chosen_status")
