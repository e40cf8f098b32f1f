"""Load shedding in a real server process: with its only PostgreSQL connection (``TOT_DB_POOL_SIZE=1``)
held by a request stuck behind a row lock, other requests and socket ops that need the database are
refused with ``busy`` after ``TOT_DB_POOL_TIMEOUT`` instead of queueing, and everything goes on once
the lock is released.

The lock is taken by the test on its own connection (``SELECT ... FOR UPDATE`` on the call's row), and
the test waits until PostgreSQL reports the server's query waiting for it: no timing guesses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from models.enums import Role
from tests.conftest import create_migrated_pg_database, drop_pg_database
from tests.e2e.dispatch_world import CENTRE, City, city

WAIT_S = 20.0  # bounds a hang only


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    url = asyncio.run(create_migrated_pg_database("tot_overload"))
    try:
        settings = {"TOT_DB_POOL_SIZE": "1", "TOT_DB_POOL_TIMEOUT": "0.3"}
        with city(
            tmp_path_factory.mktemp("overload"), doctors=1, patients=1, database_url=url, settings=settings
        ) as c:
            yield c
    finally:
        asyncio.run(drop_pg_database(url))


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _locks_awaited(conn: asyncpg.Connection) -> int:
    """Queries of other sessions of this database waiting for a lock."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    return count


async def _next_frame(ws: Any, op: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        if frame.get("op") == op:
            return frame


async def test_requests_and_socket_ops_are_shed_while_the_pool_is_exhausted(world: City) -> None:
    patient = world.of_role(Role.PATIENT)[0]
    created = await world.create_call(patient, *CENTRE)
    assert created.status_code == 201, created.text
    call_id = created.json()["id"]
    await world.wait_status(call_id, {"escalated"})  # no doctor on shift: the offer loop is done with it

    locker = await asyncpg.connect(_dsn(world.database_url))
    url = world.url.replace("http://", "ws://") + f"/v1/ws?token={patient.token}"
    doctor_url = world.url.replace("http://", "ws://") + f"/v1/ws?token={world.of_role(Role.DOCTOR)[0].token}"
    async with connect(url, compression=None) as ws:
        assert orjson.loads(await asyncio.wait_for(ws.recv(), WAIT_S))["op"] == "hello"
        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT id FROM calls WHERE id = $1 FOR UPDATE", call_id)
            # The cancel takes the server's only connection and waits behind the lock.
            cancel = asyncio.create_task(
                world.http("POST", f"/v1/calls/{call_id}/cancel", patient, json={"reason": "changed my mind"})
            )
            deadline = time.monotonic() + WAIT_S
            while await _locks_awaited(locker) == 0:
                assert time.monotonic() < deadline, "the server's cancel never waited for the lock"
                assert not cancel.done(), cancel.result().text
                await asyncio.sleep(0.02)

            shed = await world.http("GET", f"/v1/calls/{call_id}", patient)
            await ws.send(orjson.dumps({"op": "subscribe", "ch": f"call:{call_id}", "ref": 1}).decode())
            refused = await _next_frame(ws, "error")
            # A doctor's socket reads the profile when it opens: shed with 1013 busy, not a 1011.
            async with connect(doctor_url, compression=None) as doctor_ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(doctor_ws.recv(), WAIT_S)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "busy")
        finally:
            with contextlib.suppress(Exception):
                await lock.rollback()
            await locker.close()

        assert shed.status_code == 503
        assert shed.headers["Retry-After"] == "1"
        assert shed.json()["error"]["code"] == "busy"
        assert (refused["code"], refused.get("ref")) == ("busy", 1), refused

        cancelled = await asyncio.wait_for(cancel, WAIT_S)  # the request already in flight was kept
        assert cancelled.status_code == 200, cancelled.text
        await ws.send(orjson.dumps({"op": "subscribe", "ch": f"call:{call_id}", "ref": 2}).decode())
        subscribed = await _next_frame(ws, "subscribed")
        assert subscribed["ref"] == 2
    assert (await world.call(call_id))["status"] == "cancelled"
    assert "pool exhausted" in world.servers[0].output()
