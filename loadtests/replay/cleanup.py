"""Leaving the server as the replay found it: no call of the replay left open.

A call still open when a run ends (a visit longer than the drain, an escalated call nobody
re-launched, a crashed run) keeps its doctor busy on the server; the next run with the same accounts
would find those doctors unavailable. So a dispatcher cancels (``POST /v1/calls/{id}/cancel``, which
frees the doctor and withdraws open offers):

- at the end of a run, every call of the run not yet final, with the reason :data:`END_REASON`
  (the report counts them by the status they had: "open at end");
- at the start of a run, every open call of the replay's patient accounts left by an earlier run
  (:data:`LEFTOVER_REASON`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from loadtests.replay.api import ApiError, Rest, TokenFn
from loadtests.replay.recorder import FINAL_STATUSES, Recorder

END_REASON = "replay ended: closed by the replay's dispatcher"
LEFTOVER_REASON = "left open by an earlier replay"
OPEN_STATUSES = (
    "created",
    "searching",
    "offered",
    "assigned",
    "en_route",
    "arrived",
    "in_progress",
    "escalated",
)
PAGE = 200
CONCURRENCY = 8


async def cancel_calls(
    rest: Rest, token: TokenFn, call_ids: Iterable[str], reason: str, recorder: Recorder | None = None
) -> int:
    """Cancel ``call_ids`` as staff; returns how many were cancelled (calls that ended meanwhile are
    skipped). The answers feed ``recorder``'s knowledge of each call."""
    room = asyncio.Semaphore(CONCURRENCY)
    done = 0

    async def one(call_id: str) -> None:
        nonlocal done
        async with room:
            try:
                call = await rest.call(
                    "POST", f"/v1/calls/{call_id}/cancel", token=token, json={"reason": reason}
                )
            except ApiError as exc:
                if recorder is not None:
                    recorder.error("cleanup.cancel", exc.code)
                return
        done += 1
        if recorder is not None:
            recorder.observe(call_id, str(call["status"]), int(call["version"]))

    await asyncio.gather(*(one(c) for c in call_ids))
    return done


async def close_run(rest: Rest, token: TokenFn, recorder: Recorder) -> int:
    """End of a run: cancel every call of the run the replay does not know as final."""
    open_ids = [
        log.call_id
        for log in recorder.calls.values()
        if log.call_id is not None and log.status not in FINAL_STATUSES
    ]
    return await cancel_calls(rest, token, open_ids, END_REASON, recorder)


async def clear_leftovers(rest: Rest, token: TokenFn, patient_ids: set[str]) -> int:
    """Start of a run: cancel the open calls of ``patient_ids`` (earlier runs' leftovers)."""
    stale: list[str] = []
    offset = 0
    while True:
        page = await rest.call(
            "GET", f"/v1/calls?status={','.join(OPEN_STATUSES)}&limit={PAGE}&offset={offset}", token=token
        )
        items = page["items"]
        stale += [str(c["id"]) for c in items if str(c["patient_id"]) in patient_ids]
        if len(items) < PAGE:
            break
        offset += PAGE
    return await cancel_calls(rest, token, stale, LEFTOVER_REASON)
