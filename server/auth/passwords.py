"""Password hashing with argon2id (argon2-cffi, RFC 9106 parameters as the library's defaults).

One hash costs about 0.1-0.2 s of CPU and 64 MiB (RFC 9106's second recommended option: m = 64 MiB,
t = 3, p = 4). Request handlers use the ``*_off_loop`` forms, which run it on a small pool of worker
threads (argon2-cffi releases the GIL): on the event loop every registration or login would stall every
socket of the process for that long. The pool has one thread per core; how many hashes run at once is
the request handlers' hash gate (``server/abuse.py``, ``TOT_HASH_CONCURRENCY``).

Each hash runs its four lanes (p = 4) on four threads libargon2 starts for it, so one hash can keep four
cores busy: on a two-core machine two hashes at once left the event loop one ninth of the CPU, and
``/v1/health``'s p99 rose tens of times during a login flood (loadtests/bench_login_flood.py). So the
hashing threads run at a lower priority (nice +10 on Linux, inherited by the lane threads they start):
when the event loop has work it gets the CPU first, and hashing takes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASH_NICENESS = 10
"""How much lower than the process the hashing threads run (added to the nice value, at most 19)."""


def _lower_priority() -> None:
    """The hashing threads' initializer: this thread's nice value raised by :data:`HASH_NICENESS`
    (Linux keeps one per thread; where it cannot be set the thread keeps the process's)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + HASH_NICENESS))


_hasher = PasswordHasher()
_workers = ThreadPoolExecutor(
    max_workers=os.cpu_count() or 1, thread_name_prefix="argon2", initializer=_lower_priority
)
_DUMMY_PASSWORD = "tot-dispatch-dummy-password"
_dummy: str | None = None
_dummy_lock = threading.Lock()


def _dummy_hash() -> str:
    """The hash verified against when a login names no user, so a missing account takes as long as a
    wrong password (no user enumeration by timing).

    Hashed on first use, once per process (not at import: every server and CLI process would pay one
    argon2 hash, 0.1-1 s, at start). The lock makes concurrent first calls on the hashing threads wait
    for one hash instead of each computing its own. :func:`verify_password` calls it for every login,
    known account or not, so the first login of a process pays the one hash whichever it is.
    """
    global _dummy
    if _dummy is None:
        with _dummy_lock:
            if _dummy is None:
                _dummy = _hasher.hash(_DUMMY_PASSWORD)
    return _dummy


def hash_password(password: str) -> str:
    """An argon2id hash string for ``password`` (salted; never equal for two calls)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; ``None`` spends the same time and is False.

    ``None`` (no such account) is verified against :func:`_dummy_hash`, which is computed on the first
    call of the process whatever the argument, so that call costs the same for known and unknown logins.
    """
    dummy = _dummy_hash()
    try:
        return _hasher.verify(password_hash or dummy, password) and password_hash is not None
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
