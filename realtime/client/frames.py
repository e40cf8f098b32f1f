"""Frames from the server: events into the app's queue, answers to their requests, positions kept
per channel (so that a reconnect recovers with neither gap nor duplicate)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from realtime.client.errors import ClientError, ConnectionLost
from realtime.client.requests import Requests
from realtime.client.values import Event, Position, RecoveryFailed, SubscriptionLost

log = logging.getLogger("tot.client")


class FrameHandler(Requests):
    """Reads the server's frames (one at a time, in order)."""

    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = orjson.loads(raw)
            await self._dispatch(frame["op"], frame)
        except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
            log.warning("unreadable server frame: %.200r", raw)

    async def _dispatch(self, op: str, frame: dict[str, Any]) -> None:
        if op == "event":
            await self._on_event(frame)
        elif op == "subscribed":
            await self._on_subscribed(frame)
        elif op == "error":
            self._on_error(frame)
        elif op == "unsubscribed" and "ref" not in frame:
            await self._on_ended(frame)
        elif op in ("ack", "unsubscribed", "pong"):
            pending = self._answered(frame)
            if pending is not None and not pending.future.done():
                pending.future.set_result(frame)
        elif op == "hello":
            self.hello = frame
        elif op == "reannounce":
            self._on_reannounce()
        else:
            log.debug("unknown server frame op %r", op)

    async def _on_event(self, frame: dict[str, Any]) -> None:
        channel = frame["ch"]
        offset, epoch = frame.get("offset"), frame.get("epoch")
        last = self._positions.get(channel)
        if last is None:
            return  # not subscribed (any more)
        if offset is not None and epoch == last.epoch and offset <= last.offset:
            log.debug("duplicate event dropped", extra={"channel": channel, "offset": offset})
            return
        await self._room.acquire()
        if channel not in self._positions:  # unsubscribed while we waited for room
            self._room.release()
            return
        if offset is not None:
            self._positions[channel] = Position(offset, str(epoch))
        self._queue.put_nowait(Event(channel, frame["type"], frame.get("data"), offset, epoch))

    async def _on_subscribed(self, frame: dict[str, Any]) -> None:
        channel, recovered = frame["ch"], bool(frame["recovered"])
        position = Position(**frame["position"])
        reason = frame.get("reason") or "unknown"
        pending = self._answered(frame)
        if pending is None:  # unasked: the server could not fill a gap; the app must re-read state
            if not recovered and channel in self._positions:
                self._positions[channel] = position
                await self._put(RecoveryFailed(channel, reason, position))
            return
        if not pending.resubscribe or channel in self._positions:
            # Recovered: the missed events follow, after ``since``. Otherwise: after ``position``.
            self._positions[channel] = pending.since if recovered and pending.since else position
            if pending.resubscribe and not recovered:
                await self._put(RecoveryFailed(channel, reason, position))
        if not pending.future.done():
            pending.future.set_result(frame)

    async def _on_ended(self, frame: dict[str, Any]) -> None:
        """``{"op":"unsubscribed","ch":...,"reason":...}`` without a ``ref``: the server ended the
        subscription. Nothing more of the channel comes, and it must not be resubscribed on reconnect."""
        channel = frame["ch"]
        position = self._positions.pop(channel, None)
        if position is not None:  # else the app unsubscribed meanwhile: nothing to tell
            reason = str(frame.get("reason") or "unsubscribed")
            await self._put(SubscriptionLost(channel, reason, "the server ended the subscription", position))

    def _on_error(self, frame: dict[str, Any]) -> None:
        error = ClientError(str(frame.get("code")), str(frame.get("message")), frame.get("field"))
        pending = self._answered(frame)
        if pending is None:
            log.warning("server refused a frame: %s", error)
        elif not pending.future.done():
            pending.future.set_exception(error)

    def _on_reannounce(self) -> None:
        """``{"op":"reannounce","reason":...}``: the server lost its live state (docs/protocol.md).
        Answered from a task (the answers are read by this very reader): the last fix again, stamped
        now (where the phone last was is where it is, as far as this client knows), then the last
        status. A refusal ("you are busy": the server already holds the doctor for a call) is expected."""
        self.reannounced += 1
        task = asyncio.get_running_loop().create_task(self._reannounce())
        self._reannouncing = task  # a reference, so the task is not collected while it runs

    async def _reannounce(self) -> None:
        fix, status = self.last_fix, self.announced_status
        try:
            if fix is not None:
                await self.send(
                    "location", **{**fix, "ts": max(int(time.time() * 1000), int(fix.get("ts", 0)))}
                )
            if status is not None:
                await self.request("doctor.status", status=status)
        except ClientError as exc:
            log.info("re-announced status refused: %s", exc)
        except (ConnectionLost, TimeoutError):
            pass  # a new connection starts from the app's own next frames

    async def send(self, op: str, /, **fields: Any) -> None:
        """See ``TotClient.send``."""
        raise NotImplementedError

    async def request(self, op: str, /, *, timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        """See ``TotClient.request``."""
        raise NotImplementedError
