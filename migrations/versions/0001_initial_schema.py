"""Initial schema: users, doctors, clinics, zones, calls and their events, offers, chat, SOS, ratings.

Geography columns are PostGIS ``geography`` with GiST indexes on PostgreSQL and WKT text on SQLite
(see models/types.py); the GiST indexes exist only on PostgreSQL.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from models.types import GeographyType, UTCDateTime

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _create_gist(name: str, table: str, column: str) -> None:
    # Spatial (KNN, ST_DWithin) queries need GiST; SQLite keeps WKT text and gets no spatial index.
    if _is_postgresql():
        op.create_index(name, table, [column], postgresql_using="gist")


def upgrade() -> None:
    if _is_postgresql():
        # Needs a superuser or a database where PostGIS is already installed (the postgis image).
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "clinics",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinics")),
        sa.UniqueConstraint("name", name=op.f("uq_clinics_name")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("full_name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "patient",
                "doctor",
                "clinic_admin",
                "dispatcher",
                "admin",
                name="user_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("email IS NOT NULL OR phone IS NOT NULL", name=op.f("ck_users_has_login")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("phone", name=op.f("uq_users_phone")),
    )
    op.create_table(
        "zones",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("area", GeographyType("MULTIPOLYGON"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_zones")),
        sa.UniqueConstraint("code", name=op.f("uq_zones_code")),
    )
    _create_gist("ix_zones_area_gist", "zones", "area")

    op.create_table(
        "calls",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=True),
        sa.Column("zone_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("location", GeographyType("POINT"), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("h3_cell", sa.String(length=16), nullable=False),
        sa.Column(
            "urgency",
            sa.Enum(
                "emergency",
                "urgent",
                "planned",
                name="call_urgency",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("specialty", sa.String(length=64), nullable=False),
        sa.Column("symptoms", sa.Text(), nullable=True),
        sa.Column("scheduled_at", UTCDateTime(), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "created",
                "searching",
                "offered",
                "assigned",
                "en_route",
                "arrived",
                "in_progress",
                "completed",
                "cancelled",
                "escalated",
                name="call_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("price_estimate", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("price_final", sa.Numeric(precision=10, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="RUB", nullable=False),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("assigned_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("lat >= -90 AND lat <= 90", name=op.f("ck_calls_lat_range")),
        sa.CheckConstraint("lon >= -180 AND lon <= 180", name=op.f("ck_calls_lon_range")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_calls_created_by_users")),
        sa.ForeignKeyConstraint(["doctor_id"], ["users.id"], name=op.f("fk_calls_doctor_id_users")),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], name=op.f("fk_calls_patient_id_users")),
        sa.ForeignKeyConstraint(
            ["zone_id"], ["zones.id"], name=op.f("fk_calls_zone_id_zones"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("created_by", "idempotency_key", name="uq_calls_idempotency"),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calls_doctor_id"), ["doctor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_h3_cell"), ["h3_cell"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index("ix_calls_status_created", ["status", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_zone_id"), ["zone_id"], unique=False)
    _create_gist("ix_calls_location_gist", "calls", "location")

    op.create_table(
        "doctor_profiles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("clinic_id", sa.Uuid(), nullable=True),
        sa.Column("licence_number", sa.String(length=64), nullable=False),
        sa.Column("specialties", sa.JSON(), nullable=False),
        sa.Column("verified", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("verified_at", UTCDateTime(), nullable=True),
        sa.Column("verified_by", sa.Uuid(), nullable=True),
        sa.Column("rating_avg", sa.Float(), nullable=True),
        sa.Column("rating_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "rating_avg IS NULL OR (rating_avg >= 1 AND rating_avg <= 5)",
            name=op.f("ck_doctor_profiles_rating_avg_range"),
        ),
        sa.CheckConstraint("rating_count >= 0", name=op.f("ck_doctor_profiles_rating_count_nonnegative")),
        sa.ForeignKeyConstraint(
            ["clinic_id"],
            ["clinics.id"],
            name=op.f("fk_doctor_profiles_clinic_id_clinics"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_doctor_profiles_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["verified_by"],
            ["users.id"],
            name=op.f("fk_doctor_profiles_verified_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_doctor_profiles")),
        sa.UniqueConstraint("licence_number", name=op.f("uq_doctor_profiles_licence_number")),
    )
    with op.batch_alter_table("doctor_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_doctor_profiles_clinic_id"), ["clinic_id"], unique=False)

    op.create_table(
        "call_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum(
                "created",
                "searching",
                "offered",
                "assigned",
                "en_route",
                "arrived",
                "in_progress",
                "completed",
                "cancelled",
                "escalated",
                name="call_event_from",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            sa.Enum(
                "created",
                "searching",
                "offered",
                "assigned",
                "en_route",
                "arrived",
                "in_progress",
                "completed",
                "cancelled",
                "escalated",
                name="call_event_to",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column(
            "actor_role",
            sa.Enum(
                "patient",
                "doctor",
                "clinic_admin",
                "dispatcher",
                "admin",
                name="call_event_actor_role",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_call_events_actor_id_users")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_events_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_events")),
    )
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.create_index("ix_call_events_call_created", ["call_id", "created_at"], unique=False)

    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("sender_id", sa.Uuid(), nullable=False),
        sa.Column("client_msg_id", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_chat_messages_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["sender_id"], ["users.id"], name=op.f("fk_chat_messages_sender_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_messages")),
        sa.UniqueConstraint("call_id", "sender_id", "client_msg_id", name="uq_chat_messages_client_msg"),
    )
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.create_index("ix_chat_messages_call_created", ["call_id", "created_at"], unique=False)

    op.create_table(
        "offers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("deadline_at", UTCDateTime(), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum(
                "pending",
                "accepted",
                "declined",
                "expired",
                "withdrawn",
                name="offer_outcome",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("radius_m", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_offers_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["doctor_id"], ["users.id"], name=op.f("fk_offers_doctor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offers")),
    )
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.create_index("ix_offers_call_created", ["call_id", "created_at"], unique=False)
        batch_op.create_index("ix_offers_doctor_created", ["doctor_id", "created_at"], unique=False)

    op.create_table(
        "ratings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("doctor_id", sa.Uuid(), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("score >= 1 AND score <= 5", name=op.f("ck_ratings_score_range")),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_ratings_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["doctor_id"], ["users.id"], name=op.f("fk_ratings_doctor_id_users")),
        sa.ForeignKeyConstraint(["patient_id"], ["users.id"], name=op.f("fk_ratings_patient_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint("call_id", name=op.f("uq_ratings_call_id")),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ratings_doctor_id"), ["doctor_id"], unique=False)

    op.create_table(
        "sos_alerts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("raised_by", sa.Uuid(), nullable=False),
        sa.Column("call_id", sa.Uuid(), nullable=True),
        sa.Column(
            "kind",
            sa.Enum(
                "danger",
                "complex_call",
                "emergency",
                name="sos_kind",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "acknowledged",
                "resolved",
                name="sos_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("location", GeographyType("POINT"), nullable=True),
        sa.Column("lat", sa.Float(), nullable=True),
        sa.Column("lon", sa.Float(), nullable=True),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("acknowledged_at", UTCDateTime(), nullable=True),
        sa.Column("acknowledged_by", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.Uuid(), nullable=True),
        sa.Column("resolution_note", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["acknowledged_by"], ["users.id"], name=op.f("fk_sos_alerts_acknowledged_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_sos_alerts_call_id_calls"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["raised_by"], ["users.id"], name=op.f("fk_sos_alerts_raised_by_users")),
        sa.ForeignKeyConstraint(["resolved_by"], ["users.id"], name=op.f("fk_sos_alerts_resolved_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sos_alerts")),
    )
    with op.batch_alter_table("sos_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sos_alerts_call_id"), ["call_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sos_alerts_raised_by"), ["raised_by"], unique=False)
        batch_op.create_index("ix_sos_alerts_status_created", ["status", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sos_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_sos_alerts_status_created")
        batch_op.drop_index(batch_op.f("ix_sos_alerts_raised_by"))
        batch_op.drop_index(batch_op.f("ix_sos_alerts_call_id"))

    op.drop_table("sos_alerts")
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_doctor_id"))

    op.drop_table("ratings")
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.drop_index("ix_offers_doctor_created")
        batch_op.drop_index("ix_offers_call_created")

    op.drop_table("offers")
    with op.batch_alter_table("chat_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_chat_messages_call_created")

    op.drop_table("chat_messages")
    with op.batch_alter_table("call_events", schema=None) as batch_op:
        batch_op.drop_index("ix_call_events_call_created")

    op.drop_table("call_events")
    with op.batch_alter_table("doctor_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doctor_profiles_clinic_id"))

    op.drop_table("doctor_profiles")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calls_zone_id"))
        batch_op.drop_index("ix_calls_status_created")
        batch_op.drop_index(batch_op.f("ix_calls_patient_id"))
        batch_op.drop_index(batch_op.f("ix_calls_h3_cell"))
        batch_op.drop_index(batch_op.f("ix_calls_doctor_id"))

    op.drop_table("calls")
    op.drop_table("zones")
    op.drop_table("users")
    op.drop_table("clinics")
