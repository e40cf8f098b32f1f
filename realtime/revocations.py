"""Revocations: per user, the lowest token version the server still accepts, held in the live engine.

Every token carries its account's token version (claim ``ver``, server/auth/tokens.py); disabling,
re-enabling, a role change and logout raise the account's version in the database, which is the truth
(``users.token_version``, models/users.py :func:`~models.users.valid_from`). This role is its cache,
shared by every process on Redis: a request's token is checked against it, and a miss (never seen, the
entry's TTL passed, the engine was flushed or restarted) is answered from the database and written
back (server/auth/access.py). An entry therefore never has to survive the engine: losing it costs one
database read, never a revoked token let in.

Contract (both implementations): ``raise_to`` merges by maximum (an older value written late, by a
reader that read the database before a revocation committed, cannot lower what a revocation wrote) and
holds the entry ``ttl_ms`` from the write; ``valid_from`` is the held value, or ``None`` when nothing
is held. User ids follow :func:`realtime.keys.check_user_id`; versions are integers >= 0. Times are
epoch milliseconds from the instance's ``clock``.
"""

from __future__ import annotations

import abc

from realtime.keys import REVOCATION_TTL_MS, check_user_id


def validate_version(version: int) -> int:
    """Return ``version`` if it is an ``int`` >= 0, else raise ``ValueError``."""
    if type(version) is not int or version < 0:
        raise ValueError(f"invalid token version {version!r}")
    return version


class Revocations(abc.ABC):
    """The lowest accepted token version per user. Implementations: ``MemoryRevocations`` and
    ``RedisRevocations``."""

    ttl_ms: int = REVOCATION_TTL_MS

    @abc.abstractmethod
    async def valid_from(self, user_id: str) -> int | None:
        """The lowest token version held for ``user_id``, or ``None`` when none is held (ask the
        database). Raises ``ValueError`` for a bad user id."""

    @abc.abstractmethod
    async def raise_to(self, user_id: str, version: int) -> int:
        """Hold at least ``version`` for ``user_id`` (merged by maximum) for ``ttl_ms`` from now;
        returns the version held afterwards. Raises ``ValueError`` for a bad user id or version."""

    async def aclose(self) -> None:  # noqa: B027  (optional: nothing to release by default)
        """Release resources (nothing by default)."""


def check_args(user_id: str, version: int | None = None) -> None:
    """Raise ``ValueError`` for a bad user id or version (the implementations' shared validation)."""
    check_user_id(user_id)
    if version is not None:
        validate_version(version)
