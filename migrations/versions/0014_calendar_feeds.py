"""Doctors' calendar feeds (``calendar_feeds``): one secret ICS address per doctor, of which only the
token's SHA-256 is stored (models/calendar_feeds.py, server/routes/agenda.py); and
``visit_bookings.sequence``, how many times a visit was moved or cancelled (the feed's ``SEQUENCE``).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendar_feeds",
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_calendar_feeds_doctor_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("doctor_id", name=op.f("pk_calendar_feeds")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_calendar_feeds_token_hash")),
    )
    with op.batch_alter_table("visit_bookings") as batch:
        batch.add_column(sa.Column("sequence", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("visit_bookings") as batch:
        batch.drop_column("sequence")
    op.drop_table("calendar_feeds")
