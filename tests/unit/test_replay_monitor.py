"""Watching a run: the server's process metrics parsed from /metrics, the client's warnings counted."""

from __future__ import annotations

import logging

from loadtests.replay.monitor import count_client_warnings, parse_process_metrics
from loadtests.replay.recorder import Recorder

METRICS = """# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
process_resident_memory_bytes 1.2345e+08
tot_ws_connections 3.0
"""


def test_process_metrics_are_read_from_the_prometheus_page() -> None:
    assert parse_process_metrics(METRICS) == (12.5, 123_450_000.0)
    assert parse_process_metrics("tot_ws_connections 3.0\n") is None


def test_client_warnings_are_counted_while_inside_and_printed_again_after() -> None:
    recorder = Recorder()
    logger = logging.getLogger("tot.client")
    with count_client_warnings(recorder):
        for _ in range(3):
            logger.warning("server refused a frame: %s", "rate_limited: too many location frames; slow down")
        logger.warning("reconnect failed: %r", TimeoutError())
    assert recorder.errors == {
        "client:server refused a frame: rate_limited: too many location frames": 3,
        "client:reconnect failed: TimeoutError": 1,
    }
    assert logger.propagate and not logger.handlers
