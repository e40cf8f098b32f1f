"""Wall-clock time in epoch milliseconds, the unit every engine role uses for due times and expiry.

Engine roles take a ``clock`` so that tests can drive time by hand; production passes nothing and gets
:func:`wall_clock_ms`. Processes sharing Redis are assumed NTP-synchronised: their clocks differ by
milliseconds, while the engine's horizons (offer deadlines, history age, presence TTL) are seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]
"""A function returning the current time in epoch milliseconds."""


def wall_clock_ms() -> int:
    """The current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000
