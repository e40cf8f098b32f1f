"""What the bot does with an update from Telegram's webhook (``POST /v1/telegram/webhook``).

- ``/start <token>`` in a private chat: redeem the one-time link token and link the chat to its
  person (``server/notify/links.py``); answered "linked" or "link refused" (reused, expired, unknown).
- ``/stop``: unlink the chat.
- ``/chatid`` (or ``/chatid@<bot>``) in a group: the bot answers the group's chat id, the value of
  ``TOT_TELEGRAM_DISPATCH_CHAT`` for the dispatchers' group (``server/notify/group.py``). Nothing else
  is done in groups.
- A button press (``callback_query``, data as in ``server/notify/actions.py``) from a linked chat calls
  the same dispatch services as the socket's ops and REST: ``OfferLoop.accept`` / ``decline`` for an
  offer, ``OfferLoop.visit`` to en route / arrived / completed for a call, ``OfferLoop.cancel`` for a
  patient's Cancel, as the linked person (their role from the account, as a token would carry it: the
  services' own rules decide, e.g. a patient cancels only their call and only until the doctor
  arrives). The press is answered (``answerCallbackQuery``):
  "done", "expired" (``offer_expired``), "not linked" (the chat has no person: nothing changes) or
  "not possible now" (any other refusal). After an accepted offer the message's buttons become the
  visit's (en route, arrived, completed).

Every answer goes straight through the Bot API (a person waits for it); the pipeline's notifications
are separate. Bot API failures while answering are logged, never raised to the webhook (Telegram
would retry the update, which the replay guard then ignores anyway).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot
from telegram.error import TelegramError

from dispatch.calls import Who
from dispatch.errors import DispatchError
from dispatch.offer_loop import OfferLoop
from models.enums import CallStatus, Role
from models.repositories import telegram as telegram_repo
from realtime.errors import ErrorCode
from server.notify import actions
from server.notify.links import LinkTokens
from server.notify.telegram import keyboard
from server.notify.templates import phrase

log = logging.getLogger("tot.notify")

VISIT_STEPS = {
    actions.EN_ROUTE: CallStatus.EN_ROUTE,
    actions.ARRIVED: CallStatus.ARRIVED,
    actions.COMPLETED: CallStatus.COMPLETED,
}


class BotUpdates:
    """Handles webhook updates (module docstring). ``dispatch``: the offer loop (the services the
    socket's ``offer.accept`` calls); ``links``: the link tokens; ``clock``: epoch ms."""

    def __init__(
        self,
        bot: Bot,
        sessions: async_sessionmaker[AsyncSession],
        dispatch: OfferLoop,
        links: LinkTokens,
        clock: Callable[[], int],
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.dispatch = dispatch
        self.links = links
        self.clock = clock

    async def handle(self, update: dict[str, Any]) -> str:
        """Act on one update; returns what was done (``linked``, ``link_refused``, ``unlinked``,
        ``chat_id``, ``done``, ``expired``, ``not_linked``, ``refused``, ``ignored``: logs and tests
        read it)."""
        if isinstance(update.get("callback_query"), dict):
            return await self._press(update["callback_query"])
        message = update.get("message")
        if isinstance(message, dict) and isinstance(message.get("text"), str):
            return await self._command(message)
        return "ignored"

    async def _say(self, chat_id: int, text: str) -> None:
        try:
            await self.bot.send_message(chat_id=chat_id, text=text)
        except TelegramError as exc:
            log.warning("telegram reply failed", extra={"error": type(exc).__name__})

    async def _command(self, message: dict[str, Any]) -> str:
        chat = message.get("chat") or {}
        sender = message.get("from") or {}
        if chat.get("type") in ("group", "supergroup") and isinstance(chat.get("id"), int):
            if message["text"].strip().split(" ")[0].split("@")[0] == "/chatid":
                await self._say(chat["id"], f"chat id: {chat['id']}")
                return "chat_id"
            return "ignored"
        if chat.get("type") != "private" or not isinstance(chat.get("id"), int):
            return "ignored"
        chat_id: int = chat["id"]
        language = sender.get("language_code")
        command, _, argument = message["text"].strip().partition(" ")
        if command == "/start" and argument:
            linked = await self.links.redeem(argument.strip(), chat_id)
            await self._say(chat_id, phrase("linked" if linked else "link_refused", language))
            return "linked" if linked else "link_refused"
        if command == "/stop":
            async with self.sessions.begin() as session:
                await telegram_repo.unlink_chat(session, chat_id)
            await self._say(chat_id, phrase("unlinked", language))
            return "unlinked"
        if command == "/start":
            await self._say(chat_id, phrase("hello", language))
        return "ignored"

    async def _answer(self, query_id: str, text: str) -> None:
        try:
            await self.bot.answer_callback_query(callback_query_id=query_id, text=text)
        except TelegramError as exc:
            log.warning("telegram callback answer failed", extra={"error": type(exc).__name__})

    async def _press(self, query: dict[str, Any]) -> str:
        query_id = str(query.get("id", ""))
        sender = query.get("from") or {}
        language = sender.get("language_code")
        chat_id = sender.get("id")
        press = actions.parse(query.get("data"))
        if press is None or not isinstance(chat_id, int):
            await self._answer(query_id, phrase("refused", language))
            return "ignored"
        async with self.sessions() as session:
            person = await telegram_repo.person_of_chat(session, chat_id)
        if person is None or not person[3]:
            await self._answer(query_id, phrase("not_linked", language))
            return "not_linked"
        person_id, role, language, _ = person
        who = Who(person_id, Role(role))
        try:
            call_id = await self._act(who, press)
        except DispatchError as exc:
            outcome = "expired" if exc.code is ErrorCode.OFFER_EXPIRED else "refused"
            await self._answer(query_id, phrase(outcome, language))
            return outcome
        await self._answer(query_id, phrase("done", language))
        if press.action == actions.ACCEPT and call_id is not None:
            await self._show_visit_buttons(query, call_id, language)
        elif press.action in (actions.DECLINE, actions.COMPLETED, actions.CANCEL):
            await self._show_visit_buttons(query, None, language)
        return "done"

    async def _act(self, who: Who, press: actions.Press) -> uuid.UUID | None:
        """Run the press's service; returns the call id after an accept. Raises ``DispatchError``."""
        if press.action == actions.ACCEPT:
            moved = await self.dispatch.accept(who, press.target)
            return moved.call.id
        if press.action == actions.DECLINE:
            await self.dispatch.decline(who, press.target, "telegram")
            return None
        if press.action == actions.CANCEL:
            await self.dispatch.cancel(who, press.target, "cancelled in Telegram")
            return None
        await self.dispatch.visit(who, press.target, VISIT_STEPS[press.action])
        return press.target

    async def _show_visit_buttons(
        self, query: dict[str, Any], call_id: uuid.UUID | None, language: str
    ) -> None:
        message = query.get("message") or {}
        chat_id = (message.get("chat") or {}).get("id")
        message_id = message.get("message_id")
        if not isinstance(chat_id, int) or not isinstance(message_id, int):
            return
        markup = None if call_id is None else keyboard(actions.visit_buttons(call_id, language))
        try:
            await self.bot.edit_message_reply_markup(
                chat_id=chat_id, message_id=message_id, reply_markup=markup
            )
        except TelegramError as exc:
            log.warning("telegram keyboard edit failed", extra={"error": type(exc).__name__})
