"""Reading and writing user accounts."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.enums import Role
from models.users import User, valid_from


class DuplicateAccount(Exception):
    """An account with this ``field`` (``email`` or ``phone``) already exists."""

    def __init__(self, field: str) -> None:
        super().__init__(f"an account with this {field} already exists")
        self.field = field


def normalize_email(email: str | None) -> str | None:
    """Emails compare case-insensitively: store them stripped and lower-cased."""
    return email.strip().lower() if email else None


async def find_duplicate(session: AsyncSession, email: str | None, phone: str | None) -> str | None:
    """``"email"`` or ``"phone"`` if an account already uses it, else ``None``."""
    for name, column, value in (("email", User.email, email), ("phone", User.phone, phone)):
        if value is not None and await session.scalar(sa.select(User.id).where(column == value)) is not None:
            return name
    return None


async def create_user(
    session: AsyncSession,
    *,
    email: str | None,
    phone: str | None,
    password_hash: str,
    full_name: str,
    role: Role,
    language: str = "ru",
) -> User:
    """Insert a user (flushed, not committed); ``language``: of their notifications ("ru" or "en").
    Raises :class:`DuplicateAccount` when the email or phone
    is taken, including when a concurrent request took it between the check and the insert."""
    email = normalize_email(email)
    duplicate = await find_duplicate(session, email, phone)
    if duplicate is not None:
        raise DuplicateAccount(duplicate)
    user = User(
        email=email,
        phone=phone,
        password_hash=password_hash,
        full_name=full_name,
        role=role.value,
        language=language,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        text = str(exc.orig).lower()
        raise DuplicateAccount("phone" if "phone" in text else "email") from None
    return user


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this id, or ``None``."""
    return await session.get(User, user_id)


async def find_by_login(session: AsyncSession, login: str) -> User | None:
    """The user whose email (case-insensitive) or phone equals ``login``, or ``None``."""
    login = login.strip()
    if "@" in login:
        return await session.scalar(sa.select(User).where(User.email == login.lower()))
    return await session.scalar(sa.select(User).where(User.phone == login))


async def full_names(session: AsyncSession, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The full name of each of ``user_ids`` that exists (one query; at most a few hundred ids)."""
    if not user_ids:
        return {}
    rows = await session.execute(sa.select(User.id, User.full_name).where(User.id.in_(user_ids)))
    return {user_id: name for user_id, name in rows.all()}


async def access_state(session: AsyncSession, user_id: uuid.UUID) -> tuple[int, bool] | None:
    """``(token_version, is_active)`` of the user, or ``None`` when there is no such user (one query)."""
    row = (
        await session.execute(sa.select(User.token_version, User.is_active).where(User.id == user_id))
    ).first()
    return None if row is None else (int(row[0]), bool(row[1]))


async def revoke_tokens(
    session: AsyncSession, user: User, *, is_active: bool | None = None, role: Role | None = None
) -> int:
    """Raise ``user.token_version`` by one, with the account's new ``is_active`` and ``role`` when given
    (flushed, not committed): every token issued to the user before is revoked. Returns the lowest token
    version accepted from now on (:func:`models.users.valid_from`)."""
    values: dict[str, object] = {"token_version": User.token_version + 1}
    if is_active is not None:
        values["is_active"] = is_active
    if role is not None:
        values["role"] = role.value
    row = (
        await session.execute(
            sa.update(User)
            .where(User.id == user.id)
            .values(**values)
            .returning(User.token_version, User.is_active)
        )
    ).one()
    await session.refresh(user)
    return valid_from(int(row[0]), bool(row[1]))
