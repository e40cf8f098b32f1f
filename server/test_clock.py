"""A test-only clock for a server run as a separate process (``TOT_TEST_CLOCK_FILE``): the wall clock
plus an offset in seconds read from a file, so that a browser test can move the server's time to a
planned visit's lead time without waiting for it. Never set it in production.

With the setting, the app's domain clock (calls, bookings, agenda, calendar feeds and the offer loop's
steps, offers and deadlines: ``create_app``'s ``now``) is this clock; the live engine (positions' ages,
presence, the socket's ``server_time``) keeps the wall clock, so a phone's fixes stay fresh. The file
holds one number, the offset in seconds (``72000``, ``-5.5``); no file, or an empty one, is 0. It is
read again whenever its modification time changes, so writing it moves the clock at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

log = logging.getLogger("tot.test_clock")


class FileOffsetClock:
    """The wall clock shifted by the offset in ``path`` (seconds); see the module's docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: int | None = None
        self._offset = dt.timedelta(0)

    def offset(self) -> dt.timedelta:
        """The current offset, re-read when the file changed. An unreadable number is logged and
        taken as 0."""
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._stamp, self._offset = None, dt.timedelta(0)
            return self._offset
        if stamp != self._stamp:
            text = self.path.read_text(encoding="utf-8").strip()
            try:
                self._offset = dt.timedelta(seconds=float(text or 0))
            except ValueError:
                log.error("test clock file holds no number", extra={"path": str(self.path)})
                self._offset = dt.timedelta(0)
            self._stamp = stamp
        return self._offset

    def utcnow(self) -> dt.datetime:
        """The shifted time, aware UTC."""
        return dt.datetime.now(dt.UTC) + self.offset()
