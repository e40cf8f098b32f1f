"""Watching a run: the server's CPU and memory (``GET /metrics``), the doctors' states, the client
library's warnings, a progress bar.

``process_cpu_seconds_total`` and ``process_resident_memory_bytes`` come from prometheus-client's
process collector on the server (Linux). Samples are taken every ``interval_s`` wall seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from tqdm import tqdm

from loadtests.replay.api import Rest
from loadtests.replay.clock import ReplayClock
from loadtests.replay.recorder import Recorder, ServerSample, UtilisationSample

_METRIC = re.compile(r"^(process_cpu_seconds_total|process_resident_memory_bytes)\s+([0-9.eE+-]+)\s*$", re.M)
DOCTOR_STATES = ("on_call", "offered", "available", "paused", "offline")
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} replay s [{elapsed}<{remaining}]{postfix}"


class HasState(Protocol):
    """Anything with a doctor app's ``state``."""

    state: str


def parse_process_metrics(text: str) -> tuple[float, float] | None:
    """(CPU seconds, resident bytes) from a Prometheus text page, or None when either is missing."""
    found = dict(_METRIC.findall(text))
    try:
        return float(found["process_cpu_seconds_total"]), float(found["process_resident_memory_bytes"])
    except KeyError:
        return None


async def poll_server(rest: Rest, clock: ReplayClock, recorder: Recorder, interval_s: float = 1.0) -> None:
    """Append a :class:`ServerSample` every ``interval_s`` until cancelled (failed polls are counted)."""
    while True:
        try:
            parsed = parse_process_metrics(await rest.text("/metrics"))
            if parsed is not None:
                recorder.server.append(ServerSample(time.monotonic(), clock.now(), *parsed))
        except Exception as exc:
            recorder.error("metrics", type(exc).__name__)
        await asyncio.sleep(interval_s)


async def sample_doctors(
    doctors: Iterable[HasState], clock: ReplayClock, recorder: Recorder, interval_s: float = 1.0
) -> None:
    """Append a :class:`UtilisationSample` (doctors per state) every ``interval_s`` until cancelled."""
    apps = list(doctors)
    while True:
        counts = Counter(app.state for app in apps)
        recorder.utilisation.append(
            UtilisationSample(clock.now(), {s: counts.get(s, 0) for s in DOCTOR_STATES})
        )
        await asyncio.sleep(interval_s)


async def watch_loop_lag(recorder: Recorder, interval_s: float = 0.1) -> None:
    """Append this process's event-loop lag (ms a ``sleep(interval_s)`` overshoots) until cancelled:
    when the load generator itself is saturated, its latencies include its own lag."""
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(interval_s)
        recorder.loop_lag_ms.append((loop.time() - before - interval_s) * 1000.0)


class _CountingHandler(logging.Handler):
    """Counts log records into the recorder's failures by their message up to the first ``;`` or ``(``."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.INFO)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        text = re.split(r"[;(]", record.getMessage(), maxsplit=1)[0].strip()
        self.recorder.error("client", text[:80])


@contextlib.contextmanager
def count_client_warnings(recorder: Recorder) -> Iterator[None]:
    """While inside, the warnings of ``realtime.client`` (frames the server refused without a ``ref``,
    such as rate-limited ``location`` frames; failed reconnects) are counted in the report instead of
    printed one by one: a loaded server makes thousands of them."""
    logger = logging.getLogger("tot.client")
    handler = _CountingHandler(recorder)
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class Progress:
    """A tqdm bar over replay seconds with the run's counters as its postfix (``enabled=False``: none)."""

    def __init__(self, total_s: float, enabled: bool, describe: Callable[[], dict[str, object]]) -> None:
        self._bar = tqdm(
            total=round(total_s),
            unit="s",
            desc="replay",
            disable=not enabled,
            bar_format=BAR_FORMAT,
        )
        self._describe = describe
        self._done = 0

    def set_description(self, text: str) -> None:
        """Change the bar's label (e.g. ``draining``)."""
        self._bar.set_description_str(text)

    def update(self, done_s: float) -> None:
        """Advance to ``done_s`` replay seconds and refresh the counters."""
        target = min(round(done_s), int(self._bar.total or 0))
        if target > self._done:
            self._bar.update(target - self._done)
            self._done = target
        self._bar.set_postfix(self._describe(), refresh=True)

    def close(self) -> None:
        """Finish the bar."""
        self._bar.close()
