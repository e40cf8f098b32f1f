"""Token bucket arithmetic."""

from __future__ import annotations

import pytest

from realtime.rate_limit import Rate, TokenBucket


def test_burst_then_refill() -> None:
    bucket = TokenBucket(Rate(rate=2, burst=3), now_s=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.4)  # 0.8 token
    assert bucket.take(100.5)  # 1.0 token
    assert bucket.take(110.0) and bucket.take(110.0) and bucket.take(110.0)  # capped at the burst
    assert not bucket.take(110.0)


def test_clock_going_backwards_grants_nothing() -> None:
    bucket = TokenBucket(Rate(rate=1, burst=1), now_s=50.0)
    assert bucket.take(50.0)
    assert not bucket.take(10.0)


def test_bad_rates() -> None:
    with pytest.raises(ValueError):
        Rate(rate=0, burst=1)
    with pytest.raises(ValueError):
        Rate(rate=1, burst=0.5)
