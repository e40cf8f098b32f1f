"""Booking reminders (issue 20): ``visit_bookings.reminders_sent``, how many of the visit's reminders
(T - 24 h, then T - 2 h) were staged: 0 none, 1 the first, 2 both. A reschedule sets it again from the
new time; the reminder scan raises it with a conditional UPDATE in the transaction that stages the
reminder's outbox event, so each reminder is staged once however many processes scan.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("visit_bookings") as batch:
        batch.add_column(sa.Column("reminders_sent", sa.SmallInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("visit_bookings") as batch:
        batch.drop_column("reminders_sent")
