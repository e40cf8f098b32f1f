"""Requests: send a frame with a fresh ``ref`` and wait for the frame that answers it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed

from realtime.client.errors import ConnectionLost
from realtime.client.state import ClientState, Pending
from realtime.client.values import Position
from realtime.client.wire import close_of, retrieve


class Requests(ClientState):
    """Requests and their answers (``ref`` -> :class:`~realtime.client.state.Pending`)."""

    async def _call(
        self,
        frame: dict[str, Any],
        *,
        since: Position | None = None,
        resubscribe: bool = False,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        ws = self._connection()
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(retrieve)
        self._pending[ref] = Pending(future, since, resubscribe)
        try:
            await ws.send(orjson.dumps({**frame, "ref": ref}).decode())
            return await asyncio.wait_for(future, self._timeout if timeout_s is None else timeout_s)
        except ConnectionClosed as exc:
            raise ConnectionLost(*close_of(exc)) from None
        finally:
            self._pending.pop(ref, None)

    def _answered(self, frame: dict[str, Any]) -> Pending | None:
        """The request a frame answers (no longer pending), by its ``ref``."""
        ref = frame.get("ref")
        return self._pending.pop(ref, None) if isinstance(ref, int) else None
