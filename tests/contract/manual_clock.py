"""A clock the test moves by hand (epoch milliseconds), shared by every instance under test."""

from __future__ import annotations


class ManualClock:
    """Callable returning ``now`` (epoch ms); ``advance`` moves it forward."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` milliseconds; returns the new time."""
        self.now += ms
        return self.now
