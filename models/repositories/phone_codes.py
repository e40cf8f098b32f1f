"""Reading and writing phone confirmation codes (``models/phone_codes.py``) and the accounts they
confirm. Every function runs in the caller's session and transaction; none commits. Times are epoch
milliseconds.

The tries are conditional UPDATEs, so two requests racing on one code never both count as its one
use, and wrong tries are counted exactly even when they arrive together.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from models.phone_codes import PhoneCode
from models.users import User


def _count(result: sa.Result[object]) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


async def by_phone(session: AsyncSession, phone: str) -> User | None:
    """The account with this E.164 ``phone``, or None."""
    return await session.scalar(sa.select(User).where(User.phone == phone))


async def drop_unconfirmed(session: AsyncSession, phone: str | None, email: str | None) -> int:
    """Delete the accounts holding ``phone`` or ``email`` (lower-cased) that never confirmed their phone:
    they never had tokens, so nothing refers to them but their code, which cascades. Returns how many."""
    held = [column == value for column, value in ((User.phone, phone), (User.email, email)) if value]
    if not held:
        return 0
    result = await session.execute(sa.delete(User).where(User.phone_confirmed.is_(False), sa.or_(*held)))
    return _count(result)


async def put_code(
    session: AsyncSession, person_id: uuid.UUID, code_hash: str, now_ms: int, expires_ms: int
) -> None:
    """Make ``code_hash`` the account's one code (replacing an earlier one: its tries start again)."""
    await session.execute(sa.delete(PhoneCode).where(PhoneCode.person_id == person_id))
    session.add(
        PhoneCode(person_id=person_id, code_hash=code_hash, sent_ms=now_ms, expires_ms=expires_ms, attempts=0)
    )
    await session.flush()


async def live_code(
    session: AsyncSession, person_id: uuid.UUID, now_ms: int, max_attempts: int
) -> PhoneCode | None:
    """The account's code when it can still be tried: unused, unexpired, under ``max_attempts`` wrong
    tries; else None."""
    return await session.scalar(
        sa.select(PhoneCode).where(
            PhoneCode.person_id == person_id,
            PhoneCode.used_ms.is_(None),
            PhoneCode.expires_ms > now_ms,
            PhoneCode.attempts < max_attempts,
        )
    )


async def count_wrong(session: AsyncSession, person_id: uuid.UUID, code_hash: str, max_attempts: int) -> bool:
    """Count one wrong try against the code ``code_hash``; False when it was dead already (or replaced)."""
    result = await session.execute(
        sa.update(PhoneCode)
        .where(
            PhoneCode.person_id == person_id,
            PhoneCode.code_hash == code_hash,
            PhoneCode.used_ms.is_(None),
            PhoneCode.attempts < max_attempts,
        )
        .values(attempts=PhoneCode.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    return _count(result) == 1


async def use_code(
    session: AsyncSession, person_id: uuid.UUID, code_hash: str, now_ms: int, max_attempts: int
) -> bool:
    """Spend the code ``code_hash`` and confirm the account's phone; False when another request
    spent it first (or it died meanwhile)."""
    result = await session.execute(
        sa.update(PhoneCode)
        .where(
            PhoneCode.person_id == person_id,
            PhoneCode.code_hash == code_hash,
            PhoneCode.used_ms.is_(None),
            PhoneCode.expires_ms > now_ms,
            PhoneCode.attempts < max_attempts,
        )
        .values(used_ms=now_ms)
        .execution_options(synchronize_session=False)
    )
    if _count(result) != 1:
        return False
    await session.execute(
        sa.update(User)
        .where(User.id == person_id)
        .values(phone_confirmed=True)
        .execution_options(synchronize_session=False)
    )
    return True
