"""Pace: how fast one provider may be called from this process.

Two limits keep a bot within Telegram's (about one message a second per chat, 30 a second per bot):

- **per address** (a chat): shared by every process through the database (``notify_throttle``,
  ``models.repositories.notifications.take_throttle``), taken in the transaction that marks a row
  ``sending``; the sender reschedules a row whose address is not free yet;
- **per provider**: :class:`RateGate`, a token bucket per process (``rate_per_s`` tokens a second, as
  many at most). With N processes the provider sees up to N times the rate; a provider's 429 is
  honoured all the same (``retry_after``), and ``TOT_TELEGRAM_RATE`` can be set to the bot's limit
  divided by the number of processes.

Time comes from the injectable clock (epoch ms), so tests drive both with ``tests/clock.py``.
"""

from __future__ import annotations

import math

from realtime.clock import Clock


class RateGate:
    """A token bucket: ``rate_per_s`` sends a second on average, bursts of up to ``burst`` (default
    the rate, at least 1). :meth:`wait_ms` says how long until a token; :meth:`take` spends one;
    :meth:`pause_until` holds every send until an instant (a provider-wide ``retry_after``)."""

    def __init__(self, rate_per_s: float, clock: Clock, burst: float | None = None) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate_per_ms = rate_per_s / 1000
        self.capacity = max(1.0, burst if burst is not None else rate_per_s)
        self.clock = clock
        self._tokens = self.capacity
        self._at_ms = clock()
        self._paused_until_ms = 0

    def _refill(self, now_ms: int) -> None:
        if now_ms > self._at_ms:
            self._tokens = min(self.capacity, self._tokens + (now_ms - self._at_ms) * self.rate_per_ms)
            self._at_ms = now_ms

    def wait_ms(self) -> int:
        """Milliseconds until a send may go (0: now)."""
        now = self.clock()
        self._refill(now)
        paused = max(0, self._paused_until_ms - now)
        if self._tokens >= 1:
            return paused
        return max(paused, math.ceil((1 - self._tokens) / self.rate_per_ms))

    def take(self) -> None:
        """Spend a token (the caller checked :meth:`wait_ms`)."""
        self._refill(self.clock())
        self._tokens -= 1

    def pause_until(self, until_ms: int) -> None:
        self._paused_until_ms = max(self._paused_until_ms, until_ms)
