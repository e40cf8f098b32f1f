"""After the run: the server's record of every call the replay created, read over REST as a dispatcher.

Per call: ``GET /v1/calls/{id}`` (status, doctor), ``GET /v1/calls/{id}/events`` (the status history,
oldest first, times in epoch ms) and ``GET /v1/calls/{id}/offers`` (every offer with its outcome,
distance in metres, ETA in seconds and times in epoch ms).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from loadtests.replay.api import ApiError, Rest, TokenFn

CONCURRENCY = 16


@dataclass(slots=True)
class ServerCall:
    """One call as the server has it; ``error`` is set when it could not be read."""

    call_id: str
    call: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    offers: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


async def collect_calls(
    rest: Rest, token: TokenFn, call_ids: list[str], progress: Callable[[], None] | None = None
) -> dict[str, ServerCall]:
    """The server's record of ``call_ids`` (``CONCURRENCY`` requests at a time); ``progress`` is called
    once per call read."""
    room = asyncio.Semaphore(CONCURRENCY)
    out: dict[str, ServerCall] = {}

    async def one(call_id: str) -> None:
        record = ServerCall(call_id)
        async with room:
            try:
                record.call = await rest.call("GET", f"/v1/calls/{call_id}", token=token)
                record.events = (await rest.call("GET", f"/v1/calls/{call_id}/events", token=token))["items"]
                record.offers = (await rest.call("GET", f"/v1/calls/{call_id}/offers", token=token))["items"]
            except ApiError as exc:
                record.error = f"HTTP {exc.status} {exc.code}"
            except Exception as exc:
                record.error = repr(exc)
        out[call_id] = record
        if progress is not None:
            progress()

    await asyncio.gather(*(one(c) for c in call_ids))
    return out
