"""Password hashing runs on the hashing threads, not on the event loop (found by the replay's set-up:
each registration's argon2 hash stalled every socket of the server for its 0.1-0.4 s); the dummy hash of
unknown logins is computed on first use, not at import (every server and CLI process paid one hash)."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from argon2 import PasswordHasher

from server.auth import passwords


async def test_hashing_and_verifying_run_off_the_event_loop(monkeypatch: Any) -> None:
    threads: list[str] = []
    hasher = passwords._hasher
    passwords._dummy_hash()  # computed before recording: only the four calls below are counted

    class Recording:
        def hash(self, password: str) -> str:
            threads.append(threading.current_thread().name)
            return hasher.hash(password)

        def verify(self, password_hash: str, password: str) -> bool:
            threads.append(threading.current_thread().name)
            return hasher.verify(password_hash, password)

    monkeypatch.setattr(passwords, "_hasher", Recording())
    stored = await passwords.hash_password_off_loop("correct horse")
    assert await passwords.verify_password_off_loop(stored, "correct horse")
    assert not await passwords.verify_password_off_loop(stored, "wrong horse")
    assert not await passwords.verify_password_off_loop(None, "correct horse")  # no account: same work
    loop_thread = threading.current_thread().name
    assert len(threads) == 4 and all(t.startswith("argon2") and t != loop_thread for t in threads), threads


def _fresh_passwords_module() -> Any:
    """A new copy of ``server/auth/passwords.py`` executed now (the imported one was loaded long ago)."""
    spec = importlib.util.spec_from_file_location("fresh_passwords", passwords.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count_hashes(monkeypatch: Any, delay_s: float = 0.0) -> list[str]:
    """Every argon2 hash computed from now on, as the password hashed (``delay_s`` seconds each)."""
    hashed: list[str] = []
    real_hash = PasswordHasher.hash

    def counting(self: PasswordHasher, password: str | bytes, *, salt: bytes | None = None) -> str:
        hashed.append(str(password))
        time.sleep(delay_s)
        return real_hash(self, password, salt=salt)

    monkeypatch.setattr(PasswordHasher, "hash", counting)
    return hashed


def test_importing_the_module_does_not_hash(monkeypatch: Any) -> None:
    hashed = _count_hashes(monkeypatch)
    fresh = _fresh_passwords_module()
    assert hashed == [] and fresh._dummy is None
    fresh._workers.shutdown()


def test_an_unknown_login_verifies_against_the_dummy_hash_computed_once(monkeypatch: Any) -> None:
    hashed = _count_hashes(monkeypatch)
    fresh = _fresh_passwords_module()
    verified: list[str] = []
    real_verify = PasswordHasher.verify

    def recording(self: PasswordHasher, password_hash: str | bytes, password: str | bytes) -> bool:
        verified.append(str(password_hash))
        return real_verify(self, password_hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", recording)
    assert not fresh.verify_password(None, fresh._DUMMY_PASSWORD)  # even the dummy's own password
    assert not fresh.verify_password(None, "correct horse")
    assert hashed == [fresh._DUMMY_PASSWORD]  # hashed once, on first use
    assert verified == [fresh._dummy, fresh._dummy] and verified[0].startswith("$argon2id$")
    fresh._workers.shutdown()


def test_a_known_login_first_also_pays_the_dummy_hash(monkeypatch: Any) -> None:
    """The first login of a process costs one extra hash whether its account exists or not."""
    fresh = _fresh_passwords_module()
    stored = fresh.hash_password("correct horse")
    hashed = _count_hashes(monkeypatch)
    assert fresh.verify_password(stored, "correct horse")
    assert hashed == [fresh._DUMMY_PASSWORD]
    fresh._workers.shutdown()


async def test_concurrent_first_logins_hash_the_dummy_once(monkeypatch: Any) -> None:
    hashed = _count_hashes(monkeypatch, delay_s=0.2)  # a slow hash: the other threads arrive meanwhile
    fresh = _fresh_passwords_module()
    fresh._workers = ThreadPoolExecutor(max_workers=3, thread_name_prefix="argon2-test")
    results = await asyncio.gather(*(fresh.verify_password_off_loop(None, "x") for _ in range(3)))
    assert results == [False] * 3 and hashed == [fresh._DUMMY_PASSWORD]
    fresh._workers.shutdown()
