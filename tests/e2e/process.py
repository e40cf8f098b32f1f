"""Run the real ``tot-dispatch`` command as a child process on a free port, and stop it cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 30.0
CHECKOUT = Path(__file__).resolve().parents[2]
"""The checkout these tests belong to: its packages run in the child processes (below)."""


def child_environ(env: dict[str, str]) -> dict[str, str]:
    """This process's environment, ``env`` added, and the checkout first on ``PYTHONPATH``: a child runs
    from a scratch folder, where an editable install would otherwise import the packages of whichever
    checkout was installed (another worktree), not the code under test."""
    path = os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **UNLIMITED_ENV, **OFFLINE_ENV, **env}


UNLIMITED_ENV = {
    "TOT_LOGIN_LIMIT_ADDRESS": "off",
    "TOT_LOGIN_LIMIT_ACCOUNT": "off",
    "TOT_REGISTER_LIMIT_ADDRESS": "off",
    "TOT_REGISTER_LIMIT_ACCOUNT": "off",
    "TOT_HASH_QUEUE": "10000",
    "TOT_WS_MAX_PER_USER": "100000",
    "TOT_WS_MAX_PER_ADDRESS": "100000",
}
"""The abuse limits off for a test's server processes unless its ``env`` sets them: the tests sign in,
register and connect hundreds of accounts from 127.0.0.1 (tests/e2e/test_abuse.py sets its own)."""


OFFLINE_ENV = {"TOT_CONSOLE_TILE_URL": "off"}
"""Tests never reach the internet: the console's base map (OpenStreetMap's tiles by default) is off
unless a test's ``env`` points it somewhere (a local URL)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(
    args: Sequence[str], env: dict[str, str], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``tot-dispatch ARGS`` to completion and return its result (never raises on exit status)."""
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=child_environ(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class RunningServer:
    """A server child process; ``url`` is its base URL, ``log`` its combined output file."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_server(
    args: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    *,
    health_status: int = 200,
    port: int | None = None,
) -> Iterator[RunningServer]:
    """Start ``tot-dispatch ARGS --port <free>`` and wait until ``/v1/health`` answers.

    ``port``: listen there instead (a server restarted where its clients reconnect). Raises
    ``RuntimeError`` with the process output when it exits or does not answer in time.
    """
    port = port or free_port()
    log = cwd / f"server-{port}.log"
    with log.open("ab") as sink:  # a restart on the same port appends to the same log
        process = subprocess.Popen(
            [sys.executable, "-m", "server", *args, "--port", str(port)],
            env=child_environ(env),
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, f"http://127.0.0.1:{port}", port, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/v1/health", timeout=1).status_code == health_status:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become healthy:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def kill_hard(server: RunningServer) -> None:
    """``kill -9`` the server and reap it: no shutdown hook runs, nothing is flushed, its sockets drop."""
    if server.process.poll() is None:
        server.process.kill()
    server.process.wait(timeout=10)
