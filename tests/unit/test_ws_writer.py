"""The socket writer (server/ws/transport.py) when the client vanished while frames waited: the send
fails (uvicorn's ClientDisconnected, an OSError), and the writer ends quietly and stops the connection,
rather than ending its task with an error nobody retrieves (it filled the demo's log at every shutdown)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from uvicorn.protocols.utils import ClientDisconnected

from realtime.protocol import CloseCode
from server.settings import Settings
from server.ws.connection import Connection
from server.ws.transport import Transport


class Queue:
    """A send queue holding ``frames`` once."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames

    def take(self, limit: int | None = None) -> list[str]:
        frames, self.frames = self.frames, []
        return frames


async def test_a_send_to_a_vanished_client_ends_the_writer_quietly() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)
        raise ClientDisconnected()

    none = cast(Any, None)
    transport = Transport(Settings(), none, none, none, none, {}, none, {}, none, none)
    session = cast(Any, SimpleNamespace(send_queue=Queue(["second", "third"])))
    conn = Connection(id="c1", principal=none, session=session, send=send)
    transport.connections[conn.id] = conn
    writer = asyncio.create_task(transport._write(conn, "first"))
    conn.writer = writer
    await asyncio.wait([writer])
    assert writer.exception() is None
    assert len(sent) == 1  # nothing more is tried on a socket that is gone
    assert conn.stopping and conn.close_code == CloseCode.GOING_AWAY
    assert conn.writer is None
