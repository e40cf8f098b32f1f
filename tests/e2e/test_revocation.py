"""Revocation on real server processes, both deployments: SQLite with the memory engine (one process)
and PostgreSQL with Redis (two processes sharing them).

Disabling an account refuses its REST requests and closes its open sockets, on every process, within a
second of the admin's answer (awaited with a deadline, never slept); re-enabling lets it sign in again;
a role change ends the old token's rights; a deleted account's token is 401 (never a foreign-key 500);
logout revokes the refresh token; and on Redis the revocation outlives the engine's keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from models.enums import Role
from models.users import User
from realtime.client import AuthError, TotClient
from realtime.keys import Keys
from realtime.protocol import CloseCode
from tests.conftest import create_pg_database, drop_pg_database, redis_test_url
from tests.e2e.dispatch_world import CENTRE, City, city, forget_engine_keys
from tests.e2e.process import cli

CLOSE_WITHIN_S = 1.0
"""A revoked account's open sockets are closed within this long after the revocation's answer."""
CLI_CLOSE_WITHIN_S = 3.0
"""The CLI has no broker: its event waits for a server's outbox relay (every 0.5 s)."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    kind = str(request.param)
    cwd = tmp_path_factory.mktemp(f"revoke-{kind}")
    if kind == "sqlite":
        with city(cwd, doctors=1, patients=1) as c:
            yield c
        return
    database_url = asyncio.run(create_pg_database("tot_revoke"))
    prefix = ""
    try:
        with city(
            cwd, doctors=1, patients=1, servers=2, database_url=database_url, engine_url=redis_test_url()
        ) as c:
            prefix = c.env["TOT_ENGINE_PREFIX"]
            yield c
    finally:
        if prefix:
            asyncio.run(forget_engine_keys(prefix))
        asyncio.run(drop_pg_database(database_url))


def admin(world: City) -> str:
    return world.of_role(Role.ADMIN)[0].token


async def rest(
    world: City, method: str, path: str, token: str | None, server: int = 0, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=world.servers[server].url, timeout=30) as client:
        return await client.request(method, path, headers=headers, **kwargs)


