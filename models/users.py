"""Accounts: one row per person who logs in, whatever their role."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, enum_column, timestamp_default_now, uuid_pk
from models.enums import Role, values


class User(Base):
    """A person with a login. At least one of ``email`` and ``phone`` is set; both are unique.

    ``email`` is stored lower-cased; ``phone`` in E.164 form (``+`` and digits). ``password_hash`` is an
    argon2id hash (never the password).
    """

    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint("email IS NOT NULL OR phone IS NOT NULL", name="has_login"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str | None] = mapped_column(sa.String(254), unique=True)
    phone: Mapped[str | None] = mapped_column(sa.String(20), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    full_name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(enum_column(values(Role), "user_role"))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    created_at: Mapped[dt.datetime] = timestamp_default_now()
