"""A test's own ``redis-server``: started on a free port, stopped, restarted on the same port, paused.

The shared test Redis (``TOT_TEST_REDIS_URL``) must never be restarted or paused by a test: other tests
and other developers' runs use it. A fault test starts its own server with :func:`redis_server`:

    with redis_server(tmp_path) as redis:            # no persistence: a restart comes back empty
        ... servers on redis.url ...
        redis.restart(down_s=2.0)                     # crash (SIGKILL), 2 s outage, same port
        with redis.writes_paused():                   # CLIENT PAUSE WRITE: reads answer, writes wait
            ...

``aof=True`` runs it as docker-compose does (``--appendonly yes --appendfsync everysec``): a restart
then keeps what was written more than a second before the crash.

Needs the ``redis-server`` binary on PATH (Debian: ``apt-get install redis-server``; CI installs it with
the Redis service). A missing binary fails the test with that hint, never skips it.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.process import free_port

START_TIMEOUT_S = 15.0
PAUSE_CEILING_MS = 60_000  # a CLIENT PAUSE always carries a timeout: a test that dies never leaves it on


class RedisServer:
    """One ``redis-server`` child process bound to 127.0.0.1:``port``, its files in ``workdir``.

    ``aof``: append-only file with ``everysec`` fsync (else no persistence at all: no RDB, no AOF).
    Every method raises ``RuntimeError`` (with the server's log) when the server does not start.
    """

    def __init__(self, workdir: Path, *, aof: bool = False, port: int | None = None) -> None:
        self.workdir = workdir
        self.aof = aof
        self.port = port or free_port()
        self.log = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, the engine URL for the servers under test."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self) -> redis.Redis:
        """A new synchronous client (the caller closes it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers PING (and, with AOF, has loaded its file)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not on PATH (apt-get install redis-server): fault tests need their own"
            )
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        )
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",  # no RDB snapshots: without AOF a restart is a Redis that comes back empty
            *persistence,
            "--dir", str(self.workdir),
            "--dbfilename", f"dump-{self.port}.rdb",
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + START_TIMEOUT_S
        with contextlib.closing(self.client()) as probe:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.process.returncode}:\n{self.output()}"
                    )
                with contextlib.suppress(redis.RedisError, OSError):
                    if probe.ping():
                        break  # PING answers LOADING while an AOF is replayed: that raises, we retry
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on {self.port}:\n{self.output()}")
                time.sleep(0.02)

    def crash(self) -> None:
        """SIGKILL, as a crashed or killed Redis: nothing is flushed (AOF keeps what ``everysec`` had
        written). A no-op when not running."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)  # a frozen server still dies of SIGKILL, but tidily
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """A clean stop (SIGTERM; without AOF nothing is kept anyway)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, down_s: float = 0.0) -> float:
        """Crash the server, stay down ``down_s`` seconds, start it again on the same port.

        Returns ``time.time()`` (epoch seconds) at which it answered again. The outage is wall time on
        purpose: the servers under test must live through a real one."""
        self.crash()
        if down_s > 0:
            time.sleep(down_s)
        self.start()
        self.restarts += 1
        return time.time()

    # --- holding commands ---------------------------------------------------------------------------

    def pause_writes(self, ms: int = PAUSE_CEILING_MS) -> None:
        """``CLIENT PAUSE <ms> WRITE``: reads are answered, every write (EVAL/EVALSHA, PUBLISH, XADD,
        SET...) of every client waits until :meth:`unpause` or ``ms`` pass. A client that disconnects
        meanwhile loses its waiting writes: they never run (what a ``kill -9`` between commit and
        publish needs)."""
        with contextlib.closing(self.client()) as c:
            c.execute_command("CLIENT", "PAUSE", str(ms), "WRITE")

    def unpause(self) -> None:
        """``CLIENT UNPAUSE``: the writes that waited run now, in order."""
        with contextlib.closing(self.client()) as c:
            c.execute_command("CLIENT", "UNPAUSE")

    @contextlib.contextmanager
    def writes_paused(self, ms: int = PAUSE_CEILING_MS) -> Iterator[None]:
        """Writes wait inside the block (see :meth:`pause_writes`)."""
        self.pause_writes(ms)
        try:
            yield
        finally:
            self.unpause()

    def freeze(self) -> None:
        """SIGSTOP: the server answers nothing (reads too) until :meth:`thaw`; connections stay open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill_pubsub(self) -> int:
        """``CLIENT KILL TYPE pubsub``: drop every connection in pub/sub mode (sharded subscribers
        included), as a network blip would; the servers' brokers reconnect and resync every channel.
        Returns how many connections were dropped. Not a write: answered during :meth:`pause_writes`."""
        with contextlib.closing(self.client()) as c:
            return int(c.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))

    # --- inspection ---------------------------------------------------------------------------------

    def dbsize(self) -> int:
        with contextlib.closing(self.client()) as c:
            return int(c.dbsize())

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def redis_server(workdir: Path, *, aof: bool = False) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` in ``workdir`` (a folder of its own), stopped at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = RedisServer(workdir, aof=aof)
    server.start()
    try:
        yield server
    finally:
        server.crash()
