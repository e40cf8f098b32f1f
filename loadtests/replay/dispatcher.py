"""The dispatcher console: a few stay connected through the run, as real WebSocket clients.

Each subscribes to ``dispatch`` (every call's creation and status changes, escalations) and ``sos``.
Work is shared out by id (alert or call id modulo the number of dispatchers), as a team would:

- an SOS alert (``sos.raised``) is acknowledged (``sos.ack``) by its dispatcher after
  ``wall_sos_ack_delay_s`` (wall seconds: the server repeats an unacknowledged SOS on its own timer);
- an escalated call (``call.escalated``: nobody took it) is re-launched
  (``POST /v1/calls/{id}/relaunch``) with probability ``relaunch_share`` after
  ``wall_relaunch_delay_s``; the others are left escalated. The decision is made once per call: a
  re-launched call that escalates again stays escalated.

Every ``call.status`` they see feeds the replay's knowledge of each call's latest status (the
"no call lost" check compares it with the server's record).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from loadtests.replay.accounts import Account
from loadtests.replay.api import ApiError
from loadtests.replay.context import Context, make_client, subscribe, track_offsets
from loadtests.replay.recorder import now_ms
from realtime.client import ClientError, ConnectionLost, Event


class DispatcherApp:
    """Dispatcher ``index`` of ``team`` consoles."""

    def __init__(self, ctx: Context, account: Account, index: int, team: int) -> None:
        self.ctx = ctx
        self.account = account
        self.index = index
        self.team = team
        self.name = f"dispatcher:{index}"
        self.rng = ctx.rng(self.name)
        self.client = make_client(ctx, ctx.book.token_source(account), max_queued_events=10_000)
        self._acked: set[str] = set()
        self._decided: set[str] = set()  # escalated calls this dispatcher has decided on

    def _mine(self, some_id: str) -> bool:
        try:
            return uuid.UUID(some_id).int % self.team == self.index
        except ValueError:
            return self.index == 0

    async def connect(self) -> None:
        """Open the socket and subscribe to ``dispatch`` and ``sos``."""
        await self.client.connect()
        await subscribe(self.ctx.recorder, self.client, self.name, "dispatch")
        await subscribe(self.ctx.recorder, self.client, self.name, "sos")

    async def run(self) -> None:
        """Read events until cancelled."""
        recorder = self.ctx.recorder
        async for item in self.client.events():
            track_offsets(recorder, self.name, item)
            if not isinstance(item, Event):
                continue
            data: Any = item.data
            if item.type == "call.status":
                recorder.observe(str(data["call"]), str(data["status"]), int(data["version"]))
            elif item.type == "call.escalated":
                call_id = str(data["call"]["id"])
                recorder.actions["escalation seen"] += 1
                if call_id in self._decided or not self._mine(call_id):
                    continue
                self._decided.add(call_id)  # one decision per call: re-launch once, or leave it
                wanted = self.rng.random() < self.ctx.behaviour.relaunch_share
                if wanted and not self.ctx.stop.is_set():
                    self.ctx.spawn(self._relaunch(call_id), f"{self.name}:relaunch")
            elif item.type == "sos.raised":
                sos_id = str(data["id"])
                if self._mine(sos_id) and sos_id not in self._acked:
                    self._acked.add(sos_id)
                    self.ctx.spawn(self._ack(sos_id), f"{self.name}:ack")

    async def _relaunch(self, call_id: str) -> None:
        await asyncio.sleep(self.rng.uniform(*self.ctx.behaviour.wall_relaunch_delay_s))
        if self.ctx.stop.is_set():  # the run is winding down: nobody would answer the new offers
            return
        try:
            call = await self.ctx.rest.call(
                "POST", f"/v1/calls/{call_id}/relaunch", token=self.ctx.book.token_source(self.account)
            )
        except ApiError as exc:
            self.ctx.recorder.error("relaunch", exc.code)  # e.g. the patient cancelled meanwhile
            return
        self.ctx.recorder.actions["escalated call relaunched"] += 1
        log = self.ctx.recorder.by_id.get(call_id)
        if log is not None:
            log.relaunches += 1
        self.ctx.recorder.observe(call_id, str(call["status"]), int(call["version"]))

    async def _ack(self, sos_id: str) -> None:
        await asyncio.sleep(self.rng.uniform(*self.ctx.behaviour.wall_sos_ack_delay_s))
        try:
            await self.client.request("sos.ack", sos=sos_id)
        except (ClientError, ConnectionLost, TimeoutError) as exc:
            self.ctx.recorder.error("sos.ack", getattr(exc, "code", type(exc).__name__))
            return
        self.ctx.recorder.sos_acked_ms.setdefault(sos_id, now_ms())
        self.ctx.recorder.actions["sos acknowledged"] += 1
