"""The deriver: turns outbox events into notification rows, exactly once per (event, person, channel).

Every process runs one (``server/app.py``); one at a time is active, the holder of the lease row
``notify_rules`` in ``outbox_relay_lease`` (the relay's lease table and code). Each pass:

1. reads outbox rows the rules have not read (``notified_ms`` None: only the types of
   ``rules.NOTIFY_TYPES`` are staged so), oldest first, ``batch`` at a time;
2. applies the rules (``server/notify/rules.py``) and resolves each audience (a call's patient, the
   active dispatchers) and each person's channels: the inbox always; every configured
   :class:`~server.notify.channels.Channel` that carries the kind and has an address for them;
3. writes the rows in **the same transaction** that marks the outbox rows read: a crash before the
   commit leaves both undone (read again by the next holder), after it both done; the UNIQUE
   (event, person, channel) makes a second derivation (two holders around a lapsed lease) a no-op.

A group chat (the dispatchers' Telegram group, ``server/notify/group.py``) gets one more row per
event of the dispatchers' kinds, with no person (``person_id`` None), UNIQUE per (event, channel).

A row is ``queued`` (due now), ``sent`` for the inbox, or ``suppressed`` with the reason in
``last_error``: ``preference`` (the person turned the channel off for the kind), ``quiet_hours``, or
``late`` (the event is past its ``stale_ms``: an offer past its deadline is never announced).
Events older than ``max_age_ms`` are marked read without notifications (news that late misleads).

Why a worker and not rows written in the committing transaction: the rules read (a call's patient,
the dispatchers, links and preferences), and the dispatch path's transactions are measured to the
statement (docs/architecture.md); here they pay one column value. The flag is a per-row mark, not an
id cursor, so a row whose id is lower but whose commit came later (PostgreSQL assigns ids at insert)
is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.outbox import OutboxEvent
from models.repositories import notifications as repo
from models.repositories import outbox as outbox_repo
from realtime.clock import Clock, wall_clock_ms
from server.notify.channels import INBOX, Channel
from server.notify.group import TelegramGroupChannel
from server.notify.preferences import channel_enabled, held_back
from server.notify.rules import AudienceKind, Intent, intents

log = logging.getLogger("tot.notify")

LEASE_NAME = "notify_rules"


@dataclass(frozen=True, slots=True)
class DeriverSettings:
    """``interval_ms``: between passes; ``lease_ms``: the active deriver's lease; ``batch``: outbox
    rows per transaction; ``max_age_ms``: older events make no notifications; ``coalesce_ms``: how long
    a woken deriver waits for more commits before its pass (0: at once).

    Why coalesce: a pass costs about eight statements and a commit whatever its batch, and a call's
    life commits several notifying events within a few hundred milliseconds. Woken at once, every
    commit started its own pass beside the dispatch path's next step, on the same event loop and
    database pool (round trips that a busy loop makes slow: docs/benchmarks.md, issue 16). 100 ms
    costs a notification that much latency, far below what a person reading a phone notices."""

    interval_ms: int = 250
    coalesce_ms: int = 100
    lease_ms: int = 5_000
    batch: int = 200
    max_age_ms: int = 600_000


class Deriver:
    """See the module docstring. ``channels``: the configured channels by name; ``on_derived``:
    called after a pass wrote queued rows (wakes the local sender); ``holds``: see ``self.holds``;
    ``sleep``: the coalescing pause (seconds; tests hold it)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        *,
        settings: DeriverSettings | None = None,
        clock: Clock = wall_clock_ms,
        owner: str | None = None,
        on_derived: Callable[[], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        holds: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.sessions = sessions
        self.channels = dict(channels)
        self.settings = settings or DeriverSettings()
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex
        self.on_derived = on_derived
        self.holds = dict(holds or {})
        """``{(channel, kind): ms}``: such rows are due that long after their event, not at once (a
        web push of an offer waits for the app's socket acknowledgement, server/notify/push_acks.py)."""
        self.derived = 0
        """Notification rows written since start (a counter for metrics and tests)."""
        self.passes = 0
        """Passes made as the lease holder since start."""
        self._sleep = sleep
        self._held_until_ms = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def _lease(self) -> bool:
        now = self.clock()
        lease_ms = self.settings.lease_ms
        if now < self._held_until_ms - lease_ms // 2:
            return True
        async with self.sessions.begin() as session:
            held = await outbox_repo.take_lease(session, LEASE_NAME, self.owner, now, now + lease_ms)
        self._held_until_ms = now + lease_ms if held else 0
        return held

    async def run_once(self) -> int:
        """One pass; returns how many notification rows it wrote (0 when not the holder)."""
        if not await self._lease():
            return 0
        self.passes += 1
        written = 0
        while True:
            async with self.sessions.begin() as session:
                events = await repo.unnotified(session, self.settings.batch)
                if not events:
                    break
                rows = await self._rows(session, events)
                written += await repo.insert_notifications(session, rows)
                await repo.mark_notified(session, [e.id for e in events], self.clock())
            if len(events) < self.settings.batch or not await self._lease():
                break
        self.derived += written
        if written and self.on_derived is not None:
            self.on_derived()
        return written

    async def _rows(self, session: AsyncSession, events: list[OutboxEvent]) -> list[dict[str, Any]]:
        now = self.clock()
        found: list[tuple[OutboxEvent, Intent]] = []
        for event in events:
            if event.created_ms < now - self.settings.max_age_ms:
                continue
            try:
                payload = orjson.loads(event.payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(payload, dict):
                found.extend((event, intent) for intent in intents(event.channel, event.type, payload))
        if not found:
            return []
        patients = await repo.patients_of(
            session,
            [
                i.audience.ident
                for _, i in found
                if i.audience.kind is AudienceKind.PATIENT_OF_CALL and i.audience.ident
            ],
        )
        dispatchers: list[uuid.UUID] = []
        if any(i.audience.kind is AudienceKind.DISPATCHERS for _, i in found):
            dispatchers = await repo.active_dispatchers(session)
        targets: list[tuple[OutboxEvent, Intent, uuid.UUID]] = []
        for event, intent in found:
            audience = intent.audience
            if audience.kind is AudienceKind.PERSON and audience.ident is not None:
                targets.append((event, intent, audience.ident))
            elif audience.kind is AudienceKind.PATIENT_OF_CALL and audience.ident in patients:
                targets.append((event, intent, patients[audience.ident]))
            elif audience.kind is AudienceKind.DISPATCHERS:
                targets.extend((event, intent, person) for person in dispatchers)
        ids = [person for _, _, person in targets]
        people = await repo.people(session, ids)
        prefs = await repo.preferences(session, ids)
        reachable = {name: await channel.addresses(session, ids) for name, channel in self.channels.items()}
        rows = self._group_rows(found, now)
        for event, intent, person_id in targets:
            person = people.get(person_id)
            if person is None or not person.is_active:
                continue
            base = {
                "event_id": event.id,
                "person_id": person_id,
                "kind": intent.kind.value,
                "params": orjson.dumps(intent.params).decode(),
                "call_id": intent.call_id,
                "attempts": 0,
                "next_attempt_ms": now,
                "lease_until_ms": 0,
                "created_ms": now,
            }
            rows.append({**base, "channel": INBOX, "status": "sent", "sent_ms": now, "last_error": None})
            late = event.stale_ms is not None and event.stale_ms <= now
            for name, channel in self.channels.items():
                if channel.kinds is not None and intent.kind.value not in channel.kinds:
                    continue
                if person_id not in reachable[name]:
                    continue
                reason = None
                if late:
                    reason = "late"
                elif not channel_enabled(prefs, person_id, intent.kind.value, name):
                    reason = "preference"
                elif held_back(person, intent.kind, now):
                    reason = "quiet_hours"
                status = "queued" if reason is None else "suppressed"
                row = {**base, "channel": name, "status": status, "sent_ms": None, "last_error": reason}
                hold = self.holds.get((name, intent.kind.value))
                if hold is not None:
                    row["next_attempt_ms"] = max(now, event.created_ms + hold)
                rows.append(row)
        return rows

    def _group_rows(self, found: list[tuple[OutboxEvent, Intent]], now: int) -> list[dict[str, Any]]:
        """One row per event for each group channel that carries its kind (``server/notify/group.py``):
        ``person_id`` None, no inbox row, no preferences or quiet hours (a room, not a person)."""
        rows: list[dict[str, Any]] = []
        for name, channel in self.channels.items():
            if not isinstance(channel, TelegramGroupChannel):
                continue
            for event, intent in found:
                if intent.audience.kind is not AudienceKind.DISPATCHERS or intent.kind.value not in (
                    channel.kinds or ()
                ):
                    continue
                late = event.stale_ms is not None and event.stale_ms <= now
                rows.append(
                    {
                        "event_id": event.id,
                        "person_id": None,
                        "kind": intent.kind.value,
                        "params": orjson.dumps(intent.params).decode(),
                        "call_id": intent.call_id,
                        "attempts": 0,
                        "next_attempt_ms": now,
                        "lease_until_ms": 0,
                        "created_ms": now,
                        "channel": name,
                        "status": "suppressed" if late else "queued",
                        "sent_ms": None,
                        "last_error": "late" if late else None,
                    }
                )
        return rows

    async def run(self) -> None:
        """Passes until cancelled: every ``interval_ms``, or ``coalesce_ms`` after a wake. A failing
        pass is logged and the loop goes on."""
        while True:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("notification rules pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval_ms / 1000)
                if self.settings.coalesce_ms > 0:
                    await self._sleep(self.settings.coalesce_ms / 1000)

    async def stop(self) -> None:
        """Give the lease up (after ``run`` was cancelled)."""
        if not self._held_until_ms:
            return
        self._held_until_ms = 0
        try:
            async with self.sessions.begin() as session:
                await outbox_repo.release_lease(session, LEASE_NAME, self.owner)
        except Exception:
            log.warning("could not release the notification rules lease; it runs out by itself")
