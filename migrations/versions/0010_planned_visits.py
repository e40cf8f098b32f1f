"""Planned visits (issue 20): clinic admins and the clinic's services, doctors' schedules and the
services they offer, and visit bookings with their exclusion constraint on PostgreSQL.

``visit_bookings``: on PostgreSQL, ``EXCLUDE USING gist (doctor_id WITH =, tstzrange(held_from,
held_until) WITH &&) WHERE (active)`` makes two active bookings of one doctor with overlapping held time
impossible, whatever the application does; it needs the ``btree_gist`` extension (``=`` on a uuid in
a GiST index; a trusted extension since PostgreSQL 13, so the database's owner may create it). SQLite
has no such constraint: the booking service checks inside its one serialised connection.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.types import UTCDateTime

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXCLUSION = "ex_visit_bookings_doctor_held"


def upgrade() -> None:
    op.create_table(
        "clinic_admins",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["clinic_id"], ["clinics.id"], name=op.f("fk_clinic_admins_clinic_id_clinics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_clinic_admins_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_clinic_admins")),
    )
    op.create_index(op.f("ix_clinic_admins_clinic_id"), "clinic_admins", ["clinic_id"], unique=False)
    op.create_table(
        "clinic_services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("specialty", sa.String(length=64), nullable=False),
        sa.Column("duration_min", sa.Integer(), nullable=False),
        sa.Column("price", sa.Numeric(precision=10, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("buffer_before_min", sa.Integer(), server_default="0", nullable=False),
        sa.Column("buffer_after_min", sa.Integer(), server_default="0", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "buffer_before_min >= 0 AND buffer_after_min >= 0",
            name=op.f("ck_clinic_services_buffers_nonnegative"),
        ),
        sa.CheckConstraint(
            "duration_min > 0 AND duration_min <= 720", name=op.f("ck_clinic_services_duration_range")
        ),
        sa.CheckConstraint("price >= 0", name=op.f("ck_clinic_services_price_nonnegative")),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
            name=op.f("fk_clinic_services_clinic_id_clinics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinic_services")),
        sa.UniqueConstraint("clinic_id", "name", name="uq_clinic_services_clinic_name"),
    )
    op.create_index(op.f("ix_clinic_services_clinic_id"), "clinic_services", ["clinic_id"], unique=False)
    op.create_table(
        "doctor_schedules",
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("weekly", sa.JSON(), nullable=False),
        sa.Column("exceptions", sa.JSON(), nullable=False),
        sa.Column("min_notice_min", sa.Integer(), server_default="0", nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "daily_limit IS NULL OR daily_limit > 0", name=op.f("ck_doctor_schedules_daily_limit_positive")
        ),
        sa.CheckConstraint("min_notice_min >= 0", name=op.f("ck_doctor_schedules_notice_nonnegative")),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_doctor_schedules_doctor_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("doctor_id", name=op.f("pk_doctor_schedules")),
    )
    op.create_table(
        "doctor_services",
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_doctor_services_doctor_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["clinic_services.id"],
            name=op.f("fk_doctor_services_service_id_clinic_services"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("doctor_id", "service_id", name=op.f("pk_doctor_services")),
    )
    op.create_index(op.f("ix_doctor_services_service_id"), "doctor_services", ["service_id"], unique=False)
    op.create_table(
        "visit_bookings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("held_from", UTCDateTime(), nullable=False),
        sa.Column("held_until", UTCDateTime(), nullable=False),
        sa.Column("travel_s", sa.Integer(), server_default="0", nullable=False),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.Column("release_reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("ends_at <= held_until", name=op.f("ck_visit_bookings_held_after")),
        sa.CheckConstraint("held_from <= starts_at", name=op.f("ck_visit_bookings_held_before")),
        sa.CheckConstraint("starts_at < ends_at", name=op.f("ck_visit_bookings_visit_positive")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_visit_bookings_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["users.id"], name=op.f("fk_visit_bookings_doctor_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["clinic_services.id"], name=op.f("fk_visit_bookings_service_id_clinic_services")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_bookings")),
        sa.UniqueConstraint("call_id", name=op.f("uq_visit_bookings_call_id")),
    )
    op.create_index(
        "ix_visit_bookings_doctor_day", "visit_bookings", ["doctor_id", "local_day"], unique=False
    )
    op.create_index(
        "ix_visit_bookings_doctor_held", "visit_bookings", ["doctor_id", "held_from"], unique=False
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            f"ALTER TABLE visit_bookings ADD CONSTRAINT {EXCLUSION} EXCLUDE USING gist "
            "(doctor_id WITH =, tstzrange(held_from, held_until) WITH &&) WHERE (active)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE visit_bookings DROP CONSTRAINT IF EXISTS {EXCLUSION}")
    op.drop_index("ix_visit_bookings_doctor_held", table_name="visit_bookings")
    op.drop_index("ix_visit_bookings_doctor_day", table_name="visit_bookings")
    op.drop_table("visit_bookings")
    op.drop_index(op.f("ix_doctor_services_service_id"), table_name="doctor_services")
    op.drop_table("doctor_services")
    op.drop_table("doctor_schedules")
    op.drop_index(op.f("ix_clinic_services_clinic_id"), table_name="clinic_services")
    op.drop_table("clinic_services")
    op.drop_index(op.f("ix_clinic_admins_clinic_id"), table_name="clinic_admins")
    op.drop_table("clinic_admins")
