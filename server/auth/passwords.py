"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters as the library's defaults)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the login names no user, so a missing account takes as long as a wrong password
# (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("tot-dispatch-dummy-password")


def hash_password(password: str) -> str:
    """An argon2id hash string for ``password`` (salted; never equal for two calls)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; ``None`` spends the same time and is False."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
