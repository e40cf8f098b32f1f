"""The demo city: ``tot-dispatch demo`` starts the replay as a child process next to the server.

The child is ``python -m server replay`` against the demo server at a watchable speed (x10: one hour
of San Francisco in six minutes), with the demo's staff accounts and a state file of the replay's
accounts next to the demo database (``tot-replay-accounts.json`` in the working directory), so a
second demo logs the doctors in instead of registering them again.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from loadtests.replay.options import ReplayOptions

DEMO_SCENARIO = "demo"
DEMO_ACCOUNTS_FILE = "tot-replay-accounts.json"


def demo_report_dir() -> Path:
    """Where the demo's replay writes its report (``loadtests/reports/<date>-demo/``)."""
    return ReplayOptions(scenario=DEMO_SCENARIO).resolved_report_dir()


def start_demo_replay(host: str, port: int, speed: float) -> subprocess.Popen[bytes]:
    """Start the replay against the demo server at ``host:port`` (a wildcard host is reached on
    127.0.0.1). It waits for the server's health check itself, so start it before serving."""
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    command = [
        sys.executable,
        "-m",
        "server",
        "replay",
        "--server",
        f"http://{reachable}:{port}",
        "--speed",
        f"{speed:g}",
        "--scenario",
        DEMO_SCENARIO,
        "--accounts",
        DEMO_ACCOUNTS_FILE,
        "--wait",
        "120",
    ]
    return subprocess.Popen(command)


def stop_demo_replay(process: subprocess.Popen[bytes]) -> None:
    """Stop the replay child (it may have ended already)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
