"""The one test clock: time the test moves by hand, shared by everything under test.

It is a ``realtime.clock.Clock`` (a callable returning epoch milliseconds: the engine roles) and gives
the same instant as an aware UTC datetime through :meth:`ManualClock.utcnow` (the ``now=`` of the
dispatch services and the call service), so one object drives the engine and the database's times.
Time never moves by itself, and never backwards unless :meth:`set` says so.
"""

from __future__ import annotations

import datetime as dt

START_MS = 1_750_000_000_000
"""The default start: a fixed, realistic epoch-ms value (2025-06-15)."""


class ManualClock:
    """Callable returning :attr:`now` (epoch ms); :meth:`advance`, :meth:`advance_s` and :meth:`set`
    move it."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        """Move forward by ``ms`` milliseconds (>= 0); returns the new time."""
        if ms < 0:
            raise ValueError("a manual clock advances by a non-negative amount; use set() to go back")
        self.now += ms
        return self.now

    def advance_s(self, seconds: float) -> int:
        """Move forward by ``seconds`` (rounded to the millisecond); returns the new time."""
        return self.advance(round(seconds * 1000))

    def set(self, ms: int) -> int:
        """Jump to ``ms`` (epoch milliseconds, either way: a clock stepping back is a case to test)."""
        self.now = ms
        return self.now

    def utcnow(self) -> dt.datetime:
        """The current time as an aware UTC datetime (the ``now`` callable of the services)."""
        return dt.datetime.fromtimestamp(self.now / 1000, tz=dt.UTC)
