"""nginx in front of two real server processes (scale-out: PostgreSQL and a Redis of the test's own),
with the repository's configuration (deploy/nginx/tot.conf, tests/e2e/nginx_proc.py): REST and sockets
work through it, requests spread over both processes, the servers log the client's address (not
nginx's, and not one the client made up), and a socket whose process is killed with -9 moves to the other
process and recovers what it missed by offset.

The client connects to nginx from 127.0.0.2 and nginx to the servers from 127.0.0.1, the one proxy
address the servers trust (``TOT_FORWARDED_ALLOW_IPS``), so "the client's address" is told apart from
the proxy's.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from models.enums import Role
from realtime.client import Event, TotClient
from tests.e2e.dispatch_world import PASSWORD
from tests.e2e.faults_world import Deployment, deployment
from tests.e2e.nginx_proc import RunningNginx, run_nginx
from tests.e2e.process import RunningServer, kill_hard
from tests.e2e.redis_proc import redis_server

CLIENT = "127.0.0.2"
WAIT_S = 30.0


@dataclass
class Stack:
    world: Deployment
    nginx: RunningNginx


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cwd = tmp_path_factory.mktemp("nginx")
    settings = {"TOT_LOG_LEVEL": "info", "TOT_FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with (
        redis_server(cwd / "redis") as redis,
        deployment(cwd, redis=redis, servers=2, doctors=2, patients=1, settings=settings) as world,
        run_nginx(cwd / "nginx", [s.port for s in world.servers]) as nginx,
    ):
        yield Stack(world, nginx)


def _client() -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT), timeout=30)


def _requests_served(server: RunningServer) -> float:
    """All HTTP requests a server counted (its Prometheus counter), read directly, not through nginx."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^tot_http_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE))


def test_rest_through_nginx_spreads_over_both_processes(stack: Stack) -> None:
    before = [_requests_served(s) for s in stack.world.servers]
    patient = stack.world.of_role(Role.PATIENT)[0]
    with _client() as http:
        for _ in range(10):
            assert http.get(f"{stack.nginx.url}/v1/health").status_code == 200
            me = http.get(f"{stack.nginx.url}/v1/me", headers={"Authorization": f"Bearer {patient.token}"})
            assert me.status_code == 200 and me.json()["id"] == patient.id
    after = [_requests_served(s) for s in stack.world.servers]
    # Round robin, no stickiness: each process served a good share of the 20 requests.
    served = [a - b - 1 for a, b in zip(after, before, strict=True)]  # less the /metrics read itself
    assert all(n >= 5 for n in served), served


def _logged_clients(stack: Stack, since: list[int]) -> set[str]:
    """The ``client=`` of every "request refused" line the servers logged after offsets ``since``."""
    found: set[str] = set()
    for server, start in zip(stack.world.servers, since, strict=True):
        for line in server.output()[start:].splitlines():
            if "request refused" in line:
                found.update(re.findall(r"\bclient=(\S+)", line))
    return found


def test_the_servers_log_the_client_address_not_the_proxys_nor_a_made_up_one(stack: Stack) -> None:
    since = [len(s.output()) for s in stack.world.servers]
    with _client() as http:
        for _ in range(4):  # both processes refuse at least one
            wrong = http.post(
                f"{stack.nginx.url}/v1/auth/login",
                json={"login": "nobody@example.org", "password": "wrong-password"},
                headers={"X-Forwarded-For": "6.6.6.6", "X-Real-IP": "6.6.6.6"},
            )
            assert wrong.status_code == 401
        # Straight to a server, the same made-up header from an untrusted peer is ignored too.
        direct = http.post(
            f"{stack.world.servers[0].url}/v1/auth/login",
            json={"login": "nobody@example.org", "password": "wrong-password"},
            headers={"X-Forwarded-For": "6.6.6.6"},
        )
        assert direct.status_code == 401
    deadline = time.monotonic() + 10
    while (clients := _logged_clients(stack, since)) != {CLIENT} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert clients == {CLIENT}


def _doctor_connections(server: RunningServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    match = re.search(r'^tot_ws_connections\{role="doctor"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _statuses(actor: TotClient, statuses: list[str]) -> None:
    for status in statuses:
        assert await actor.request("doctor.status", status=status) == {"status": status}


async def _events(client: TotClient, count: int) -> list[Event]:
    items: list[Event] = []
    async with asyncio.timeout(WAIT_S), contextlib.aclosing(client.events()) as events:
        async for item in events:
            if isinstance(item, Event) and item.type == "doctor.status":
                items.append(item)
                if len(items) == count:
                    return items
    return items


async def _socket_survives_a_kill(stack: Stack) -> None:
    doctor = stack.world.of_role(Role.DOCTOR)[0]
    channel = f"doctor:{doctor.id}"
    servers = stack.world.servers
    logins: list[int] = []

    async def token() -> str:  # a fresh login through nginx at every (re)connect
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=CLIENT)) as http:
            answer = await http.post(
                f"{stack.nginx.url}/v1/auth/login", json={"login": doctor.email, "password": PASSWORD}
            )
        answer.raise_for_status()
        logins.append(1)
        return str(answer.json()["tokens"]["access_token"])

    async with TotClient(stack.nginx.url, token, backoff_s=(0.05, 0.5)) as watcher:
        start = (await watcher.subscribe(channel)).position
        assert watcher.hello is not None
        first_connection = watcher.hello["connection"]
        on = [i for i, s in enumerate(servers) if _doctor_connections(s) == 1]
        assert len(on) == 1, "the watcher's socket is on exactly one process"
        victim, survivor = on[0], 1 - on[0]
        async with TotClient(servers[survivor].url, doctor.token) as actor:
            await _statuses(actor, ["paused", "available"])
            seen = await _events(watcher, 2)
            kill_hard(servers[victim])
            # Published while the watcher is between processes; it must get them by offset, once.
            await _statuses(actor, ["paused", "available", "paused"])
            seen += await _events(watcher, 3)
        assert watcher.hello is not None and watcher.hello["connection"] != first_connection
        assert _doctor_connections(servers[survivor]) == 1  # the socket now lives on the survivor
    assert [e.offset for e in seen] == list(range(start.offset + 1, start.offset + 6))
    assert [e.data["status"] for e in seen] == ["paused", "available", "paused", "available", "paused"]
    assert len(logins) == 2


def test_a_socket_through_nginx_moves_to_the_other_process_when_its_own_is_killed(stack: Stack) -> None:
    asyncio.run(_socket_survives_a_kill(stack))
