"""Token buckets: a per-connection, per-op rate limit.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each frame takes one.
The classic token bucket (e.g. Tanenbaum, Computer Networks, 5.4.2); time is passed in, in seconds,
so the limiter is deterministic under test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    """``rate`` frames per second sustained, ``burst`` at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")


class TokenBucket:
    """One bucket, full at creation."""

    __slots__ = ("_rate", "_stamp", "_tokens")

    def __init__(self, rate: Rate, now_s: float) -> None:
        self._rate = rate
        self._tokens = rate.burst
        self._stamp = now_s

    def take(self, now_s: float) -> bool:
        """Take a token at time ``now_s``; False when the bucket is empty (the frame is refused)."""
        elapsed = max(0.0, now_s - self._stamp)
        self._stamp = now_s
        self._tokens = min(self._rate.burst, self._tokens + elapsed * self._rate.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
