"""The sender: delivers queued notification rows through their channels, from every process.

Each pass (:meth:`Sender.run_once`, driven by the injectable clock):

1. rows left ``sending`` by a sender whose lease has passed become ``failed`` / ``outcome_unknown``
   (it died after handing the message to the provider, or about to: resending could deliver twice,
   and a notification is sent **at most once**);
2. claims up to ``batch`` due ``queued`` rows of its channels with a lease (``lease_ms``; PostgreSQL:
   SKIP LOCKED), soonest first; the ``suppress`` hook may make some ``suppressed`` there and then (a
   web push of an offer the app acknowledged on its socket, ``server/notify/push_acks.py``);
3. for each: waits for nothing. When the provider's rate (:class:`~server.notify.throttle.RateGate`)
   or the address's pace (``notify_throttle``, shared) is not free, the row is put back due when it
   frees (no attempt counted). Otherwise, in one transaction, takes the address's slot and marks the
   row ``sending`` (attempts + 1); then calls the provider (bounded by ``send_timeout_ms``) and records
   the outcome: ``sent`` (with the provider's message id); on :class:`RetryAfter` queued again due
   after exactly that wait (and the address held as long); on a transient error queued with backoff
   (``backoff_ms`` doubling, at most ``backoff_max_ms``) until ``max_attempts``, then ``failed``; on a
   permanent error ``failed``. A row whose person has no address on the channel any more (unlinked)
   is ``failed`` / ``not_reachable``.

The message is built at send time in the person's current language and time zone
(``server/notify/templates.py``), with its buttons (``server/notify/actions.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.notifications import Notification
from models.repositories import notifications as repo
from models.repositories.notifications import Person
from realtime.clock import Clock, wall_clock_ms
from server.notify.actions import buttons
from server.notify.channels import Channel, Message, PermanentError, RetryAfter, TransientError
from server.notify.group import TelegramGroupChannel
from server.notify.templates import render
from server.notify.throttle import RateGate

log = logging.getLogger("tot.notify")


@dataclass(frozen=True, slots=True)
class SenderSettings:
    """``interval_ms``: the longest pause between passes; ``lease_ms``: a claim's lease (and the time
    after which a row left ``sending`` counts as unknown); ``batch``: rows per claim;
    ``send_timeout_ms``: the longest provider call; ``max_attempts``: tries before ``failed``;
    ``backoff_ms`` / ``backoff_max_ms``: the wait after the first transient failure, doubling."""

    interval_ms: int = 200
    lease_ms: int = 30_000
    batch: int = 50
    send_timeout_ms: int = 10_000
    max_attempts: int = 5
    backoff_ms: int = 1_000
    backoff_max_ms: int = 300_000


@dataclass
class SenderStats:
    """Counters since start: ``sent``, ``retried`` (queued again after a failure), ``failed``,
    ``deferred`` (put back for pace), ``unknown`` (found ``sending`` after their sender died),
    ``suppressed`` (claimed, then not sent: :data:`Suppressor`)."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    deferred: int = 0
    unknown: int = 0
    suppressed: int = 0


def backoff_ms(settings: SenderSettings, attempts: int) -> int:
    """The wait after the ``attempts``-th failed try (1 -> ``backoff_ms``, doubling, capped)."""
    return int(min(settings.backoff_max_ms, settings.backoff_ms * 2 ** max(0, attempts - 1)))


Suppressor = Callable[[AsyncSession, Sequence[Notification], int], Awaitable[Mapping[int, str]]]
"""``(session, claimed rows, now ms) -> {row id: reason}``: rows not to send after all, made
``suppressed`` with that reason in the claim's transaction (an offer the app acknowledged,
``server/notify/push_acks.py``)."""


