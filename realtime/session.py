"""One connection's subscriptions: gap-free, duplicate-free delivery on top of the broker.

The broker delivers live publications at most once; a session turns that into exactly-once, in-order
delivery per channel for its client, as long as history reaches back far enough:

- subscribing with ``since`` registers the channel first (live publications are buffered), then reads
  history after ``since``, sends it, then flushes the buffer, skipping offsets already sent;
- a live publication whose offset jumps past ``last + 1`` (same epoch) means something was missed:
  the session recovers the channel from history before delivering more of it;
- a ``Resync`` from the broker (its queue overflowed, or Redis reconnected) does the same;
- when history cannot fill the gap, the client gets ``{"op":"subscribed","recovered":false,...}``
  again and must re-read state over REST (docs/protocol.md).

Ephemeral publications (offset 0: live positions) are never in history; they bypass gap detection and
coalesce in the send queue (latest wins).

The owner may *watch* event types (``watch``): after a publication of a watched type is queued for the
client, live or recovered from history, its callback runs. The gateway ends a doctor's subscription to
``call:<id>`` this way when ``call.unassigned`` reaches it. The check sits on the path of regular
publications only (:meth:`Session._emit`); ephemeral ones, the bulk of the traffic, never reach it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from realtime.broker import Broker, Publication, Recovery, StreamPosition
from realtime.protocol import encode
from realtime.send_queue import SendQueue

log = logging.getLogger("tot.session")


@dataclass
class ChannelState:
    """Where a session stands on one channel. ``recovering``: live publications wait in ``buffer``."""

    last_offset: int = 0
    epoch: str = ""
    recovering: bool = True
    buffer: list[tuple[Publication, str]] = field(default_factory=list)


WatchCallback = Callable[["Session", Publication], None]
"""Called with the session and a publication of a watched type, right after its frame was queued.
Synchronous: it runs inside delivery, before the next publication is handed to the session."""


def _position(position: StreamPosition) -> dict[str, Any]:
    return {"offset": position.offset, "epoch": position.epoch}


class Session:
    """A connected client's channel state and send queue (no socket here: the gateway writes).

    ``on_overflow`` is called once when the send queue overflows; the gateway closes the connection.
    ``watch``: event type -> callback (:data:`WatchCallback`), shared by every session of its owner.
    """

    __slots__ = (  # one per connection
        "_on_overflow",
        "_overflowed",
        "broker",
        "channels",
        "id",
        "send_queue",
        "watch",
    )

    def __init__(
        self,
        session_id: str,
        broker: Broker,
        send_queue: SendQueue,
        on_overflow: Callable[[], None],
        watch: Mapping[str, WatchCallback] | None = None,
    ) -> None:
        self.id = session_id
        self.broker = broker
        self.send_queue = send_queue
        self.channels: dict[str, ChannelState] = {}
        self.watch = watch
        self._on_overflow = on_overflow
        self._overflowed = False

    def send(self, frame: str, coalesce_key: str | None = None) -> None:
        """Queue a frame; on overflow, signal once and drop everything after."""
        if self._overflowed:
            return
        if not self.send_queue.push(frame, coalesce_key):
            self._overflowed = True
            self._on_overflow()

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue a server frame given as a dict."""
        self.send(encode(frame).decode())

    # --- live delivery ----------------------------------------------------------------------------

    def deliver(self, publication: Publication, text: str) -> bool:
        """Deliver a live publication. Returns False when a gap was detected (the caller then runs
        :meth:`recover` for the channel); the publication is buffered meanwhile."""
        state = self.channels.get(publication.channel)
        if state is None:
            return True
        if publication.offset == 0:  # ephemeral: no history, latest wins
            self.send(text, coalesce_key=f"{publication.channel}|{publication.type}")
            return True
        if state.recovering:
            state.buffer.append((publication, text))
            return True
        if publication.epoch == state.epoch:
            if publication.offset <= state.last_offset:
                return True  # already sent (recovered from history)
            if publication.offset > state.last_offset + 1:
                state.recovering = True
                state.buffer.append((publication, text))
                return False
        self._emit(state, publication, text)
        return True

    def _emit(self, state: ChannelState, publication: Publication, text: str) -> None:
        state.last_offset = publication.offset
        state.epoch = publication.epoch
        self.send(text)
        # Every regular publication the client gets passes here (live, recovered, flushed); one dict
        # lookup on the type, already decoded by the broker, is all it costs.
        if self.watch is not None:
            callback = self.watch.get(publication.type)
            if callback is not None:
                callback(self, publication)

    def _flush(self, channel: str, state: ChannelState) -> None:
        buffered, state.buffer = state.buffer, []
        state.recovering = False
        for publication, text in sorted(buffered, key=lambda item: item[0].offset):
            if publication.epoch == state.epoch and publication.offset <= state.last_offset:
                continue
            if publication.epoch == state.epoch and publication.offset > state.last_offset + 1:
                # Still a hole after recovery: history no longer has it. Deliver on, flagged below.
                log.warning("gap after recovery", extra={"channel": channel, "offset": publication.offset})
            self._emit(state, publication, text)

    # --- subscribe and recover --------------------------------------------------------------------

    def begin(self, channel: str) -> ChannelState:
        """Start tracking ``channel`` (before the broker subscription, so nothing slips past)."""
        state = ChannelState()
        self.channels[channel] = state
        return state

    async def start(self, channel: str, since: StreamPosition | None, ref: Any) -> None:
        """After the broker subscription: answer ``subscribed`` and send what was missed since
        ``since`` (or nothing, from the current position). Raises broker errors (the caller answers
        with an error frame and forgets the channel)."""
        state = self.channels[channel]
        frame: dict[str, Any] = {"op": "subscribed", "ch": channel}
        if ref is not None:
            frame["ref"] = ref
        if since is None:
            position = await self.broker.position(channel)
            state.last_offset, state.epoch = position.offset, position.epoch
            self.send_frame({**frame, "recovered": False, "position": _position(position)})
        else:
            recovery = await self.broker.recover(channel, since)
            self._apply_recovery(channel, state, recovery, frame)
        self._flush(channel, state)

    async def recover(self, channel: str) -> None:
        """Fill a gap (or a broker ``Resync``) from history, from the last offset sent."""
        state = self.channels.get(channel)
        if state is None:
            return
        state.recovering = True
        recovery = await self.broker.recover(channel, StreamPosition(state.last_offset, state.epoch))
        if self.channels.get(channel) is not state:
            return  # unsubscribed meanwhile
        if not recovery.recovered:
            self._apply_recovery(channel, state, recovery, {"op": "subscribed", "ch": channel})
        else:
            for publication in recovery.publications:
                self._emit(state, publication, publication.frame.decode())
        self._flush(channel, state)

    def _apply_recovery(
        self, channel: str, state: ChannelState, recovery: Recovery, frame: dict[str, Any]
    ) -> None:
        if recovery.recovered:
            self.send_frame({**frame, "recovered": True, "position": _position(recovery.position)})
            state.epoch = recovery.position.epoch
            state.last_offset = recovery.position.offset - len(recovery.publications)
            for publication in recovery.publications:
                self._emit(state, publication, publication.frame.decode())
            state.last_offset = max(state.last_offset, recovery.position.offset)
        else:
            assert recovery.failure is not None
            self.send_frame(
                {
                    **frame,
                    "recovered": False,
                    "reason": recovery.failure.value,
                    "position": _position(recovery.position),
                }
            )
            state.last_offset, state.epoch = recovery.position.offset, recovery.position.epoch

    def forget(self, channel: str) -> bool:
        """Stop tracking ``channel``; False when it was not tracked."""
        return self.channels.pop(channel, None) is not None
