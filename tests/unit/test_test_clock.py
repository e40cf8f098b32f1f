"""The test-only file clock (server/test_clock.py): the wall clock plus the file's offset, re-read when
the file changes; no file or an empty one is no offset."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from server.settings import load_settings
from server.test_clock import FileOffsetClock


def close(a: dt.datetime, b: dt.datetime) -> bool:
    return abs((a - b).total_seconds()) < 5


def test_the_offset_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "clock"
    clock = FileOffsetClock(path)
    assert close(clock.utcnow(), dt.datetime.now(dt.UTC)) and clock.offset() == dt.timedelta(0)
    path.write_text("72000")
    assert clock.offset() == dt.timedelta(hours=20)
    assert close(clock.utcnow(), dt.datetime.now(dt.UTC) + dt.timedelta(hours=20))
    assert clock.utcnow().tzinfo is dt.UTC
    path.write_text("-5.5")
    os.utime(path, ns=(1, 1))  # a new modification time even within the file system's resolution
    assert clock.offset() == dt.timedelta(seconds=-5.5)
    path.write_text("")
    os.utime(path, ns=(2, 2))
    assert clock.offset() == dt.timedelta(0)
    path.write_text("soon")
    os.utime(path, ns=(3, 3))
    assert clock.offset() == dt.timedelta(0)
    path.unlink()
    assert clock.offset() == dt.timedelta(0)


def test_the_setting_is_off_by_default() -> None:
    base = {"TOT_SECRET_KEY": "k" * 40}
    assert load_settings(environ=base).test_clock_file == ""
    with_file = load_settings(environ={**base, "TOT_TEST_CLOCK_FILE": "/tmp/x"})
    assert with_file.test_clock_file == "/tmp/x"