class Sender:
    """See the module docstring. ``channels``: by name; ``owner``: this process's lease identity;
    ``suppress``: a :data:`Suppressor`."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        *,
        settings: SenderSettings | None = None,
        clock: Clock = wall_clock_ms,
        owner: str | None = None,
        suppress: Suppressor | None = None,
    ) -> None:
        self.sessions = sessions
        self.suppress = suppress
        self.channels = dict(channels)
        self.settings = settings or SenderSettings()
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex
        self.gates = {name: RateGate(ch.rate_per_s, clock) for name, ch in self.channels.items()}
        self.stats = SenderStats()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """One pass (module docstring); returns how many rows were sent."""
        now = self.clock()
        async with self.sessions.begin() as session:
            self.stats.unknown += await repo.give_up_unknown(session, now)
            rows = await repo.claim_due(
                session,
                self.owner,
                now,
                now + self.settings.lease_ms,
                list(self.channels),
                self.settings.batch,
            )
            if not rows:
                return 0
            if self.suppress is not None:
                reasons = await self.suppress(session, rows, now)
                for row_id, reason in reasons.items():
                    await repo.finish(
                        session,
                        row_id,
                        self.owner,
                        status="suppressed",
                        now_ms=now,
                        error=reason,
                        from_status="queued",
                    )
                self.stats.suppressed += len(reasons)
                rows = [row for row in rows if row.id not in reasons]
            ids = list({row.person_id for row in rows if row.person_id is not None})
            people = await repo.people(session, ids)
            addresses = {name: await ch.addresses(session, ids) for name, ch in self.channels.items()}
        sent = 0
        for row in rows:
            if row.person_id is None:
                person, address = self._group(row.channel)
            else:
                person, address = people.get(row.person_id), addresses[row.channel].get(row.person_id)
            sent += await self._deliver(row, person, address)
        return sent

    def _group(self, name: str) -> tuple[Person | None, str | None]:
        """A group chat's row (``server/notify/group.py``): the group's language, the default time
        zone, its one address."""
        channel = self.channels[name]
        if not isinstance(channel, TelegramGroupChannel):
            return None, None
        room = Person(uuid.UUID(int=0), channel.language, None, None, None, None, None, True)
        return room, channel.group_address

    async def _put_back(self, row: Notification, due_ms: int) -> None:
        async with self.sessions.begin() as session:
            await repo.finish(
                session,
                row.id,
                self.owner,
                status="queued",
                now_ms=self.clock(),
                next_attempt_ms=due_ms,
                from_status="queued",
            )
        self.stats.deferred += 1

    async def _deliver(self, row: Notification, person: Person | None, address: str | None) -> int:
        channel = self.channels[row.channel]
        gate = self.gates[row.channel]
        now = self.clock()
        if person is None or address is None:
            async with self.sessions.begin() as session:
                await repo.finish(
                    session,
                    row.id,
                    self.owner,
                    status="failed",
                    now_ms=now,
                    error="not_reachable",
                    from_status="queued",
                )
            self.stats.failed += 1
            return 0
        wait = gate.wait_ms()
        if wait:
            await self._put_back(row, now + wait)
            return 0
        key = f"{row.channel}:{address}"
        async with self.sessions.begin() as session:
            free_at = None
            if channel.address_interval_ms > 0:  # e-mail keeps no pace per address
                free_at = await repo.take_throttle(session, key, now, channel.address_interval_ms)
            if free_at is None:
                begun = await repo.begin_send(session, row.id, self.owner, now, now + self.settings.lease_ms)
        if free_at is not None:
            await self._put_back(row, free_at)
            return 0
        if not begun:
            return 0
        gate.take()
        params = orjson.loads(row.params)
        text = render(row.kind, person.language, params, person.time_zone)
        message = Message(
            text=text,
            subject=text.split("\n", 1)[0][:120],
            buttons=buttons(row.kind, params, person.language, row.call_id),
            key=f"notification:{row.id}",
            kind=row.kind,
            params=params,
            call_id=None if row.call_id is None else str(row.call_id),
            language=person.language,
        )
        attempts = row.attempts + 1
        try:
            async with asyncio.timeout(self.settings.send_timeout_ms / 1000):
                ref = await channel.send(address, message)
        except RetryAfter as exc:
            until = self.clock() + round(exc.seconds * 1000)
            async with self.sessions.begin() as session:
                if channel.address_interval_ms > 0:
                    await repo.push_throttle(session, key, until)
                await repo.finish(
                    session,
                    row.id,
                    self.owner,
                    status="queued",
                    now_ms=self.clock(),
                    next_attempt_ms=until,
                    error=str(exc),
                )
            self.stats.retried += 1
            return 0
        except PermanentError as exc:
            await self._fail(row, str(exc))
            return 0
        except (TransientError, TimeoutError, OSError) as exc:
            error = str(exc) or type(exc).__name__
            if attempts >= self.settings.max_attempts:
                await self._fail(row, error)
                return 0
            async with self.sessions.begin() as session:
                await repo.finish(
                    session,
                    row.id,
                    self.owner,
                    status="queued",
                    now_ms=self.clock(),
                    next_attempt_ms=self.clock() + backoff_ms(self.settings, attempts),
                    error=error,
                )
            self.stats.retried += 1
            return 0
        async with self.sessions.begin() as session:
            await repo.finish(
                session, row.id, self.owner, status="sent", now_ms=self.clock(), provider_ref=ref
            )
        self.stats.sent += 1
        return 1

    async def _fail(self, row: Notification, error: str) -> None:
        async with self.sessions.begin() as session:
            await repo.finish(session, row.id, self.owner, status="failed", now_ms=self.clock(), error=error)
        self.stats.failed += 1
        log.warning(
            "notification failed", extra={"notification": row.id, "channel": row.channel, "error": error}
        )

    async def run(self) -> None:
        """Passes until cancelled: again at once after a pass that sent something, else after
        ``interval_ms`` or when woken. A failing pass is logged and the loop goes on."""
        while True:
            self._wake.clear()
            sent = 0
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("notification sender pass failed")
            if sent:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval_ms / 1000)
