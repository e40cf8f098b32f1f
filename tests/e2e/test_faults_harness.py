"""The fault tests' own tools work: a Redis of the test's own that restarts empty (or, with AOF, not),
pauses writes while answering reads, and server processes that die of ``kill -9`` and come back on the
same port, on Redis + PostgreSQL and on an SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.enums import Role
from realtime.faults import CRASH_FILE_ENV, arm, disarm
from tests.e2e.faults_world import deployment
from tests.e2e.process import child_environ
from tests.e2e.redis_proc import redis_server

pytestmark = pytest.mark.faults


@pytest.mark.parametrize("aof", [False, True], ids=["no-persistence", "aof"])
def test_a_restarted_redis_comes_back_empty_without_aof_and_whole_with_it(tmp_path: Path, aof: bool) -> None:
    with redis_server(tmp_path / "redis", aof=aof) as server:
        with contextlib.closing(server.client()) as c:
            c.set("kept?", "yes")
        port = server.port
        server.restart(down_s=0.2)
        assert server.port == port and server.restarts == 1
        with contextlib.closing(server.client()) as c:
            assert c.get("kept?") == (b"yes" if aof else None)


def test_paused_writes_wait_while_reads_answer(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server:
        with contextlib.closing(server.client()) as c:
            c.set("k", "before")
        done = threading.Event()

        def write() -> None:
            with contextlib.closing(server.client()) as c:
                c.set("k", "after")
            done.set()

        with server.writes_paused():
            writer = threading.Thread(target=write)
            writer.start()
            with contextlib.closing(server.client()) as c:
                assert c.get("k") == b"before"  # a read is answered during the pause
            assert not done.wait(0.3), "a write went through a CLIENT PAUSE WRITE"
        assert done.wait(5)
        writer.join()
        with contextlib.closing(server.client()) as c:
            assert c.get("k") == b"after"


def test_a_write_of_a_client_that_disconnects_during_the_pause_never_runs(tmp_path: Path) -> None:
    """What the kill -9 between commit and publish relies on: the dead process's waiting publish is
    dropped with its connection, not run when the pause ends."""
    with redis_server(tmp_path / "redis") as server:
        with server.writes_paused():
            # One attempt: redis-py retries a timed-out command by default, on new connections.
            victim = redis.Redis(
                host="127.0.0.1",
                port=server.port,
                socket_timeout=0.5,
                client_name="doomed",
                retry=Retry(NoBackoff(), 0),
            )
            with pytest.raises(redis.TimeoutError):
                victim.set("from-the-dead", "1")
            victim.close()  # the socket closes, as the kernel does for a killed process
            with contextlib.closing(server.client()) as c:  # Redis has seen the close
                deadline = time.monotonic() + 5
                while any(client.get("name") == "doomed" for client in c.client_list()):
                    assert time.monotonic() < deadline, "Redis never noticed the closed connection"
                    time.sleep(0.02)
        with contextlib.closing(server.client()) as c:
            assert c.get("from-the-dead") is None


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_servers_share_one_redis_and_one_postgresql_and_survive_a_kill_9(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis") as server,
        deployment(tmp_path, redis=server, servers=2, doctors=1, patients=1) as world,
    ):
        assert all(_healthy(s.url) for s in world.servers)
        patient = world.of_role(Role.PATIENT)[0]
        created = asyncio.run(world.city.create_call(patient, 55.75, 37.61))
        assert created.status_code == 201, created.text
        victim = world.kill9(0)
        assert victim.process.returncode == -9
        assert not _healthy(victim.url) and _healthy(world.servers[1].url)
        call = asyncio.run(world.rest("GET", f"/v1/calls/{created.json()['id']}", world.city.dispatcher, 1))
        assert call.status_code == 200  # the survivor reads what the dead one wrote
        again = world.restart_server(0)
        assert again.port == victim.port and _healthy(again.url)
        assert server.dbsize() > 0  # both servers really use the test's own Redis


def test_an_embedded_server_killed_and_restarted_on_the_same_sqlite_file(tmp_path: Path) -> None:
    with deployment(tmp_path, redis=None, servers=1, doctors=1, patients=1) as world:
        patient = world.of_role(Role.PATIENT)[0]
        created = asyncio.run(world.city.create_call(patient, 55.75, 37.61))
        assert created.status_code == 201, created.text
        port = world.kill9(0).port
        world.restart_server(0)
        assert world.servers[0].port == port
        call = asyncio.run(world.city.call(created.json()["id"]))
        assert call["id"] == created.json()["id"]


def test_a_crash_point_kills_its_process_only_once_armed(tmp_path: Path) -> None:
    armed = tmp_path / "crash-at"
    script = "from realtime.faults import crash_point\ncrash_point('outbox.committed')\nprint('alive')"

    def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script], env=child_environ(env), capture_output=True, text=True, timeout=30
        )

    assert run({}).stdout == "alive\n"  # off by default
    assert run({CRASH_FILE_ENV: str(armed)}).stdout == "alive\n"  # no file: nothing armed
    arm(str(armed), "another.point")
    assert run({CRASH_FILE_ENV: str(armed)}).stdout == "alive\n"
    arm(str(armed), "another.point", "outbox.committed")
    died = run({CRASH_FILE_ENV: str(armed)})
    assert (died.returncode, died.stdout) == (-signal.SIGKILL, "")
    disarm(str(armed))
    assert run({CRASH_FILE_ENV: str(armed)}).stdout == "alive\n"
