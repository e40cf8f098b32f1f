"""The replay's REST client: JSON over ``httpx`` against the server's public ``/v1`` API.

One :class:`Rest` (one connection pool) serves every simulated person; each request names its bearer
token (a string or an async callable returning a fresh one, see :mod:`loadtests.replay.accounts`).
Network errors and 503 answers are retried a few times with backoff; any other refusal raises
:class:`ApiError` with the server's error ``code`` (docs/api.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

TokenFn = Callable[[], Awaitable[str]]
RETRIES = 3
RETRY_BACKOFF_S = 0.2


class ApiError(Exception):
    """A refused request: HTTP ``status``, the error body's ``code`` and ``message``, and ``body``."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class Rest:
    """JSON requests to one server. ``http`` carries the base URL and the connection pool."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | TokenFn | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send a request; return the decoded JSON body of a 2xx answer (None when empty). Raises
        :class:`ApiError` for refusals, ``httpx.HTTPError`` when the network fails ``RETRIES`` times."""
        all_headers = dict(headers or {})
        for attempt in range(RETRIES + 1):
            if token is not None:
                bearer = token if isinstance(token, str) else await token()
                all_headers["Authorization"] = f"Bearer {bearer}"
            try:
                response = await self.http.request(method, path, json=json, headers=all_headers)
            except httpx.TransportError:
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(RETRY_BACKOFF_S * 2**attempt)
                continue
            if response.status_code == 503 and attempt < RETRIES:
                await asyncio.sleep(RETRY_BACKOFF_S * 2**attempt)
                continue
            if response.is_success:
                return response.json() if response.content else None
            raise _error(response)
        raise AssertionError("unreachable")

    async def text(self, path: str) -> str:
        """GET a text resource (``/metrics``). Raises ``httpx.HTTPError``."""
        response = await self.http.get(path)
        response.raise_for_status()
        return response.text


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        code, message = str(error.get("code", "unknown")), str(error.get("message", ""))
    except ValueError:
        body, code, message = response.text, "unknown", response.text[:200]
    return ApiError(response.status_code, code, message, body)


async def wait_healthy(http: httpx.AsyncClient, timeout_s: float) -> dict[str, Any]:
    """Poll ``GET /v1/health`` until it answers 200 (returns its body). Raises ``TimeoutError`` with the
    last answer or error after ``timeout_s`` wall seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last = "no answer"
    while True:
        try:
            response = await http.get("/v1/health", timeout=5)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        if loop.time() > deadline:
            raise TimeoutError(f"{http.base_url} is not healthy after {timeout_s:g} s ({last})")
        await asyncio.sleep(0.25)
