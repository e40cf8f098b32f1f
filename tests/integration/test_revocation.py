"""Revocation in-process, on SQLite and on PostgreSQL with the memory engine: what the end-to-end tests
(tests/e2e/test_revocation.py) cannot reach from outside. The engine's cache lost or failing never lets
a revoked token in; the CLI's change reaches the server through the outbox relay; tokens issued before
revocation existed (no ``ver``) count as version 0; the admin endpoints' refusals."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import jwt

from models.enums import Role
from realtime.revocations import Revocations
from realtime.revocations_memory import MemoryRevocations
from server.accounts import change_account
from server.auth.revocation import RevokeReason
from tests.conftest import TEST_SECRET_KEY, services_of
from tests.helpers import PASSWORD, as_cli, bearer, register, staff


class BrokenRevocations(Revocations):
    """An engine that does not answer (Redis down)."""

    async def valid_from(self, user_id: str) -> int | None:
        raise ConnectionError("engine down")

    async def raise_to(self, user_id: str, version: int) -> int:
        raise ConnectionError("engine down")


async def disable(client: httpx.AsyncClient, admin: dict[str, Any], user_id: str) -> None:
    token = admin["tokens"]["access_token"]
    response = await client.post(f"/v1/admin/users/{user_id}/disable", headers=bearer(token))
    assert response.status_code == 200, response.text


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_a_lost_engine_reads_the_database_again(client: httpx.AsyncClient, database_url: str) -> None:
    admin = await staff(client, database_url, "admin")
    patient = await register(client)
    token, user_id = patient["tokens"]["access_token"], patient["user"]["id"]
    await disable(client, admin, user_id)
    assert code(await client.get("/v1/me", headers=bearer(token))) == "token_revoked"

    svc = services_of(client)
    revocations = svc.engine.revocations
    assert isinstance(revocations, MemoryRevocations)
    revocations.clear()  # the engine lost (a new embedded process, a flushed Redis)
    reads = svc.access.database_reads
    assert code(await client.get("/v1/me", headers=bearer(token))) == "token_revoked"
    assert svc.access.database_reads == reads + 1
    assert await revocations.valid_from(user_id) is not None  # written back
    assert code(await client.get("/v1/me", headers=bearer(token))) == "token_revoked"
    assert svc.access.database_reads == reads + 1  # answered from the engine now


async def test_an_engine_that_does_not_answer_fails_closed(
    client: httpx.AsyncClient, database_url: str
) -> None:
    admin = await staff(client, database_url, "admin")
    revoked, kept = await register(client), await register(client)
    await disable(client, admin, revoked["user"]["id"])
    svc = services_of(client)
    working = svc.access.revocations
    svc.access.revocations = BrokenRevocations()
    try:
        response = await client.get("/v1/me", headers=bearer(revoked["tokens"]["access_token"]))
        assert response.status_code == 401 and code(response) == "token_revoked"
        response = await client.get("/v1/me", headers=bearer(kept["tokens"]["access_token"]))
        assert response.status_code == 200
    finally:
        svc.access.revocations = working


async def test_the_clis_change_reaches_the_server_through_the_outbox(
    client: httpx.AsyncClient, database_url: str
) -> None:
    patient = await register(client)
    token = patient["tokens"]["access_token"]
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200  # cached as valid

    outcome = await as_cli(
        change_account(database_url, patient["user"]["email"], RevokeReason.DISABLED, is_active=False)
    )
    assert outcome.user is not None and outcome.user.is_active is False

    deadline = time.monotonic() + 5  # the relay looks every 0.5 s
    while (await client.get("/v1/me", headers=bearer(token))).status_code != 401:
        assert time.monotonic() < deadline, "the CLI's revocation never reached the server"
        await asyncio.sleep(0.05)
    response = await client.post(
        "/v1/auth/login", json={"login": patient["user"]["email"], "password": PASSWORD}
    )
    assert response.status_code == 403 and code(response) == "account_disabled"


async def test_a_token_without_a_version_counts_as_version_zero(
    client: httpx.AsyncClient, database_url: str
) -> None:
    admin = await staff(client, database_url, "admin")
    patient = await register(client)
    user_id = patient["user"]["id"]
    now = int(time.time())
    legacy = jwt.encode(
        {
            "sub": user_id,
            "role": "patient",
            "typ": "access",
            "iss": "tot-dispatch",
            "iat": now,
            "exp": now + 600,
        },
        TEST_SECRET_KEY,
        algorithm="HS256",
    )
    assert (await client.get("/v1/me", headers=bearer(legacy))).status_code == 200
    await disable(client, admin, user_id)
    assert code(await client.get("/v1/me", headers=bearer(legacy))) == "token_revoked"
    forged = jwt.encode(
        {
            "sub": user_id,
            "role": "patient",
            "typ": "access",
            "iss": "tot-dispatch",
            "iat": now,
            "exp": now + 600,
            "ver": "9",
        },
        TEST_SECRET_KEY,
        algorithm="HS256",
    )
    assert code(await client.get("/v1/me", headers=bearer(forged))) == "token_invalid"


async def test_admin_endpoints_refuse_non_admins_and_unknown_accounts(
    client: httpx.AsyncClient, database_url: str
) -> None:
    admin = await staff(client, database_url, "admin")
    dispatcher = await staff(client, database_url, "dispatcher")
    patient = await register(client)
    path = f"/v1/admin/users/{patient['user']['id']}/disable"
    response = await client.post(path, headers=bearer(dispatcher["tokens"]["access_token"]))
    assert response.status_code == 403 and code(response) == "forbidden"
    response = await client.post(path)
    assert response.status_code == 401 and code(response) == "auth_required"
    admin_token = admin["tokens"]["access_token"]
    response = await client.post(f"/v1/admin/users/{uuid.uuid4()}/disable", headers=bearer(admin_token))
    assert response.status_code == 404 and code(response) == "not_found"
    response = await client.post("/v1/admin/users/not-a-uuid/enable", headers=bearer(admin_token))
    assert response.status_code == 422 and response.json()["error"]["field"] == "user_id"
    response = await client.post(
        f"/v1/admin/users/{admin['user']['id']}/disable", headers=bearer(admin_token)
    )
    assert response.status_code == 409 and code(response) == "conflict"
    response = await client.put(
        f"/v1/admin/users/{patient['user']['id']}/role", headers=bearer(admin_token), json={"role": "root"}
    )
    assert response.status_code == 422
    response = await client.put(
        f"/v1/admin/users/{patient['user']['id']}/role",
        headers=bearer(admin_token),
        json={"role": Role.ADMIN.value},
    )
    assert response.status_code == 200 and response.json()["role"] == "admin"


async def test_a_change_that_changes_nothing_revokes_nothing(
    client: httpx.AsyncClient, database_url: str
) -> None:
    admin = await staff(client, database_url, "admin")
    patient = await register(client)
    token, user_id = patient["tokens"]["access_token"], patient["user"]["id"]
    admin_token = admin["tokens"]["access_token"]
    response = await client.post(f"/v1/admin/users/{user_id}/enable", headers=bearer(admin_token))
    assert response.status_code == 200 and response.json()["is_active"] is True
    response = await client.put(
        f"/v1/admin/users/{user_id}/role", headers=bearer(admin_token), json={"role": "patient"}
    )
    assert response.status_code == 200
    assert (await client.get("/v1/me", headers=bearer(token))).status_code == 200
