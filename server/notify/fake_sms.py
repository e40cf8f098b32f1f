"""A loopback fake of the SMS gateway (the interface in ``server/notify/sms.py``): records each message,
answers one id per ``idempotency_key`` (a repeat sends nothing), and can answer 429 with Retry-After
or another status (:meth:`FakeSmsGateway.fail_next`). Serve it with
``server.notify.fake_telegram.serving`` / ``serving_in_thread`` (any ASGI app), or alone:
``python -m server.notify.fake_sms --port 8082``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class FakeSmsGateway:
    """``messages``: every accepted message (``to``, ``text``, ``idempotency_key``); ``api_key``:
    the bearer token it wants (None: any)."""

    api_key: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    echo: bool = False
    sink: Callable[[str], None] | None = None
    """Where echoed lines go (None: printed)."""
    _ids: dict[str, str] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, status: int, retry_after: int | None = None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.failures.append((status, headers))

    async def handle(self, request: Request) -> JSONResponse:
        self.requests += 1
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        if self.failures:
            status, headers = self.failures.pop(0)
            return JSONResponse({"error": "refused"}, status_code=status, headers=headers)
        body = await request.json()
        if not isinstance(body, dict) or not str(body.get("to", "")).startswith("+") or not body.get("text"):
            return JSONResponse({"error": "to and text are required"}, status_code=400)
        key = str(body.get("idempotency_key") or "")
        if key and key in self._ids:
            return JSONResponse({"id": self._ids[key]})
        ident = f"sms{next(self._counter)}"
        if key:
            self._ids[key] = ident
        self.messages.append(body)
        if self.echo:
            line = json.dumps({"sms": body}, ensure_ascii=False)
            if self.sink is not None:
                self.sink(line)
            else:
                print(line, flush=True)
        return JSONResponse({"id": ident}, status_code=201)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/messages", self.handle, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake SMS gateway (server/notify/sms.py's interface)")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args(argv)
    uvicorn.run(FakeSmsGateway(echo=True).app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
