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
    argon2id hash (never the password). ``token_version`` is carried by every token issued to the user
    (claim ``ver``); disabling, re-enabling, a role change and logout raise it, which revokes every token
    issued before (:func:`valid_from`, server/auth/access.py).
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
    token_version: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    # Notifications (server/notify/): the language of their texts ("ru" or "en"), and quiet hours
    # (minutes after local midnight in ``time_zone``, an IANA name; both None: no quiet hours).
    language: Mapped[str] = mapped_column(sa.String(8), default="ru", server_default="ru")
    time_zone: Mapped[str | None] = mapped_column(sa.String(64))
    quiet_start_min: Mapped[int | None] = mapped_column(sa.Integer)
    quiet_end_min: Mapped[int | None] = mapped_column(sa.Integer)
    # False only while a self-registered phone awaits its SMS code (server/phone_confirm.py): such an
    # account may not sign in. Every other account (CLI, demo, e-mail only, older rows) is True.
    phone_confirmed: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    created_at: Mapped[dt.datetime] = timestamp_default_now()


DELETED_VALID_FROM = 2**62
"""The lowest token version still accepted for an account that no longer exists: none is."""


def valid_from(token_version: int | None, is_active: bool) -> int:
    """The lowest token ``ver`` still accepted for an account: its ``token_version`` when active, one more
    when disabled (nothing issued so far; re-enabling raises the version to it), and
    :data:`DELETED_VALID_FROM` for a deleted account (``token_version`` None). Never goes down for one
    account over time, which lets caches merge it by maximum."""
    if token_version is None:
        return DELETED_VALID_FROM
    return token_version if is_active else token_version + 1
