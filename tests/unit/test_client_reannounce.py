"""The Python client answers the server's ``reannounce`` frame (docs/protocol.md) with the doctor's last
fix, stamped now, and the status it last announced; a refusal of that status is taken quietly.

A small local WebSocket server plays the gateway: ``hello``, an ``ack`` or an ``error`` for every
``doctor.status``, and a ``reannounce`` when the test says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from realtime.client import TotClient
from realtime.protocol import reannounce_frame


class FakeGateway:
    """Records every frame a client sends; ``refuse`` makes ``doctor.status`` answer ``forbidden``."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.refuse = False
        self.conn: ServerConnection | None = None
        self.received = asyncio.Condition()

    async def handler(self, conn: ServerConnection) -> None:
        self.conn = conn
        hello = {"op": "hello", "connection": "c1", "user": "d1", "role": "doctor", "server_time": 0}
        await conn.send(orjson.dumps({**hello, "limits": {"idle_timeout_s": 60}}).decode())
        async for raw in conn:
            frame = orjson.loads(raw)
            if frame["op"] == "doctor.status":
                answer = (
                    {"op": "error", "code": "forbidden", "message": "you are busy", "ref": frame["ref"]}
                    if self.refuse
                    else {"op": "ack", "ref": frame["ref"], "status": frame["status"]}
                )
                await conn.send(orjson.dumps(answer).decode())
            async with self.received:
                self.frames.append(frame)
                self.received.notify_all()

    async def wait_frames(self, count: int) -> list[dict[str, Any]]:
        async with self.received:
            await asyncio.wait_for(self.received.wait_for(lambda: len(self.frames) >= count), 5)
        return self.frames


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[FakeGateway, str]]:
    fake = FakeGateway()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield fake, f"http://127.0.0.1:{port}"


async def test_reannounce_resends_the_last_fix_and_status(gateway: tuple[FakeGateway, str]) -> None:
    fake, url = gateway
    async with TotClient(url, "token", ping_interval_s=60) as client:
        await client.send("location", lat=55.75, lon=37.61, acc=5.0, ts=1_000)
        await client.request("doctor.status", status="available")
        await fake.wait_frames(2)
        before = int(time.time() * 1000)
        assert fake.conn is not None
        await fake.conn.send(reannounce_frame().decode())
        frames = await fake.wait_frames(4)
        fix, status = frames[2], frames[3]
        assert fix["op"] == "location" and (fix["lat"], fix["lon"], fix["acc"]) == (55.75, 37.61, 5.0)
        assert fix["ts"] >= before  # a fix of now: the server judges candidates by freshness
        assert status["op"] == "doctor.status" and status["status"] == "available"
        assert client.reannounced == 1


async def test_a_refused_reannounce_is_quiet_and_a_refused_status_is_not_remembered(
    gateway: tuple[FakeGateway, str],
) -> None:
    fake, url = gateway
    async with TotClient(url, "token", ping_interval_s=60) as client:
        await client.request("doctor.status", status="paused")
        fake.refuse = True
        with pytest.raises(Exception, match="busy"):
            await client.request("doctor.status", status="available")
        assert client.announced_status == "paused"
        assert fake.conn is not None
        await fake.conn.send(reannounce_frame().decode())
        frames = await fake.wait_frames(3)
        assert frames[2] == {"op": "doctor.status", "status": "paused", "ref": frames[2]["ref"]}
        assert client.connected  # the refusal of the re-announced status changed nothing
