"""What the simulated clients saw and did during a run, for the report and the integrity checks.

Times are wall clock (``time.time()``) in epoch milliseconds unless a name says ``replay_`` (the
replayed day's epoch seconds). One :class:`Recorder` per run, shared by every app of the run (one
event loop, no locks needed).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from realtime.client import Position

FINAL_STATUSES = frozenset({"completed", "cancelled"})
SETTLED_STATUSES = FINAL_STATUSES | {"escalated"}
"""Statuses in which a call waits for nobody in the replay (escalated: a dispatcher left it)."""


def now_ms() -> float:
    """Wall clock, epoch milliseconds (float: sub-millisecond latencies stay visible)."""
    return time.time() * 1000.0


@dataclass(slots=True)
class CallLog:
    """One replayed call as the replay knows it. ``status``/``version``: the observation with the
    highest version (from the patient's and the dispatchers' sockets and the replay's own REST answers)."""

    key: str
    replay_ts: float
    patient: str
    call_id: str | None = None
    created_ms: float | None = None
    error: str | None = None
    status: str | None = None
    version: int = 0
    cancel_planned: bool = False
    cancelled_by_patient: bool = False
    sos_planned: bool = False
    sos_raised: bool = False
    chat_sent: bool = False
    rated: bool = False
    relaunches: int = 0


@dataclass(slots=True)
class ServerSample:
    """One ``GET /metrics`` poll: wall and replay time (s), server CPU seconds and resident bytes."""

    wall_s: float
    replay_s: float
    cpu_s: float
    rss_bytes: float


@dataclass(slots=True)
class UtilisationSample:
    """Doctors by app state at one replay time (epoch seconds)."""

    replay_s: float
    counts: dict[str, int]


class OffsetLedger:
    """Offsets each client saw per channel, checked as they come: within an epoch every event must
    carry the previous offset + 1, starting after the position ``subscribed`` named. A
    ``RecoveryFailed`` (the server could not fill a gap and said so) restarts the sequence at its
    position and is counted apart: it is not a gap."""

    MAX_DETAILS = 20

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[str, int]] = {}
        self._early: dict[tuple[str, str], list[tuple[str, int]]] = {}
        self.streams = 0
        self.events = 0
        self.gaps = 0
        self.gap_details: list[str] = []
        self.recovery_failed = 0
        self.subscriptions_lost = 0

    def start(self, client: str, channel: str, position: Position) -> None:
        """``client`` subscribed to ``channel``; events follow after ``position``. Events the app read
        before the subscribing coroutine got here are checked now."""
        self.streams += 1
        key = (client, channel)
        self._last[key] = (position.epoch, position.offset)
        for epoch, offset in self._early.pop(key, []):
            self._check(key, epoch, offset)

    def event(self, client: str, channel: str, offset: int, epoch: str) -> None:
        """An event with an offset (ephemeral events have none and are not counted)."""
        self.events += 1
        key = (client, channel)
        if key not in self._last:  # read before start() ran: checked there
            self._early.setdefault(key, []).append((epoch, offset))
            return
        self._check(key, epoch, offset)

    def _check(self, key: tuple[str, str], epoch: str, offset: int) -> None:
        client, channel = key
        last = self._last.get(key)
        if last != (epoch, offset - 1):
            self.gaps += 1
            if len(self.gap_details) < self.MAX_DETAILS:
                self.gap_details.append(f"{client} {channel}: after {last} came ({epoch!r}, {offset})")
        self._last[key] = (epoch, offset)

    def unchecked(self) -> int:
        """Events whose subscription never reported its position (counted as gaps by the check)."""
        return sum(len(v) for v in self._early.values())

    def recovery(self, client: str, channel: str, position: Position) -> None:
        """The server said it could not recover ``channel``: events continue after ``position``."""
        self.recovery_failed += 1
        self._last[(client, channel)] = (position.epoch, position.offset)

    def lost(self, client: str, channel: str) -> None:
        """A resubscription was refused (``SubscriptionLost``)."""
        self.subscriptions_lost += 1
        self._last.pop((client, channel), None)


@dataclass
class Recorder:
    """Everything observed in one run."""

    calls: dict[str, CallLog] = field(default_factory=dict)
    """By call key (:attr:`loadtests.replay.inputs.CallSpec.key`)."""
    by_id: dict[str, CallLog] = field(default_factory=dict)
    offsets: OffsetLedger = field(default_factory=OffsetLedger)
    chat_latency_ms: list[float] = field(default_factory=list)
    tracking_latency_ms: list[float] = field(default_factory=list)
    chat_sent_ms: dict[str, float] = field(default_factory=dict)
    """Send time of each chat line, by its ``client_msg_id``."""
    sos_raised_ms: dict[str, float] = field(default_factory=dict)
    sos_acked_ms: dict[str, float] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    """Refusals and failures by ``action:code``."""
    actions: Counter[str] = field(default_factory=Counter)
    """What the simulated people did, by kind (offers accepted, declined, ignored, ...)."""
    utilisation: list[UtilisationSample] = field(default_factory=list)
    server: list[ServerSample] = field(default_factory=list)
    fixes_sent: int = 0
    loop_lag_ms: list[float] = field(default_factory=list)
    """The replay process's own event-loop lag samples (monitor.watch_loop_lag)."""
    last_change_s: float = 0.0
    """When a call's known status last changed (``time.monotonic()`` seconds)."""

    def new_call(self, log: CallLog) -> None:
        """A call is about to be created."""
        self.calls[log.key] = log

    def created(self, log: CallLog, call_id: str, version: int, status: str) -> None:
        """The server created ``log``'s call."""
        log.call_id = call_id
        self.by_id[call_id] = log
        self.observe(call_id, status, version)

    def observe(self, call_id: str, status: str, version: int) -> None:
        """A status of a call at ``version``, from any source; the highest version wins."""
        log = self.by_id.get(call_id)
        if log is not None and version >= log.version:
            if status != log.status:
                self.last_change_s = time.monotonic()
            log.status, log.version = status, version

    def error(self, action: str, code: str) -> None:
        """Count a refusal or failure."""
        self.errors[f"{action}:{code}"] += 1

    def unacknowledged_sos(self) -> int:
        """SOS alerts raised by patients and not yet acknowledged."""
        return sum(1 for sos_id in self.sos_raised_ms if sos_id not in self.sos_acked_ms)

    def open_calls(self) -> int:
        """Calls created and not yet settled (final or escalated), plus those still being created."""
        return sum(
            1
            for log in self.calls.values()
            if log.error is None and (log.status is None or log.status not in SETTLED_STATUSES)
        )
