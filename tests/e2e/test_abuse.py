"""Abuse limits on real server processes of both deployments (issue 17): login tries per client address,
sockets per user, and a deadline on request headers.

Client addresses: the tests connect from other loopback addresses (127.0.0.2, 127.0.0.3: every
127.0.0.0/8 address is the loopback on Linux) to a server that trusts only 127.0.0.1 as a proxy, so the
server counts each test's own address, as it would count two clients.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.protocol import CloseCode
from tests.e2e.deployments import DEPLOYMENTS, PASSWORD, Deployment, deployment

HEADER_TIMEOUT_S = 1.0
LIMITS = {
    "TOT_LOGIN_LIMIT_ADDRESS": "20/minute",
    "TOT_LOGIN_LIMIT_ACCOUNT": "100/hour",
    "TOT_WS_MAX_PER_USER": "3",
    "TOT_HTTP_HEADER_TIMEOUT": str(HEADER_TIMEOUT_S),
    "TOT_FORWARDED_ALLOW_IPS": "127.0.0.1",
}


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def dep(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A server of each deployment with the limits above."""
    with deployment(str(request.param), tmp_path_factory.mktemp("abuse"), LIMITS) as running:
        yield running


def _from(address: str) -> httpx.Client:
    """An HTTP client whose connections leave from ``address`` (a loopback address)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def test_wrong_logins_from_one_address_are_limited_and_the_owner_signs_in_elsewhere(dep: Deployment) -> None:
    login = "patient@deploy.test"
    statuses = []
    first_minute = time.time() // 60
    with _from("127.0.0.2") as attacker:
        for _ in range(30):
            answer = attacker.post(
                f"{dep.server.url}/v1/auth/login", json={"login": login, "password": "wrong-password"}
            )
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                refused = answer
    assert statuses[:20] == [401] * 20, statuses
    if time.time() // 60 == first_minute:
        assert statuses[20:] == [429] * 10, statuses
    else:
        # The tries straddled a minute: the sliding-window counter (limits) weighs the last minute's
        # tries by the share of it still in the window, so a few more may pass, and later ones again
        # as that share shrinks; the address is still refused.
        assert 429 in statuses[20:], statuses
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    error = refused.json()["error"]
    assert error["code"] == "too_many_attempts"
    assert error["message"] and error["message_ru"]
    # Refused before any password work: even the right password from that address waits its turn.
    with _from("127.0.0.2") as attacker:
        again = attacker.post(f"{dep.server.url}/v1/auth/login", json={"login": login, "password": PASSWORD})
    assert again.status_code == 429
    with _from("127.0.0.3") as owner:
        signed_in = owner.post(f"{dep.server.url}/v1/auth/login", json={"login": login, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text


async def _sockets_over_the_cap(dep: Deployment) -> None:
    url = dep.server.url.replace("http://", "ws://") + f"/v1/ws?token={dep.tokens['patient']}"
    held = []
    try:
        for _ in range(3):
            ws = await connect(url)
            assert '"hello"' in str(await asyncio.wait_for(ws.recv(), 10))
            held.append(ws)
        extra = await connect(url)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(extra.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.TOO_MANY_SOCKETS
        assert closed.value.rcvd.reason == "too_many_sockets"
        # Another user is not affected, and a closed socket frees its place.
        other = await connect(
            dep.server.url.replace("http://", "ws://") + f"/v1/ws?token={dep.tokens['admin']}"
        )
        assert '"hello"' in str(await asyncio.wait_for(other.recv(), 10))
        held.append(other)
        await held.pop(0).close()
        deadline = time.monotonic() + 10
        while True:
            again = await connect(url)
            try:
                first = await asyncio.wait_for(again.recv(), 10)
                assert '"hello"' in str(first)
                held.append(again)
                break
            except ConnectionClosed:
                assert time.monotonic() < deadline, "a closed socket's place was never freed"
                await asyncio.sleep(0.1)
    finally:
        for ws in held:
            await ws.close()


def test_one_socket_over_the_per_user_cap_is_refused_with_its_code(dep: Deployment) -> None:
    asyncio.run(_sockets_over_the_cap(dep))


def test_a_connection_that_never_finishes_its_headers_is_closed(dep: Deployment) -> None:
    host, port = "127.0.0.1", dep.server.port
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as slow:
        slow.sendall(b"GET /v1/health HTTP/1.1\r\nHost: tot.test\r\nX-Half: ")
        slow.settimeout(0.2)
        deadline = started + HEADER_TIMEOUT_S + 5
        closed_after = None
        while time.monotonic() < deadline:
            try:
                data = slow.recv(1024)
            except TimeoutError:
                continue
            assert data == b"", data  # no answer at all, just the close
            closed_after = time.monotonic() - started
            break
    assert closed_after is not None, "a half-sent request was still held open"
    assert closed_after >= HEADER_TIMEOUT_S * 0.9
    # The deadline is on headers only: a whole request is answered as ever.
    assert httpx.get(f"{dep.server.url}/v1/health", timeout=10).status_code == 200
