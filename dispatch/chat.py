"""Chat on a call between its patient, its assigned doctor and dispatchers.

A message is stored with its ``chat.message`` event on ``call:<id>`` (one transaction, the event staged
in the outbox and published after the commit). A client message id
(chosen by the sender, unique per sender and call) makes a resend harmless: the second send returns
the stored message and publishes nothing. Read receipts mark every message from others up to a given
one as read, with ``chat.read`` in the same transaction. Writing is possible while the call is not
final; reading always.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import CallService, Who
from dispatch.errors import DispatchError, not_found
from dispatch.events import ChatMessagePayload, ChatReadPayload, epoch_ms
from dispatch.lifecycle import FINAL
from dispatch.publisher import EventPublisher, as_publisher
from models.chat import ChatMessage
from models.enums import CallStatus
from models.repositories import calls as call_repo
from models.repositories import chat as chat_repo
from models.repositories import users as user_repo
from models.types import utcnow
from realtime.broker import Broker
from realtime.channels import call_channel
from realtime.errors import ErrorCode
from realtime.event_types import EventType

MAX_TEXT = 2000
"""Longest message, characters (a chat line, not a document)."""
CLIENT_MSG_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class Sent:
    """A stored message and whether this send stored it (False: a resend of an earlier one)."""

    message: ChatMessagePayload
    created: bool


def message_json(
    message: ChatMessage, sender_role: str | None = None, sender_name: str | None = None
) -> ChatMessagePayload:
    """A message as the API and events show it (times in epoch milliseconds)."""
    return {
        "id": str(message.id),
        "call": str(message.call_id),
        "sender": {"id": str(message.sender_id), "role": sender_role, "name": sender_name},
        "client_msg_id": message.client_msg_id,
        "text": message.text,
        "at": epoch_ms(message.created_at),
        "read_at": epoch_ms(message.read_at),
    }


class ChatService:
    """Chat messages of calls."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher | Broker,
        *,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.publisher = as_publisher(publisher, sessions)
        self.now = now

    async def _party(self, session: AsyncSession, who: Who, call_id: uuid.UUID) -> CallStatus:
        call = await call_repo.get_call(session, call_id)
        if call is None:
            raise not_found("call")
        CallService.actor_for(who, call)  # 404 for anyone who is no party to the call
        return CallStatus(call.status)

    async def send(self, who: Who, call_id: uuid.UUID, client_msg_id: str, text: str) -> Sent:
        """Store and publish a message. Raises ``DispatchError`` 404 (no such call for you), 409
        ``invalid_transition`` (the call is over), 422 (text or id out of limits)."""
        text = text.strip()
        if not 1 <= len(text) <= MAX_TEXT:
            raise DispatchError(ErrorCode.INVALID_INPUT, f"text: 1-{MAX_TEXT} characters", field="text")
        if not CLIENT_MSG_ID.fullmatch(client_msg_id):
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "client_msg_id: 1-64 of A-Z a-z 0-9 _ . : -", field="client_msg_id"
            )
        async with self.publisher.transaction() as tx:
            session = tx.session
            status = await self._party(session, who, call_id)
            earlier = await chat_repo.find(session, call_id, who.user_id, client_msg_id)
            if earlier is not None:
                return Sent(message_json(earlier, who.role.value), created=False)
            if status in FINAL:
                raise DispatchError(
                    ErrorCode.INVALID_TRANSITION,
                    f"the call is {status.value}: the chat is closed",
                    status=status.value,
                )
            message = ChatMessage(
                id=uuid.uuid4(),
                call_id=call_id,
                sender_id=who.user_id,
                client_msg_id=client_msg_id,
                text=text,
                created_at=self.now(),
            )
            session.add(message)
            sender = await user_repo.get_user(session, who.user_id)
            try:
                await session.flush()
            except IntegrityError:
                await session.rollback()  # the same resend raced itself: answer with the stored one
                async with self.sessions() as again:
                    stored = await chat_repo.find(again, call_id, who.user_id, client_msg_id)
                if stored is None:
                    raise
                return Sent(message_json(stored, who.role.value), created=False)
            data = message_json(message, who.role.value, None if sender is None else sender.full_name)
            tx.stage(call_channel(call_id), EventType.CHAT_MESSAGE, data)
        return Sent(data, created=True)

    async def history(
        self, who: Who, call_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> tuple[list[ChatMessagePayload], str | None]:
        """A page of the call's messages, oldest first, after the message ``after``; returns the page
        and the cursor for the next one (``None`` at the end). Raises 404, 422 (unknown cursor)."""
        limit = max(1, min(limit, MAX_PAGE))
        async with self.sessions() as session:
            await self._party(session, who, call_id)
            cursor = None
            if after is not None:
                cursor = await chat_repo.get(session, after)
                if cursor is None or cursor.call_id != call_id:
                    raise DispatchError(
                        ErrorCode.INVALID_INPUT, "after: not a message of this call", field="after"
                    )
            messages = await chat_repo.page(session, call_id, cursor, limit + 1)
        more = len(messages) > limit
        messages = messages[:limit]
        return [message_json(m) for m in messages], (str(messages[-1].id) if more and messages else None)

    async def read(self, who: Who, call_id: uuid.UUID, up_to: uuid.UUID) -> int:
        """Mark messages from others up to ``up_to`` as read; publishes ``chat.read``. Returns how many
        were newly marked."""
        now = self.now()
        async with self.publisher.transaction() as tx:
            await self._party(tx.session, who, call_id)
            message = await chat_repo.get(tx.session, up_to)
            if message is None or message.call_id != call_id:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT, "up_to: not a message of this call", field="up_to"
                )
            changed = await chat_repo.mark_read(tx.session, call_id, who.user_id, message, now)
            if changed:
                receipt: ChatReadPayload = {
                    "call": str(call_id),
                    "reader": {"id": str(who.user_id), "role": who.role.value},
                    "up_to": str(up_to),
                    "at": epoch_ms(now),
                }
                tx.stage(call_channel(call_id), EventType.CHAT_READ, receipt)
        return changed
