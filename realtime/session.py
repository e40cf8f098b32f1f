"""One connection's subscriptions: gap-free, duplicate-free delivery on top of the broker.

The broker delivers live publications at most once; a session turns that into exactly-once, in-order
delivery per channel for its client, as long as history reaches back far enough, and otherwise says so:

- subscribing with ``since`` registers the channel first (live publications are buffered), then reads
  history after ``since``, sends it, then flushes the buffer, skipping offsets already sent;
- a live publication whose offset jumps past ``last + 1`` (or that opens another epoch anywhere but at
  offset 1) means something was missed: the session recovers the channel from history before
  delivering more of it;
- a ``Resync`` from the broker (its queue overflowed, or Redis reconnected) does the same;
- when history cannot fill the gap, the client gets ``{"op":"subscribed","recovered":false,...}``
  again and must re-read state over REST (docs/protocol.md).

**Recovery never goes silent** (:class:`RecoveryPolicy`). One recovery runs per channel at a time (a
``Resync`` arriving meanwhile asks the running one for another pass). A history read that raises or
takes longer than ``attempt_timeout_s`` is retried after a short pause, ``attempts`` times in all; a
hole that a successful read could not fill (a live publication dropped after the read) counts as an
attempt too. When they are used up, the client gets ``recovered:false`` with reason
``recovery_failed`` and a position just before the first publication still buffered (or its last
one), and the buffer is sent as is: the client re-reads over REST and continues. Live publications
wait in a buffer of at most ``max_buffer`` per channel while a recovery runs; one more signals the
owner's ``on_overflow`` (the gateway closes the connection with 4499, like a full send queue: the
client reconnects and resubscribes with ``since``), never unbounded growth.

Ephemeral publications (offset 0: live positions) are never in history; they bypass gap detection and
coalesce in the send queue (latest wins).

The owner may *watch* event types (``watch``): after a publication of a watched type is queued for the
client, live or recovered from history, its callback runs; also for a buffered publication that a
recovery showed to be stale (an older epoch, not sent: the client re-reads state instead), so that
what it ends still ends. The gateway ends a doctor's subscription to ``call:<id>`` this way when
``call.unassigned`` reaches it. The check sits on the path of regular publications only
(:meth:`Session._emit`); ephemeral ones, the bulk of the traffic, never reach it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from realtime.broker import Broker, Publication, Recovery, StreamPosition
from realtime.protocol import encode
from realtime.send_queue import SendQueue

log = logging.getLogger("tot.session")

RECOVERY_FAILED = "recovery_failed"
"""The ``reason`` of ``recovered:false`` when history could not be read (retries used up)."""


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """How hard a session tries to recover a channel, and what it holds meanwhile.

    ``attempts``: history reads per recovery (>= 1) before ``recovered:false``. ``backoff_s``: the
    pause before the 2nd, 3rd... attempt, seconds (the last value repeats). ``attempt_timeout_s``: a
    read taking longer counts as failed. ``max_buffer``: live publications held per channel while it
    recovers (one more: ``on_overflow``). ``sleep``: the pause (tests pass one that does not wait).
    Raises ``ValueError`` for values out of range.
    """

    attempts: int = 3
    backoff_s: tuple[float, ...] = (0.1, 0.5)
    attempt_timeout_s: float = 5.0
    max_buffer: int = 1000
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_buffer < 1 or self.attempt_timeout_s <= 0:
            raise ValueError("recovery attempts, max_buffer and attempt_timeout_s must be positive")
        if not self.backoff_s or min(self.backoff_s) < 0:
            raise ValueError("recovery backoff_s needs at least one pause, none negative")

    def pause_s(self, failures: int) -> float:
        """The pause after ``failures`` (>= 1) failed attempts, seconds."""
        return self.backoff_s[min(failures, len(self.backoff_s)) - 1]


DEFAULT_RECOVERY = RecoveryPolicy()


@dataclass
class ChannelState:
    """Where a session stands on one channel. ``recovering``: live publications wait in ``buffer``
    (arrival order). ``busy``: a history read (subscribe or recovery) is running; ``again``: another
    recovery was asked for meanwhile."""

    last_offset: int = 0
    epoch: str = ""
    recovering: bool = True
    buffer: list[tuple[Publication, str]] = field(default_factory=list)
    busy: bool = False
    again: bool = False


WatchCallback = Callable[["Session", Publication], None]
"""Called with the session and a publication of a watched type, right after its frame was queued (or
found stale, see the module docstring). Synchronous: it runs inside delivery, before the next
publication is handed to the session."""


def _position(position: StreamPosition) -> dict[str, Any]:
    return {"offset": position.offset, "epoch": position.epoch}


class Session:
    """A connected client's channel state and send queue (no socket here: the gateway writes).

    ``on_overflow`` is called once when the send queue overflows, or a channel's recovery buffer
    would exceed ``recovery.max_buffer``; the gateway closes the connection.
    ``watch``: event type -> callback (:data:`WatchCallback`), shared by every session of its owner.
    ``recovery``: retries, pauses and buffer bound of recoveries (shared).
    """

    __slots__ = (  # one per connection
        "_on_overflow",
        "_overflowed",
        "broker",
        "channels",
        "id",
        "recovery",
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
        recovery: RecoveryPolicy = DEFAULT_RECOVERY,
    ) -> None:
        self.id = session_id
        self.broker = broker
        self.send_queue = send_queue
        self.channels: dict[str, ChannelState] = {}
        self.watch = watch
        self.recovery = recovery
        self._on_overflow = on_overflow
        self._overflowed = False

    def send(self, frame: str, coalesce_key: str | None = None) -> None:
        """Queue a frame; on overflow, signal once and drop everything after."""
        if self._overflowed:
            return
        if not self.send_queue.push(frame, coalesce_key):
            self._overflow()

    def send_frame(self, frame: dict[str, Any]) -> None:
        """Queue a server frame given as a dict."""
        self.send(encode(frame).decode())

    def _overflow(self) -> None:
        """Signal the owner once; from now on nothing is queued or buffered (the connection closes)."""
        self._overflowed = True
        for state in self.channels.values():
            state.buffer = []
        self._on_overflow()

    # --- live delivery ----------------------------------------------------------------------------

    def deliver(self, publication: Publication, text: str) -> bool:
        """Deliver a live publication. Returns False when a gap was detected (the caller then runs
        :meth:`recover` for the channel); the publication is buffered meanwhile."""
        state = self.channels.get(publication.channel)
        if state is None or self._overflowed:
            return True
        if publication.offset == 0:  # ephemeral: no history, latest wins
            self.send(text, coalesce_key=f"{publication.channel}|{publication.type}")
            return True
        if state.recovering:
            self._buffer(state, publication, text)
            return True
        if publication.epoch == state.epoch:
            if publication.offset <= state.last_offset:
                return True  # already sent (recovered from history)
            gap = publication.offset > state.last_offset + 1
        else:
            # Another epoch: history was lost. Only its first publication proves nothing was missed in it.
            gap = publication.offset != 1
        if gap:
            state.recovering = True
            self._buffer(state, publication, text)
            return False
        self._emit(state, publication, text)
        return True

    def _buffer(self, state: ChannelState, publication: Publication, text: str) -> None:
        if len(state.buffer) >= self.recovery.max_buffer:
            log.warning("recovery buffer full", extra={"channel": publication.channel, "session": self.id})
            self._overflow()
            return
        state.buffer.append((publication, text))

    def _emit(self, state: ChannelState, publication: Publication, text: str) -> None:
        state.last_offset = publication.offset
        state.epoch = publication.epoch
        self.send(text)
        # Every regular publication the client gets passes here (live, recovered, flushed); one dict
        # lookup on the type, already decoded by the broker, is all it costs.
        self._watched(publication)

    def _watched(self, publication: Publication) -> None:
        if self.watch is not None:
            callback = self.watch.get(publication.type)
            if callback is not None:
                callback(self, publication)

    def _flush(self, channel: str, state: ChannelState) -> bool:
        """Right after a history read: send the buffered publications that follow it, in arrival
        order. Returns False, leaving the rest buffered, at a hole (an offset the read did not reach:
        another read is needed)."""
        buffered = state.buffer
        for index, (publication, text) in enumerate(buffered):
            if publication.epoch != state.epoch:
                # Delivered before the read that saw the current epoch: older than it, stale. The
                # client re-reads state (it was told recovered:false); only the watch still acts.
                self._watched(publication)
                continue
            if publication.offset <= state.last_offset:
                continue
            if publication.offset > state.last_offset + 1:
                state.buffer = buffered[index:]
                return False
            self._emit(state, publication, text)
        state.buffer = []
        state.recovering = False
        return True

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
        state.busy = True  # a Resync meanwhile waits for the answer (state.again), not races it
        try:
            if since is None:
                position = await self.broker.position(channel)
                state.last_offset, state.epoch = position.offset, position.epoch
                self.send_frame({**frame, "recovered": False, "position": _position(position)})
            else:
                recovery = await self.broker.recover(channel, since)
                self._apply_recovery(channel, state, recovery, frame)
        finally:
            state.busy = False
        if self.channels.get(channel) is not state:
            return
        if not self._flush(channel, state) or state.again:
            await self._catch_up(channel, state)

    async def recover(self, channel: str) -> None:
        """Fill a gap (or a broker ``Resync``) from history, from the last offset sent; retried, and
        ended by ``recovered:false`` when it cannot be done (see the module docstring). Does not raise
        broker errors."""
        state = self.channels.get(channel)
        if state is None or self._overflowed:
            return
        state.recovering = True
        if state.busy:
            state.again = True  # the running read may predate what this asks for: one more pass
            return
        await self._catch_up(channel, state)

    async def _catch_up(self, channel: str, state: ChannelState) -> None:
        """Read history until the buffer follows on without a hole, or the attempts are used up."""
        policy = self.recovery
        failures = 0
        state.busy = True
        try:
            while True:
                state.again = False
                recovery = await self._read(channel, state)
                if self.channels.get(channel) is not state or self._overflowed:
                    return  # unsubscribed meanwhile, or the connection is closing
                if recovery is not None:
                    if recovery.recovered:
                        for publication in recovery.publications:
                            if publication.offset > state.last_offset:
                                self._emit(state, publication, publication.frame.decode())
                    else:
                        self._apply_recovery(channel, state, recovery, {"op": "subscribed", "ch": channel})
                    if self._flush(channel, state) and not state.again:
                        return
                if not state.again or recovery is None:
                    failures += 1
                if failures >= policy.attempts:
                    self._give_up(channel, state)
                    return
                if failures:
                    await policy.sleep(policy.pause_s(failures))
                    if self.channels.get(channel) is not state or self._overflowed:
                        return
        finally:
            state.busy = False

    async def _read(self, channel: str, state: ChannelState) -> Recovery | None:
        """One history read from where the client stands; None when it raised or timed out."""
        since = StreamPosition(state.last_offset, state.epoch)
        try:
            async with asyncio.timeout(self.recovery.attempt_timeout_s):
                return await self.broker.recover(channel, since)
        except Exception as exc:  # the broker's errors, whatever the engine: retried, then given up
            log.warning("recovery attempt failed: %r", exc, extra={"channel": channel, "session": self.id})
            return None

    def _give_up(self, channel: str, state: ChannelState) -> None:
        """Attempts used up: ``recovered:false`` (reason ``recovery_failed``) at the position just
        before the first buffered publication (or the last sent), then the buffer as it is."""
        if state.buffer:
            first = state.buffer[0][0]
            position = StreamPosition(first.offset - 1, first.epoch)
        else:
            position = StreamPosition(state.last_offset, state.epoch)
        log.warning("recovery given up", extra={"channel": channel, "session": self.id})
        self.send_frame(
            {
                "op": "subscribed",
                "ch": channel,
                "recovered": False,
                "reason": RECOVERY_FAILED,
                "position": _position(position),
            }
        )
        state.last_offset, state.epoch = position.offset, position.epoch
        buffered, state.buffer = state.buffer, []
        state.recovering = False
        for publication, text in buffered:
            if publication.epoch == state.epoch and publication.offset <= state.last_offset:
                continue  # a duplicate; holes are delivered on (the client re-reads state anyway)
            self._emit(state, publication, text)

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
