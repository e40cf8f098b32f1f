"""Phone confirmation codes: the one live SMS code of an account whose phone awaits confirmation.

The code itself is never stored: ``code_hash`` is an HMAC-SHA256 of the account id and the code under
the server's secret key (``server/phone_confirm.py``), so a copy of the database cannot try the
million six-digit codes offline. Times are epoch milliseconds.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class PhoneCode(Base):
    """An account's current code (a resend replaces it). ``attempts``: wrong tries so far (at the
    limit the code is dead); ``used_ms``: when it confirmed the phone (a second use is refused);
    ``sent_ms``: when it was made (also the SMS idempotency key's stamp)."""

    __tablename__ = "phone_codes"

    person_id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    sent_ms: Mapped[int] = mapped_column(sa.BigInteger)
    expires_ms: Mapped[int] = mapped_column(sa.BigInteger)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    used_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
