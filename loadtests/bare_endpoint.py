"""A bare WebSocket endpoint: the floor that ``loadtests/bench_ingest.py`` compares the gateway with.

Accept any connection, then ``orjson.loads`` each text frame and count it; nothing else (no auth, no
validation, no reply). Any HTTP request answers the counters as JSON
(``{"frames": n, "invalid": n, "connections": n}``). It runs under the server's own uvicorn settings
(``server.cli.uvicorn_ws_options``: sans-I/O websockets, no per-message deflate, same frame size
limit), so the difference between the two is our gateway's own cost.

Run ``python -m loadtests.bare_endpoint --port 8100``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import orjson
import uvicorn

from server.cli import uvicorn_ws_options
from server.settings import Settings

Scope = dict[str, Any]
Receive = Any
Send = Any


class BareEndpoint:
    """The ASGI application: WebSocket frames are parsed and counted, HTTP answers the counts."""

    def __init__(self) -> None:
        self.frames = 0
        self.invalid = 0
        self.connections = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(receive, send)
        elif kind == "http":
            await self._http(send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _websocket(self, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        self.connections += 1
        loads, error = orjson.loads, orjson.JSONDecodeError
        try:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                text = message.get("text")
                if text is None:
                    continue
                try:
                    loads(text)
                except error:
                    self.invalid += 1
                    continue
                self.frames += 1
        finally:
            self.connections -= 1

    async def _http(self, send: Send) -> None:
        body = orjson.dumps({"frames": self.frames, "invalid": self.invalid, "connections": self.connections})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bare_endpoint", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    uvicorn.run(
        BareEndpoint(),
        host=args.host,
        port=args.port,
        lifespan="on",
        **uvicorn_ws_options(Settings().ws_max_frame_bytes, os.environ.get("TOT_EVENT_LOOP", "uvloop")),
    )


if __name__ == "__main__":
    main()
