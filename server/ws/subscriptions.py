"""``subscribe`` and ``unsubscribe``: the channels' access rules, checked once when a subscription is
made, and access that a later change takes away, ended by the event announcing it.

Channel names and rules are ``realtime/channels.py``'s; this module reads the call's parties (one
database read per ``call:`` subscription of a non-staff client), holds the session's place in the hub
and the connection's presence entry, and ends a doctor's ``call:<id>`` subscriptions when
``call.unassigned`` reaches them (:meth:`Subscriptions.call_unassigned`, a ``Session.watch``
callback) or when they leave their own ``doctor:<id>``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.events import CALL_UNASSIGNED
from models.enums import Role
from models.repositories import calls as call_repo
from realtime import channels
from realtime.broker import Publication, StreamPosition
from realtime.errors import ErrorCode
from realtime.hub import Hub
from realtime.messages import FrameError, Subscribe, Unsubscribe
from realtime.protocol import UnsubscribeReason, unsubscribed_frame
from realtime.session import Session, WatchCallback
from server.ws.connection import Connection, member
from server.ws.presence import Presence

log = logging.getLogger("tot.ws")

CALL_PREFIX = f"{channels.ChannelKind.CALL.value}:"
"""The start of every ``call:<id>`` channel name (session channel names are canonical)."""


class Subscriptions:
    """The subscriptions of this process's connections.

    ``hub``: the process's fan-out. ``sessions``: the database (a call's parties). ``presence``: the
    process's presence entries. ``connections``: the open connections by id (the gateway's own map,
    read when a watched event reaches a session). ``max_subscriptions``: channels per connection."""

    def __init__(
        self,
        hub: Hub,
        sessions: async_sessionmaker[AsyncSession],
        presence: Presence,
        connections: Mapping[str, Connection],
        max_subscriptions: int,
    ) -> None:
        self.hub = hub
        self.sessions = sessions
        self.presence = presence
        self.connections = connections
        self.max_subscriptions = max_subscriptions
        self._releases: set[asyncio.Task[None]] = set()  # subscriptions the server ended, being released
        self.watch: dict[str, WatchCallback] = {CALL_UNASSIGNED: self.call_unassigned}
        """Event types whose delivery to a connection ends a subscription (``Session.watch``)."""

    async def subscribe(self, conn: Connection, msg: Subscribe) -> None:
        """``subscribe``: checks, then the session's place in the hub, the history since ``msg.since``
        and the presence entry. Raises :class:`FrameError` (``bad_channel``, ``invalid_field``,
        ``too_many_subscriptions``, ``not_found``, ``forbidden``, ``doctor_channel_required``,
        ``unavailable``)."""
        try:
            channel = channels.parse(msg.ch)
        except channels.BadChannel as exc:
            raise FrameError(ErrorCode.BAD_CHANNEL, str(exc), field="ch", ref=msg.ref) from None
        session = conn.session
        if channel.name in session.channels:
            raise FrameError(ErrorCode.INVALID_FIELD, "already subscribed", field="ch", ref=msg.ref)
        if len(session.channels) >= self.max_subscriptions:
            raise FrameError(ErrorCode.TOO_MANY_SUBSCRIPTIONS, "subscription limit reached", ref=msg.ref)
        if channel.kind is channels.ChannelKind.CALL:
            conn.subscribing = channel.name
        try:
            await self._subscribe_checked(conn, msg, channel)
        finally:
            conn.subscribing = None

    async def _subscribe_checked(self, conn: Connection, msg: Subscribe, channel: channels.Channel) -> None:
        """The rest of ``subscribe``, for a ``channel`` of the right shape and within the limits.

        The call's parties are read once, here. A doctor's ``call.unassigned`` for this call delivered
        while the subscription is being made clears ``conn.subscribing``: the parties just read may
        predate it (before the checks: refused), or the ``subscribed`` reply has gone out (after:
        ended as :meth:`call_unassigned` would have). One delivered before the read cannot be missed:
        the change is committed before it is published.

        A doctor's ``call:`` channel also needs the connection to follow ``doctor:<id>``, where
        ``call.unassigned`` arrives (without it nothing would end the subscription when the call is
        taken from them): ``doctor_channel_required`` otherwise, after ``forbidden`` (only the assigned
        doctor learns of the rule). The same two points as above apply should ``doctor:<id>`` be left
        while the subscription is being made (ops run one at a time per connection, so an
        ``unsubscribe`` cannot do it today): refused before the checks, ended after (reason
        ``doctor_channel_left``, as :meth:`unsubscribe` would have)."""
        session = conn.session
        parties = None
        if channel.kind is channels.ChannelKind.CALL and conn.principal.role not in channels.STAFF_ROLES:
            async with self.sessions() as db:
                parties = await call_repo.call_parties(db, uuid.UUID(channel.key))
            if parties is None:
                raise FrameError(ErrorCode.NOT_FOUND, "no such call", field="ch", ref=msg.ref)
        allowed = channels.may_subscribe(channel, conn.principal.user_id, conn.principal.role, parties)
        if not allowed or self._unassigned_meanwhile(conn, channel):
            raise FrameError(
                ErrorCode.FORBIDDEN, "you may not subscribe to this channel", field="ch", ref=msg.ref
            )
        if self._without_doctor_channel(conn, channel):
            own = channels.doctor_channel(conn.user)
            raise FrameError(
                ErrorCode.DOCTOR_CHANNEL_REQUIRED,
                f"subscribe to {own} first: a doctor follows a call only while following {own}",
                field="ch",
                ref=msg.ref,
            )
        since = None if msg.since is None else StreamPosition(msg.since.offset, msg.since.epoch)
        session.begin(channel.name)
        try:
            await self.hub.add(channel.name, session)
            await session.start(channel.name, since, msg.ref)
        except Exception:
            session.forget(channel.name)
            await self.hub.remove(channel.name, session)
            log.exception("subscribe failed", extra={"channel": channel.name})
            raise FrameError(ErrorCode.UNAVAILABLE, "could not subscribe now; retry", ref=msg.ref) from None
        await self.presence.join(conn, channel.name, member(conn), {"role": conn.principal.role.value})
        if self._unassigned_meanwhile(conn, channel):
            self._end_subscription(conn, channel.name, UnsubscribeReason.UNASSIGNED)
        elif self._without_doctor_channel(conn, channel):
            self._end_subscription(conn, channel.name, UnsubscribeReason.DOCTOR_CHANNEL_LEFT)

    @staticmethod
    def _unassigned_meanwhile(conn: Connection, channel: channels.Channel) -> bool:
        return channel.kind is channels.ChannelKind.CALL and conn.subscribing != channel.name

    @staticmethod
    def _without_doctor_channel(conn: Connection, channel: channels.Channel) -> bool:
        """A doctor's ``call:`` channel on a connection that does not follow ``doctor:<id>``."""
        return (
            channel.kind is channels.ChannelKind.CALL
            and conn.principal.role is Role.DOCTOR
            and channels.doctor_channel(conn.user) not in conn.session.channels
        )

    async def unsubscribe(self, conn: Connection, msg: Unsubscribe) -> None:
        """Leave ``msg.ch`` (raises :class:`FrameError` ``not_subscribed``). A doctor leaving their own
        ``doctor:<id>`` leaves every ``call:`` channel of the connection too (a call's chat reaches its
        doctor only while ``call.unassigned`` can): each gets
        ``{"op":"unsubscribed","ch":"call:<id>","reason":"doctor_channel_left"}`` first, and is
        released, then ``doctor:<id>`` is, and its ``unsubscribed`` reply comes last."""
        session = conn.session
        if not session.forget(msg.ch):
            raise FrameError(
                ErrorCode.NOT_SUBSCRIBED, "not subscribed to this channel", field="ch", ref=msg.ref
            )
        if msg.ch == channels.doctor_channel(conn.user):  # only this doctor could subscribe to it
            ended = [
                channel
                for channel in list(session.channels)
                if channel.startswith(CALL_PREFIX)
                and self._end(conn, channel, UnsubscribeReason.DOCTOR_CHANNEL_LEFT)
            ]
            for channel in ended:
                await self._release_logged(conn, channel)
        await self._release(conn, msg.ch)
        session.send(unsubscribed_frame(msg.ch, msg.ref).decode())

    async def _release(self, conn: Connection, channel: str) -> None:
        """What a subscription holds besides the session's state, once the session forgot ``channel``:
        the hub's place (and with the process's last one, the broker's interest) and the connection's
        presence entry. Nothing is released while the session holds the channel again: an end the
        server decided runs in a task, and the client may have subscribed anew meanwhile."""
        session = conn.session
        if channel in session.channels:
            return
        await self.hub.remove(channel, session)
        if channel not in session.channels:
            await self.presence.leave(conn, channel, member(conn))

    def call_unassigned(self, session: Session, publication: Publication) -> None:
        """``call.unassigned`` was just queued for a connection (``Session.watch``), data
        ``{"call": "<call id>", "reason": ...}``: its doctor lost the call. The subscription to
        ``call:<id>`` was checked once, when it was made, so the server ends it: the session forgets
        the channel now (nothing later published there reaches this client), the client gets
        ``{"op":"unsubscribed","ch":"call:<id>","reason":"unassigned"}`` right behind the event, and
        the hub and presence entries are released in a task (they need the engine). Runs inside
        delivery (it must not raise): only this event type gets here, and only it is decoded."""
        conn = self.connections.get(session.id)
        if conn is None or conn.stopping or publication.channel != channels.doctor_channel(conn.user):
            return  # only the doctor's own channel speaks for the doctor (only they may subscribe to it)
        try:
            call = uuid.UUID(publication.decode()["data"]["call"])
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("call.unassigned without a call id", extra={"channel": publication.channel})
            return
        channel = channels.call_channel(call)
        if conn.subscribing == channel:
            conn.subscribing = None  # the subscribe in flight finishes the job (_subscribe_checked)
        else:
            self._end_subscription(conn, channel, UnsubscribeReason.UNASSIGNED)

    def _end(self, conn: Connection, channel: str, reason: UnsubscribeReason) -> bool:
        """The server ends the connection's subscription to ``channel`` if it has one (True then): the
        session forgets it at once and the client gets ``unsubscribed`` with ``reason``. The caller
        releases the rest (:meth:`_release`)."""
        if not conn.session.forget(channel):
            return False
        conn.session.send(unsubscribed_frame(channel, reason=reason).decode())
        return True

    def _end_subscription(self, conn: Connection, channel: str, reason: UnsubscribeReason) -> None:
        """:meth:`_end`, with the rest released in a task (for callers that cannot wait, such as
        delivery)."""
        if not self._end(conn, channel, reason):
            return
        task = asyncio.create_task(self._release_logged(conn, channel))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_logged(self, conn: Connection, channel: str) -> None:
        try:
            await self._release(conn, channel)
        except Exception:
            log.exception(
                "releasing an ended subscription failed", extra={"channel": channel, "conn": conn.id}
            )
