"""An in-process notification pipeline on a dispatch :class:`~tests.dispatch.world.World`: the deriver
and the sender on the world's database and manual clock, with recording channels."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications import Notification
from models.repositories import notifications as repo
from server.notify.channels import ChannelError, Message
from server.notify.deriver import Deriver
from server.notify.rules import NOTIFY_TYPES
from server.notify.sender import Sender, SenderSettings
from tests.clock import ManualClock
from tests.dispatch.world import World


@dataclass
class Sent:
    """One provider call that succeeded or failed: ``at_ms`` on the manual clock."""

    at_ms: int
    address: str
    message: Message
    ok: bool


@dataclass
class RecordingChannel:
    """A :class:`~server.notify.channels.Channel` that records every send. ``addresses_of``: person
    -> address (absent: unreachable); ``failures``: errors to raise on the next sends, in order."""

    clock: ManualClock
    name: str = "rec"
    kinds: frozenset[str] | None = None
    address_interval_ms: int = 1_000
    rate_per_s: float = 30.0
    addresses_of: dict[uuid.UUID, str] = field(default_factory=dict)
    failures: list[ChannelError] = field(default_factory=list)
    calls: list[Sent] = field(default_factory=list)

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        del session
        return {p: self.addresses_of[p] for p in people if p in self.addresses_of}

    async def send(self, address: str, message: Message) -> str | None:
        if self.failures:
            error = self.failures.pop(0)
            self.calls.append(Sent(self.clock(), address, message, ok=False))
            raise error
        self.calls.append(Sent(self.clock(), address, message, ok=True))
        return f"m{len(self.calls)}"

    @property
    def delivered(self) -> list[Sent]:
        return [c for c in self.calls if c.ok]


def enable_rules(world: World) -> None:
    """Stage the rules' event types unread (as server/app.py sets the outbox up)."""
    publisher = world.calls.publisher
    publisher.settings = dataclasses.replace(publisher.settings, notify_types=NOTIFY_TYPES)


def pipeline(
    world: World, channel: RecordingChannel, settings: SenderSettings | None = None, owner: str = "p1"
) -> tuple[Deriver, Sender]:
    enable_rules(world)
    channels = {channel.name: channel}
    deriver = Deriver(world.sessions, channels, clock=world.clock, owner=owner)
    sender = Sender(world.sessions, channels, settings=settings, clock=world.clock, owner=owner)
    return deriver, sender


async def rows(world: World, *, channel: str | None = None) -> list[Notification]:
    """Every notification row (of ``channel``), oldest first."""
    import sqlalchemy as sa

    async with world.sessions() as session:
        query = sa.select(Notification).order_by(Notification.id)
        if channel is not None:
            query = query.where(Notification.channel == channel)
        return list(await session.scalars(query))


async def row(world: World, row_id: int) -> Notification:
    async with world.sessions() as session:
        found = await repo.get(session, row_id)
    assert found is not None
    return found
