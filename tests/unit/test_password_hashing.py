"""Password hashing runs on the hashing threads, not on the event loop (found by the replay's set-up:
each registration's argon2 hash stalled every socket of the server for its 0.1-0.4 s)."""

from __future__ import annotations

import threading
from typing import Any

from server.auth import passwords


async def test_hashing_and_verifying_run_off_the_event_loop(monkeypatch: Any) -> None:
    threads: list[str] = []
    hasher = passwords._hasher

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
