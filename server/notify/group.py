"""The dispatchers' Telegram group: escalations and unanswered SOS, once per event, to one group chat.

The rules (``server/notify/rules.py``) send ``call.escalated`` and ``sos_unanswered`` (an SOS nobody
acknowledged within two repeat intervals) to every active dispatcher personally. With
``TOT_TELEGRAM_DISPATCH_CHAT`` set (the group's chat id; add the bot to the group and send
``/chatid`` there: the bot answers it, ``server/notify/bot_updates.py``), the deriver also writes
**one** row per such event for the group:
``notifications`` with ``person_id`` NULL and channel ``tg_group``, unique per (event, channel) by
the partial index ``uq_notifications_group_event_channel``. The sender delivers it like any row (at
most once, leased, retried with backoff, 429 ``retry_after`` honoured), in the group's language
(``TOT_TELEGRAM_DISPATCH_CHAT_LANGUAGE``), paced at one message per ``TOT_TELEGRAM_GROUP_INTERVAL_MS``
(3 s: Telegram allows about 20 messages a minute in a group) across all processes through the
shared ``notify_throttle``.

Why a setting and not a link flow (``/start <token>`` in the group): one deployment has one
dispatchers' room, an operator sets it once, and a setting cannot be changed by whoever can add the
bot to a group. The group's messages carry no buttons: a press in a group names no linked person.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from server.notify.channels import Message
from server.notify.rules import Kind
from server.notify.telegram import TelegramChannel

NAME = "tg_group"
KINDS: frozenset[str] = frozenset({Kind.CALL_ESCALATED.value, Kind.SOS_UNACKNOWLEDGED.value})
"""What the group is told (the rules' kinds whose audience is every dispatcher)."""


class TelegramGroupChannel:
    """A :class:`~server.notify.channels.Channel` whose one address is the group (``group_address``);
    it has no person's address (:meth:`addresses` is empty), so rows reach it only through the
    deriver's group rows. Sends with ``telegram``'s bot."""

    name = NAME
    kinds: frozenset[str] | None = KINDS

    def __init__(
        self, telegram: TelegramChannel, chat_id: int, *, language: str = "ru", interval_ms: int = 3_000
    ) -> None:
        self.telegram = telegram
        self.group_address = str(chat_id)
        self.language = language
        self.address_interval_ms = interval_ms
        self.rate_per_s = 1000 / interval_ms

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        return {}

    async def send(self, address: str, message: Message) -> str | None:
        """sendMessage to the group, without buttons; errors as the Telegram channel's."""
        return await self.telegram.send(address, Message(text=message.text, key=message.key))
