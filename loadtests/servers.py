"""Server child processes for the benchmarks: start pinned to a CPU, read their CPU and memory from
/proc, stop them; and this process's own limits and CPU.

Every benchmark under ``loadtests/`` runs the real ``python -m server serve`` (or the bare endpoint)
as a child process on a free port, pinned to one CPU, while the load generator (the benchmark itself)
is pinned to the other: on a 2-core machine each then measures its own core. Redis and PostgreSQL are
not pinned; their CPU is reported separately where the benchmark reads it.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

STARTUP_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b")


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; returns it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin(cpu: int | None) -> None:
    """Pin this process to ``cpu`` (no-op for ``None``)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def cpus_for(server_cpu: int | None, client_cpu: int | None) -> tuple[int | None, int | None]:
    """The CPUs to pin to: as given, or ``(None, None)`` (no pinning) on a machine with one CPU."""
    if len(os.sched_getaffinity(0)) < 2 or os.cpu_count() == 1:
        return None, None
    return server_cpu, client_cpu


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU (another process
    had it): ``/proc/<pid>/schedstat``."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def rss_kb(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``/proc/<pid>/status``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def own_cpu() -> float:
    """CPU seconds (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def own_wait_s() -> float:
    """Seconds this process's main thread waited for a CPU (see :func:`runqueue_wait_s`)."""
    return runqueue_wait_s(os.getpid())


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return os.getloadavg()


async def redis_cpu(redis: aioredis.Redis | None) -> float | None:
    """CPU seconds the Redis server has used (``INFO cpu``); None without a connection."""
    if redis is None:
        return None
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def delete_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (a benchmark's engine keys); returns how many."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        names = [key async for key in redis.scan_iter(match=f"{prefix}*", count=5_000)]
        for start in range(0, len(names), 5_000):
            await redis.delete(*names[start : start + 5_000])
        return len(names)
    finally:
        await redis.aclose()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A target server child process; ``name`` is the target (``memory``, ``redis``, ``bare``)."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    @property
    def bare(self) -> bool:
        return self.name == "bare"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


CHECKOUT = Path(__file__).resolve().parent.parent
"""The checkout these benchmarks belong to."""


def child_environ(env: dict[str, str]) -> dict[str, str]:
    """This process's environment, ``env`` added, and this checkout first on ``PYTHONPATH``: a server
    child runs from a scratch folder, where an editable install would import the packages of whichever
    checkout was installed, not the code being measured (a before/after comparison from two checkouts
    would measure one of them twice). The abuse limits are off unless ``env`` sets them: a benchmark's
    thousands of doctors sign in and connect from 127.0.0.1."""
    path = os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **BENCH_UNLIMITED_ENV, **env}


BENCH_UNLIMITED_ENV = {
    "TOT_LOGIN_LIMIT_ADDRESS": "off",
    "TOT_LOGIN_LIMIT_ACCOUNT": "off",
    "TOT_REGISTER_LIMIT_ADDRESS": "off",
    "TOT_REGISTER_LIMIT_ACCOUNT": "off",
    "TOT_HASH_QUEUE": "10000",
    "TOT_WS_MAX_PER_USER": "100000",
    "TOT_WS_MAX_PER_ADDRESS": "1000000",
}
"""Server settings of a benchmark's processes: no abuse limits (docs/operations.md, "Abuse limits")."""


def start_server(name: str, env: dict[str, str], workdir: Path, cpu: int | None) -> Server:
    """Start the target ``name`` on a free port, pinned to ``cpu``, with the open-file limit raised,
    and wait until it answers (raises ``RuntimeError`` if it exits or stays silent for
    :data:`STARTUP_TIMEOUT_S`). ``bare`` is ``loadtests/bare_endpoint.py``; any other name is
    ``python -m server serve`` with ``env`` added to this process's environment."""
    port = free_port()
    if name == "bare":
        command = [sys.executable, "-m", "loadtests.bare_endpoint", "--port", str(port)]
        probe = "/count"
    else:
        command = [sys.executable, "-m", "server", "serve", "--port", str(port)]
        probe = "/v1/health"
    log = workdir / f"{name}-{port}.log"

    def prepare_child() -> None:
        pin(cpu)
        raise_nofile()

    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env=child_environ(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=prepare_child,
        )
    server = Server(name, process, port, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{name} server exited with {process.returncode}:\n{server.output()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.http + probe, timeout=2).status_code == 200:
                return server
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"{name} server did not answer in {STARTUP_TIMEOUT_S:.0f} s:\n{server.output()}"
            )
        time.sleep(0.1)


def stop_server(server: Server) -> None:
    """Stop the server (SIGINT, then SIGKILL after 20 s); print what it logged at warning or above
    (the first lines; the last 40 with ``BENCH_DEBUG`` set)."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    lines = [line for line in server.log.read_text(errors="replace").splitlines() if line.strip()]
    if lines:
        print(
            f"  {server.name}: the server logged {len(lines)} lines at warning or above; the first:",
            flush=True,
        )
        for line in lines[-40:] if os.environ.get("BENCH_DEBUG") else lines[:8]:
            print(f"    {line[:200]}", flush=True)
        # The exceptions behind those lines, most frequent first (a traceback's last line).
        raised = Counter(line.strip()[:160] for line in lines if EXCEPTION_LINE.match(line))
        for line, count in raised.most_common(5):
            print(f"    x{count}: {line}", flush=True)
