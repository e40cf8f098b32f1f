"""What every simulated app of one run shares: the server, the clock, the options, the record."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from loadtests.replay.accounts import AccountBook
from loadtests.replay.api import Rest, TokenFn
from loadtests.replay.clock import ReplayClock
from loadtests.replay.options import Behaviour
from loadtests.replay.recorder import Recorder
from realtime.client import ClientEvent, Event, RecoveryFailed, SubscriptionLost, TotClient

log = logging.getLogger("tot.replay")

PING_INTERVAL_S = 20.0
"""Wall seconds between the client's keepalive pings (the server closes sockets idle for 60 s)."""
REQUEST_TIMEOUT_S = 30.0
"""Wall seconds a socket request waits for its answer (TotClient's default is 10): a loaded server
answers late, and a request given up on may still have been carried out."""


def make_client(ctx: Context, token: TokenFn, **options: Any) -> TotClient:
    """A ``TotClient`` for one simulated app, with the replay's ping interval and request timeout."""
    return TotClient(
        ctx.url, token, ping_interval_s=PING_INTERVAL_S, request_timeout_s=REQUEST_TIMEOUT_S, **options
    )


@dataclass
class Context:
    """Shared by the apps of one run. ``stop`` is set when the run ends."""

    url: str
    rest: Rest
    book: AccountBook
    clock: ReplayClock
    behaviour: Behaviour
    recorder: Recorder
    seed: int
    specialty: str = "therapist"
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def rng(self, name: str) -> random.Random:
        """A random generator of its own for ``name``, derived from the run's seed."""
        return random.Random(f"{self.seed}:{name}")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; failures are logged and counted, never lost silently."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.recorder.error("task", type(exc).__name__)
            log.warning("replay task %s failed: %r", task.get_name(), exc)

    async def cancel_background(self) -> None:
        """Cancel every task still running from :meth:`spawn`."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


def track_offsets(recorder: Recorder, client: str, item: ClientEvent) -> None:
    """Feed one item of ``TotClient.events()`` to the offset ledger."""
    ledger = recorder.offsets
    if isinstance(item, Event):
        if item.offset is not None and item.epoch is not None:
            ledger.event(client, item.channel, item.offset, item.epoch)
    elif isinstance(item, RecoveryFailed):
        ledger.recovery(client, item.channel, item.position)
    elif isinstance(item, SubscriptionLost):
        ledger.lost(client, item.channel)


async def subscribe(recorder: Recorder, client: TotClient, name: str, channel: str) -> None:
    """Subscribe ``client`` (called ``name`` in the ledger) to ``channel`` and start its offset record.
    Raises what ``TotClient.subscribe`` raises."""
    subscribed = await client.subscribe(channel)
    recorder.offsets.start(name, channel, subscribed.position)
