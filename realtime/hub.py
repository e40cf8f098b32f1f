"""The process-local fan-out: one broker subscription per channel, many sessions behind it.

The hub reads the broker's single delivery queue and hands each publication to the local sessions on
its channel, decoding the frame to text once per publication (not once per session: the encode-once
rule extends to the UTF-8 decode that ASGI's text frames need). Gap and ``Resync`` recoveries run as
tasks so that one slow history read does not stall delivery to everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from realtime.broker import Broker, BrokerClosedError, Publication, Resync
from realtime.session import Session

log = logging.getLogger("tot.hub")


class Subscriber(Protocol):
    """What the hub hands a channel's publications to: a connection's :class:`Session`, or an
    in-process follower of a channel (``dispatch/call_feed.py``)."""

    @property
    def id(self) -> str:
        """Names the subscriber in logs."""
        ...

    def deliver(self, publication: Publication, text: str) -> bool:
        """Take one live ``publication`` of a channel it was added to, ``text`` being its frame
        decoded. Synchronous; must not raise. False asks the hub to run :meth:`recover` for the
        channel (a gap was seen)."""
        ...

    async def recover(self, channel: str) -> None:
        """Catch up on ``channel`` after a gap or a broker ``Resync``; raises broker errors (logged)."""
        ...


class Hub:
    """Channel -> local subscribers (sessions, mostly), fed by one broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._sessions: dict[str, set[Subscriber]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0

    def sessions(self, channel: str) -> frozenset[Subscriber]:
        """The local subscribers on ``channel``."""
        return frozenset(self._sessions.get(channel, ()))

    async def add(self, channel: str, session: Subscriber) -> None:
        """Subscribe ``session`` (the broker subscribes on the first local session). Raises broker
        errors, in which case the session is not added."""
        members = self._sessions.setdefault(channel, set())
        if session in members:
            return
        members.add(session)
        try:
            await self.broker.subscribe(channel)
        except BaseException:
            members.discard(session)
            if not members:
                self._sessions.pop(channel, None)
            raise

    async def remove(self, channel: str, session: Subscriber) -> None:
        """Unsubscribe ``session`` from ``channel`` (no-op when not subscribed)."""
        members = self._sessions.get(channel)
        if members is None or session not in members:
            return
        members.discard(session)
        if not members:
            del self._sessions[channel]
        await self.broker.unsubscribe(channel)

    async def remove_all(self, session: Session) -> None:
        """Unsubscribe ``session`` from everything (connection closed)."""
        for channel in list(session.channels):
            session.forget(channel)
            await self.remove(channel, session)

    def _spawn_recovery(self, session: Subscriber, channel: str) -> None:
        async def run() -> None:
            try:
                await session.recover(channel)
            except Exception:
                log.exception("recovery failed", extra={"channel": channel, "session": session.id})

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def dispatch(self, delivery: Publication | Resync) -> None:
        """Hand one broker delivery to the local sessions."""
        if isinstance(delivery, Resync):
            for channel in delivery.channels:
                for session in self.sessions(channel):
                    self._spawn_recovery(session, channel)
            return
        members = self._sessions.get(delivery.channel)
        if not members:
            return
        text = delivery.frame.decode()
        for session in tuple(members):
            if not session.deliver(delivery, text):
                self._spawn_recovery(session, delivery.channel)
        self.delivered += len(members)

    async def run(self) -> None:
        """Deliver until the broker closes."""
        while True:
            try:
                delivery = await self.broker.receive()
            except BrokerClosedError:
                return
            self.dispatch(delivery)