async def register(world: City) -> dict[str, Any]:
    """A new patient over REST: ``{"id", "email", "access", "refresh"}``."""
    email = f"rev-{uuid.uuid4().hex[:10]}@revoke.test"
    body = {"email": email, "password": "revoke-pass-1", "full_name": "Revoked Patient"}
    response = await rest(world, "POST", "/v1/auth/register", None, json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    tokens = data["tokens"]
    return {
        "id": data["user"]["id"],
        "email": email,
        "access": tokens["access_token"],
        "refresh": tokens["refresh_token"],
    }


async def login(world: City, email: str, server: int = 0) -> httpx.Response:
    body = {"login": email, "password": "revoke-pass-1"}
    return await rest(world, "POST", "/v1/auth/login", None, server, json=body)


def ws_url(world: City, server: int) -> str:
    return world.servers[server].url.replace("http://", "ws://") + "/v1/ws"


async def open_socket(world: City, token: str, server: int = 0) -> ClientConnection:
    """A raw socket past its ``hello``."""
    ws = await connect(ws_url(world, server), additional_headers={"Authorization": f"Bearer {token}"})
    hello = await asyncio.wait_for(ws.recv(), 10)
    assert '"op":"hello"' in str(hello)
    return ws


async def refused_code(world: City, token: str, server: int = 0) -> int | None:
    """The close code a new socket with ``token`` gets before any ``hello``."""
    async with connect(ws_url(world, server), additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def closed_by(ws: ClientConnection, deadline: float) -> int | None:
    """Wait until the server closed ``ws`` (fails past ``deadline``, a monotonic time); its code."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.wait_closed(), max(0.0, deadline - time.monotonic()))
    assert ws.close_code is not None, "the socket was still open at the deadline"
    return ws.close_code


@contextlib.asynccontextmanager
async def sockets(world: City, token: str) -> AsyncIterator[list[ClientConnection]]:
    """One socket with ``token`` on every server process."""
    opened = [await open_socket(world, token, i) for i in range(len(world.servers))]
    try:
        yield opened
    finally:
        for ws in opened:
            with contextlib.suppress(Exception):
                await ws.close()


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "token_revoked"
    assert response.headers["www-authenticate"] == "Bearer"


def call_body() -> dict[str, Any]:
    lat, lon = CENTRE
    return {
        "address": "Revoke street 1",
        "lat": lat,
        "lon": lon,
        "urgency": "urgent",
        "specialty": "therapist",
    }


async def test_disabled_account_is_refused_and_its_sockets_close_then_re_enabled_it_works(
    world: City,
) -> None:
    patient = await register(world)
    assert (await rest(world, "GET", "/v1/me", patient["access"])).status_code == 200
    async with sockets(world, patient["access"]) as open_sockets:
        started = time.monotonic()
        response = await rest(world, "POST", f"/v1/admin/users/{patient['id']}/disable", admin(world))
        answered = time.monotonic()
        assert response.status_code == 200, response.text
        assert response.json()["is_active"] is False
        deadline = answered + CLOSE_WITHIN_S
        codes = [await closed_by(ws, deadline) for ws in open_sockets]
        assert codes == [CloseCode.TOKEN_REVOKED] * len(world.servers)
        assert time.monotonic() - started < CLOSE_WITHIN_S + (answered - started)

    for server in range(len(world.servers)):
        assert_revoked(await rest(world, "GET", "/v1/me", patient["access"], server))
        assert_revoked(await rest(world, "POST", "/v1/calls", patient["access"], server, json=call_body()))
        assert await refused_code(world, patient["access"], server) == CloseCode.TOKEN_REVOKED
    refresh = await rest(world, "POST", "/v1/auth/refresh", None, json={"refresh_token": patient["refresh"]})
    assert refresh.status_code == 403 and refresh.json()["error"]["code"] == "account_disabled"
    refused = await login(world, patient["email"])
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_disabled"

    response = await rest(world, "POST", f"/v1/admin/users/{patient['id']}/enable", admin(world))
    assert response.status_code == 200 and response.json()["is_active"] is True
    signed_in = await login(world, patient["email"], server=len(world.servers) - 1)
    assert signed_in.status_code == 200, signed_in.text
    token = signed_in.json()["tokens"]["access_token"]
    for server in range(len(world.servers)):
        assert (await rest(world, "GET", "/v1/me", token, server)).status_code == 200
        ws = await open_socket(world, token, server)
        await ws.close()
    # Tokens from before the account was disabled stay revoked.
    assert_revoked(await rest(world, "GET", "/v1/me", patient["access"]))


async def test_the_project_client_stops_on_4410_with_a_static_token(world: City) -> None:
    patient = await register(world)
    client = TotClient(world.servers[-1].url, patient["access"])
    await client.connect()
    try:
        response = await rest(world, "POST", f"/v1/admin/users/{patient['id']}/disable", admin(world))
        assert response.status_code == 200
        with pytest.raises(AuthError) as refused:
            async with asyncio.timeout(CLOSE_WITHIN_S + 5):
                async for _ in client.events():
                    pass
        assert refused.value.code == CloseCode.TOKEN_REVOKED
        assert refused.value.reason == "token_revoked"
    finally:
        await client.close()


async def test_role_change_ends_the_old_tokens_rights(world: City) -> None:
    user = await register(world)
    assert (await rest(world, "GET", "/v1/doctors", user["access"])).status_code == 403
    async with sockets(world, user["access"]) as open_sockets:
        response = await rest(
            world, "PUT", f"/v1/admin/users/{user['id']}/role", admin(world), json={"role": "dispatcher"}
        )
        deadline = time.monotonic() + CLOSE_WITHIN_S
        assert response.status_code == 200 and response.json()["role"] == "dispatcher"
        assert [await closed_by(ws, deadline) for ws in open_sockets] == [CloseCode.TOKEN_REVOKED] * len(
            world.servers
        )
    assert_revoked(await rest(world, "GET", "/v1/calls", user["access"]))
    staff = (await login(world, user["email"])).json()["tokens"]["access_token"]
    assert (await rest(world, "GET", "/v1/doctors", staff)).status_code == 200
    # Back to patient: the dispatcher token's staff rights end on every process at once.
    response = await rest(
        world, "PUT", f"/v1/admin/users/{user['id']}/role", admin(world), json={"role": "patient"}
    )
    assert response.status_code == 200
    for server in range(len(world.servers)):
        assert_revoked(await rest(world, "GET", "/v1/doctors", staff, server))
    patient = (await login(world, user["email"])).json()["tokens"]["access_token"]
    assert (await rest(world, "GET", "/v1/doctors", patient)).status_code == 403
    # A doctor needs a doctor profile; an admin cannot demote themselves.
    response = await rest(
        world, "PUT", f"/v1/admin/users/{user['id']}/role", admin(world), json={"role": "doctor"}
    )
    assert response.status_code == 409
    me = world.of_role(Role.ADMIN)[0].id
    response = await rest(world, "PUT", f"/v1/admin/users/{me}/role", admin(world), json={"role": "patient"})
    assert response.status_code == 409
    assert (await rest(world, "POST", f"/v1/admin/users/{user['id']}/disable", patient)).status_code == 403


async def test_deleted_account_gets_401_on_rest_and_socket(world: City) -> None:
    patient = await register(world)
    assert (await rest(world, "GET", "/v1/me", patient["access"])).status_code == 200
    async with sockets(world, patient["access"]) as open_sockets:
        result = await asyncio.to_thread(cli, ["users", "delete", patient["email"]], world.env, world.cwd)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + CLI_CLOSE_WITHIN_S
        assert [await closed_by(ws, deadline) for ws in open_sockets] == [CloseCode.TOKEN_REVOKED] * len(
            world.servers
        )
    for server in range(len(world.servers)):
        assert_revoked(await rest(world, "GET", "/v1/me", patient["access"], server))
        assert_revoked(await rest(world, "POST", "/v1/calls", patient["access"], server, json=call_body()))
        assert await refused_code(world, patient["access"], server) == CloseCode.TOKEN_REVOKED


async def test_account_deleted_behind_the_servers_back_is_401_not_500(world: City) -> None:
    """A row deleted by hand (no event): the cached version still lets the token through, but the write
    its foreign key refuses answers 401, and the account is held as deleted from then on."""
    patient = await register(world)
    assert (await rest(world, "GET", "/v1/me", patient["access"])).status_code == 200

    async def delete_row() -> None:
        engine = create_async_engine(world.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.delete(User).where(User.id == uuid.UUID(patient["id"])))
        finally:
            await engine.dispose()

    await asyncio.to_thread(asyncio.run, delete_row())
    assert_revoked(await rest(world, "POST", "/v1/calls", patient["access"], json=call_body()))
    assert_revoked(await rest(world, "GET", "/v1/calls", patient["access"]))
    assert await refused_code(world, patient["access"]) == CloseCode.TOKEN_REVOKED


async def test_logout_revokes_the_refresh_token_and_closes_sockets(world: City) -> None:
    patient = await register(world)
    async with sockets(world, patient["access"]) as open_sockets:
        response = await rest(world, "POST", "/v1/auth/logout", patient["access"])
        deadline = time.monotonic() + CLOSE_WITHIN_S
        assert response.status_code == 204, response.text
        assert [await closed_by(ws, deadline) for ws in open_sockets] == [CloseCode.TOKEN_REVOKED] * len(
            world.servers
        )
    refresh = await rest(world, "POST", "/v1/auth/refresh", None, json={"refresh_token": patient["refresh"]})
    assert_revoked(refresh)
    assert_revoked(await rest(world, "GET", "/v1/me", patient["access"]))
    again = (await login(world, patient["email"])).json()["tokens"]
    assert (await rest(world, "GET", "/v1/me", again["access_token"])).status_code == 200
    new_pair = await rest(
        world, "POST", "/v1/auth/refresh", None, json={"refresh_token": again["refresh_token"]}
    )
    assert new_pair.status_code == 200


async def test_revocation_outlives_the_live_engine(world: City) -> None:
    """Redis loses every key of the deployment (a restart without persistence): the servers rebuild the
    engine, and the disabled account's token stays refused (read from the database again)."""
    if len(world.servers) < 2:
        pytest.skip("the memory engine is lost only with its process (a restart reads the database)")
    patient = await register(world)
    response = await rest(world, "POST", f"/v1/admin/users/{patient['id']}/disable", admin(world))
    assert response.status_code == 200
    assert_revoked(await rest(world, "GET", "/v1/me", patient["access"]))

    await forget_engine_keys(world.env["TOT_ENGINE_PREFIX"])

    for server in range(len(world.servers)):
        assert_revoked(await rest(world, "GET", "/v1/me", patient["access"], server))
        assert await refused_code(world, patient["access"], server) == CloseCode.TOKEN_REVOKED
    # Still refused once the engine has been rebuilt (the epoch is back).
    keys = Keys(prefix=world.env["TOT_ENGINE_PREFIX"])
    client = aioredis.Redis.from_url(redis_test_url())
    try:
        deadline = time.monotonic() + 30
        while await client.get(keys.engine_epoch()) is None:
            assert time.monotonic() < deadline, "the engine was not rebuilt"
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()
    for server in range(len(world.servers)):
        assert_revoked(await rest(world, "GET", "/v1/me", patient["access"], server))
