"""Crash points for the fault-injection tests: a process that dies *exactly here*, as ``kill -9`` would.

Some faults cannot be aimed at from outside: "the process died after its commit and before its publish"
is a window of microseconds on an embedded server, where there is no Redis to pause. The code marks such
a place with one line::

    crash_point("outbox.committed")   # the change is committed, its events are not published yet

and a test arms it. **Off by default, and free then**: unless the server was started with
``TOT_FAULT_CRASH_FILE`` set, :func:`crash_point` returns at once (one global read). With it set, each
call reads that file: when the file exists and names the point (whitespace-separated names), the
process sends itself ``SIGKILL`` — no ``finally``, no shutdown hook, no flush, as a power cut or the
OOM killer. The test arms the point at the moment it chooses by writing the file, so the process
starts and works normally until then, and disarms it by deleting the file (the restarted server sees
nothing to do). Never set ``TOT_FAULT_CRASH_FILE`` in production.

Points (the name says where; add one with a line here):

- ``outbox.committed`` (``dispatch/publisher.py``, ``EventPublisher.transaction``, right after the
  commit): a change and its outbox rows are committed; the committing process has not published them
  yet (the relay of a surviving or restarted process must). Used by tests/e2e/test_faults_embedded.py.

Faults on Redis need no point: the tests hold Redis writes with ``CLIENT PAUSE`` instead
(tests/e2e/redis_proc.py).

This is a base-like module: it imports nothing of ours, so every layer from ``realtime`` on may call it.
"""

from __future__ import annotations

import contextlib
import os
import signal

CRASH_FILE_ENV = "TOT_FAULT_CRASH_FILE"
"""The environment variable naming the arming file (read once, at import)."""

_crash_file: str | None = os.environ.get(CRASH_FILE_ENV) or None


def crash_point(name: str) -> None:
    """Die with ``SIGKILL`` here when the arming file names ``name`` (see the module docstring);
    otherwise return. Never raises: an unreadable file is an unarmed point."""
    if _crash_file is None:
        return
    try:
        with open(_crash_file, encoding="utf-8") as armed:
            names = armed.read().split()
    except OSError:
        return
    if name in names:
        os.kill(os.getpid(), signal.SIGKILL)


def arm(path: str, *names: str) -> None:
    """Tests: arm ``names`` for the processes started with ``TOT_FAULT_CRASH_FILE=path``."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        out.write("\n".join(names))
    os.replace(tmp, path)  # atomic: a process never reads half a name


def disarm(path: str) -> None:
    """Tests: no point of ``path`` is armed any more."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
