"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters as the library's defaults).

One hash costs about 0.1-0.2 s of CPU and 64 MiB (RFC 9106's second recommended option: m = 64 MiB,
t = 3, p = 4). Request handlers use the ``*_off_loop`` forms, which run it on a small pool of worker
threads (argon2-cffi releases the GIL): on the event loop every registration or login would stall every
socket of the process for that long. The pool has one thread per core, so at most that many hashes
(and 64 MiB each) are under way at once; further ones wait their turn.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_workers = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="argon2")
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


async def hash_password_off_loop(password: str) -> str:
    """:func:`hash_password` on the hashing threads (the event loop keeps serving meanwhile)."""
    return await asyncio.get_running_loop().run_in_executor(_workers, hash_password, password)


async def verify_password_off_loop(password_hash: str | None, password: str) -> bool:
    """:func:`verify_password` on the hashing threads (the event loop keeps serving meanwhile)."""
    return await asyncio.get_running_loop().run_in_executor(
        _workers, verify_password, password_hash, password
    )
