"""The compressed clock: replay time (the data's epoch seconds) runs ``speed`` times faster than wall time.

``--speed 60`` replays one hour of the day in one wall minute. Everything the simulated people do at a
time of the day (a fix, a call, the end of a visit) waits on this clock; what races the server's own
timers (answering an offer before its deadline) waits in wall seconds instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class ReplayClock:
    """Maps replay seconds to wall seconds. ``origin_s``: the replay time at which the clock starts;
    ``speed``: replay seconds per wall second (> 0); ``monotonic``: the wall clock (seconds)."""

    def __init__(
        self, origin_s: float, speed: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.origin_s = origin_s
        self.speed = speed
        self._monotonic = monotonic
        self._wall_origin: float | None = None

    @property
    def started(self) -> bool:
        """True once :meth:`start` was called."""
        return self._wall_origin is not None

    def start(self) -> None:
        """Replay time ``origin_s`` is now."""
        self._wall_origin = self._monotonic()

    def _origin(self) -> float:
        if self._wall_origin is None:
            raise RuntimeError("the replay clock has not started")
        return self._wall_origin

    def now(self) -> float:
        """The current replay time, epoch seconds (``origin_s`` before :meth:`start`)."""
        if self._wall_origin is None:
            return self.origin_s
        return self.origin_s + (self._monotonic() - self._wall_origin) * self.speed

    def wall_at(self, replay_s: float) -> float:
        """The wall (monotonic) time, seconds, at which replay time ``replay_s`` comes."""
        return self._origin() + (replay_s - self.origin_s) / self.speed

    def wall_until(self, replay_s: float) -> float:
        """Wall seconds from now until replay time ``replay_s`` (negative when it has passed)."""
        return self.wall_at(replay_s) - self._monotonic()

    def to_wall(self, replay_seconds: float) -> float:
        """A replay duration (seconds) in wall seconds."""
        return replay_seconds / self.speed

    async def sleep_until(self, replay_s: float) -> None:
        """Return once replay time ``replay_s`` has come (at once when it has passed)."""
        delay = self.wall_until(replay_s)
        if delay > 0:
            await asyncio.sleep(delay)

    async def sleep(self, replay_seconds: float) -> None:
        """Wait a replay duration (seconds)."""
        if replay_seconds > 0:
            await asyncio.sleep(self.to_wall(replay_seconds))
