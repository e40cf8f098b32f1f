"""The shared deadline worker: routes by kind, completes after the handler, keeps a failed entry claimed,
keeps an entry its handler scheduled again, drops unknown kinds, and resumes through its hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from dispatch.deadline_worker import DeadlineWorker, Pacing, split_key
from dispatch.deadlines import Claim
from dispatch.deadlines_memory import MemoryDeadlines

NOW_MS = 1_000_000


def worker(
    deadlines: MemoryDeadlines, on_resume: Callable[[], Awaitable[None]] | None = None
) -> DeadlineWorker:
    return DeadlineWorker(deadlines, lambda: NOW_MS, pacing=Pacing(idle_s=0.01), on_resume=on_resume)


def test_split_key() -> None:
    assert split_key("step:abc") == ("step", "abc")
    assert split_key("sos:a:b") == ("sos", "a:b")
    assert split_key("plain") == ("", "plain")


async def test_routes_by_kind_and_completes() -> None:
    deadlines = MemoryDeadlines()
    seen: list[tuple[str, str]] = []

    async def on_step(ident: str, claim: Claim) -> None:
        seen.append(("step", ident))

    async def on_offer(ident: str, claim: Claim) -> None:
        seen.append(("offer", ident))

    w = worker(deadlines)
    w.route("step", on_step)
    w.route("offer", on_offer)
    with pytest.raises(ValueError):
        w.route("step", on_step)
    await deadlines.schedule("step:1", NOW_MS - 1)
    await deadlines.schedule("offer:2", NOW_MS)
    await deadlines.schedule("other:3", NOW_MS)
    for claim in await deadlines.claim_due(NOW_MS):
        await w.handle(claim)
    assert sorted(seen) == [("offer", "2"), ("step", "1")]
    assert await deadlines.count() == 0  # the unknown kind is dropped too


async def test_failed_handler_keeps_claim_and_rescheduled_entry_survives() -> None:
    deadlines = MemoryDeadlines()

    async def fails(ident: str, claim: Claim) -> None:
        raise RuntimeError("boom")

    async def again(ident: str, claim: Claim) -> None:
        await deadlines.schedule(claim.key, NOW_MS + 5_000)

    w = worker(deadlines)
    w.route("bad", fails)
    w.route("again", again)
    await deadlines.schedule("bad:1", NOW_MS)
    await deadlines.schedule("again:1", NOW_MS)
    for claim in await deadlines.claim_due(NOW_MS):
        w.spawn(w._handle_logged(claim))
    await w.wait_idle()
    bad = await deadlines.get("bad:1")
    assert bad is not None and bad.attempt == 1  # still claimed: back after the lease
    kept = await deadlines.get("again:1")
    assert kept is not None and kept.due_ms == NOW_MS + 5_000 and kept.attempt == 0


async def test_resume_runs_the_hook() -> None:
    calls: list[int] = []

    async def hook() -> None:
        calls.append(1)

    await worker(MemoryDeadlines(), on_resume=hook).resume()
    await worker(MemoryDeadlines()).resume()  # no hook: nothing
    assert calls == [1]
