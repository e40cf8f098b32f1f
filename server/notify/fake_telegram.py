"""A loopback fake of the Telegram Bot API: the real HTTP, recorded, for tests and the demo.

It serves ``POST|GET /bot<token>/<method>`` as ``api.telegram.org`` does, taking parameters from the
query string, a form (``application/x-www-form-urlencoded``, values that are JSON objects decoded:
``reply_markup``; no files, so no multipart) or a JSON body, and answers ``{"ok": true, "result": ...}``
for ``getMe``, ``sendMessage``, ``answerCallbackQuery``, ``editMessageReplyMarkup``,
``editMessageText``, ``setWebhook``, ``deleteWebhook`` (anything else: 404 ``Not Found`` as the real
API). Every request is recorded (:class:`Request`: method, parameters, wall time in epoch ms).

:meth:`FakeBotApi.fail_next` makes the next calls of a method answer an error, e.g. 429 with
``parameters.retry_after`` (``{"ok": false, "error_code": 429, "description": "Too Many Requests:
retry after 3", "parameters": {"retry_after": 3}}``) or 403 (the user blocked the bot).
:meth:`FakeBotApi.deliver` posts an update to a webhook as Telegram does (header
``X-Telegram-Bot-Api-Secret-Token``), numbering ``update_id`` itself unless given.

A deep link's page (``GET /<bot username>?start=<token>``, what ``https://t.me/<bot>?start=<token>`` is
on the real service): the fake posts ``/start <token>`` from a new private chat to the webhook it was
given (``setWebhook``, or ``webhook_url`` / ``webhook_secret``), as Telegram does when the person
presses Start, and answers a small HTML page with the bot's verdict. The demo points its deep links
here (``TOT_TELEGRAM_LINK_BASE``, ``server/demo_fakes.py``).

Run it alone for the demo: ``python -m server.notify.fake_telegram --port 8081`` (it prints every
request as a JSON line, or hands it to ``sink``); point the server at it with
``TOT_TELEGRAM_API_URL=http://127.0.0.1:8081``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import itertools
import json
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

BOT_ID = 7_000_000_001
BOT_USERNAME = "tot_test_bot"


@dataclass(frozen=True, slots=True)
class Request:
    """One call the fake received: ``method`` (e.g. ``sendMessage``), ``params`` (decoded), ``token``
    and ``at_ms`` (wall clock, epoch ms)."""

    method: str
    params: dict[str, Any]
    token: str
    at_ms: int


@dataclass
class FakeBotApi:
    """The fake's state (module docstring). ``requests``: everything received, in order."""

    requests: list[Request] = field(default_factory=list)
    failures: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    echo: bool = False
    delay_s: float = 0.0
    """How long each answer takes (the request is recorded on arrival): keeps sends in flight."""
    sink: Callable[[str], None] | None = None
    """Where echoed lines go (None: printed)."""
    webhook_url: str | None = None
    webhook_secret: str | None = None
    """Where a deep link's ``/start`` goes (also set by ``setWebhook``)."""
    _chats: itertools.count[int] = field(default_factory=lambda: itertools.count(8_000_001))
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100_000))

    def calls(self, method: str) -> list[Request]:
        """The requests of ``method``, in order."""
        return [r for r in self.requests if r.method == method]

    def fail_next(self, method: str, status: int, *, retry_after: int | None = None, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer ``status`` (429 with ``retry_after`` seconds)."""
        body: dict[str, Any] = {"ok": False, "error_code": status}
        if status == 429:
            body["description"] = f"Too Many Requests: retry after {retry_after or 1}"
            body["parameters"] = {"retry_after": retry_after or 1}
        elif status == 403:
            body["description"] = "Forbidden: bot was blocked by the user"
        else:
            body["description"] = "Bad Request: chat not found" if status == 400 else "Internal Server Error"
        self.failures.setdefault(method, []).extend([(status, body)] * times)

    async def wait_for(
        self, method: str, count: int, timeout_s: float = 10.0, where: Callable[[Request], bool] | None = None
    ) -> list[Request]:
        """Wait until ``count`` calls of ``method`` (that ``where`` accepts) arrived; returns them.
        Raises ``TimeoutError``. Polls every 20 ms: the fake may serve from another thread."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [r for r in self.calls(method) if where is None or where(r)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} {method} calls arrived")
            await asyncio.sleep(0.02)

    def _record(self, request: Request) -> None:
        self.requests.append(request)
        if request.method == "setWebhook":
            self.webhook_url = str(request.params.get("url") or "") or None
            self.webhook_secret = str(request.params.get("secret_token") or "") or None
        if self.echo:
            line = json.dumps(
                {"telegram": request.method, "params": request.params, "at_ms": request.at_ms},
                ensure_ascii=False,
            )
            if self.sink is not None:
                self.sink(line)
            else:
                print(line, flush=True)

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        now_s = int(time.time())
        if method == "getMe":
            return {"id": BOT_ID, "is_bot": True, "first_name": "TOT", "username": BOT_USERNAME}
        if method in ("sendMessage", "editMessageText", "editMessageReplyMarkup"):
            chat_id = int(params.get("chat_id", 0))
            message_id = int(params["message_id"]) if "message_id" in params else next(self._message_ids)
            message: dict[str, Any] = {
                "message_id": message_id,
                "date": now_s,
                "chat": {"id": chat_id, "type": "private"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "TOT"},
                "text": params.get("text", ""),
            }
            if params.get("reply_markup"):
                message["reply_markup"] = params["reply_markup"]
            return message
        if method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            return True
        return None

    async def handle(self, request: HttpRequest) -> JSONResponse:
        token = request.path_params["token"]
        method = request.path_params["method"]
        params: dict[str, Any] = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if "json" in content_type:
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
        elif "x-www-form-urlencoded" in content_type:
            for key, value in urllib.parse.parse_qsl((await request.body()).decode()):
                params[key] = _decoded(value)
        self._record(Request(method, params, token, int(time.time() * 1000)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        queued = self.failures.get(method)
        if queued:
            status, body = queued.pop(0)
            return JSONResponse(body, status_code=status)
        result = self._result(method, params)
        if result is None:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"}, status_code=404)
        return JSONResponse({"ok": True, "result": result})

    async def open_link(self, request: HttpRequest) -> HTMLResponse:
        """A deep link opened (module docstring): ``/start <token>`` from a new chat to the webhook."""
        token = request.query_params.get("start", "")
        if not self.webhook_url:
            return HTMLResponse("<p>No webhook is set: the fake cannot reach the bot.</p>", status_code=503)
        chat = next(self._chats)
        sender = {"id": chat, "is_bot": False, "first_name": "Demo", "language_code": "en"}
        message = {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private"},
            "from": sender,
            "text": f"/start {token}".strip(),
        }
        try:
            answer = await self.deliver(self.webhook_url, {"message": message}, self.webhook_secret)
            verdict = str(answer.json().get("handled", answer.status_code))
        except (httpx.HTTPError, ValueError) as exc:
            verdict = type(exc).__name__
        name = html.escape(request.path_params["username"])
        return HTMLResponse(
            f"<!doctype html><meta charset=utf-8><title>Fake Telegram</title>"
            f"<h1>Fake Telegram: @{name}</h1><p>Pressed Start in chat {chat}: the bot says "
            f"<strong id=verdict>{html.escape(verdict)}</strong>.</p>"
            f"<p>Messages to this chat are in the demo's notification log.</p>"
        )

    def app(self) -> Starlette:
        """The ASGI application."""
        return Starlette(
            routes=[
                Route("/bot{token}/{method}", self.handle, methods=["GET", "POST"]),
                Route("/{username}", self.open_link, methods=["GET"]),
            ],
        )

    async def deliver(
        self, webhook_url: str, update: dict[str, Any], secret: str | None, update_id: int | None = None
    ) -> httpx.Response:
        """Post ``update`` (``update_id`` added: the given one or the next) to ``webhook_url`` with the
        secret-token header (none when ``secret`` is None), as Telegram does; returns the response."""
        body = {"update_id": next(self._update_ids) if update_id is None else update_id, **update}
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(webhook_url, json=body, headers=headers)


def _decoded(value: str) -> Any:
    if value[:1] in "{[":
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Servable(Protocol):
    """A fake with an ASGI app (:class:`FakeBotApi`, ``fake_sms.FakeSmsGateway``)."""

    def app(self) -> Starlette: ...


@contextlib.asynccontextmanager
async def serving(fake: Servable, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``fake`` on 127.0.0.1 (a free port unless given) in this event loop; yields its base URL
    (``http://127.0.0.1:<port>``, the value of ``TOT_TELEGRAM_API_URL``)."""
    port = port or free_port()
    # log_config=None: in a test process the fake must not reconfigure logging (uvicorn sets its
    # loggers' levels; a later test reading uvicorn.error at INFO would see nothing).
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def serving_in_thread(fake: Servable, port: int | None = None) -> Iterator[str]:
    """Serve ``fake`` on 127.0.0.1 from a thread of its own (for tests whose servers are other
    processes and whose fixtures are not async); yields its base URL."""
    port = port or free_port()
    # log_config=None: in a test process the fake must not reconfigure logging (uvicorn sets its
    # loggers' levels; a later test reading uvicorn.error at INFO would see nothing).
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-telegram", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Bot API did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def main(argv: list[str] | None = None) -> None:
    """``python -m server.notify.fake_telegram [--port N]``: serve until interrupted, printing requests."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args(argv)
    fake = FakeBotApi(echo=True)
    print(f"fake Telegram Bot API on http://127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
