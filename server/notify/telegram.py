"""The Telegram channel: messages through the Bot API with python-telegram-bot, at any base URL.

:func:`make_bot` builds a ``telegram.Bot`` for ``TOT_TELEGRAM_API_URL`` (``https://api.telegram.org``
or the loopback fake, ``server/notify/fake_telegram.py``). :class:`TelegramChannel` is the
:class:`~server.notify.channels.Channel`: a person's address is the chat they linked
(``telegram_links``); a message's buttons become an inline keyboard (callback data as in
``server/notify/actions.py``). Errors map to the channel's: 429 ``retry_after`` -> ``RetryAfter``,
403 (blocked) and 400 (chat not found) -> ``PermanentError``, timeouts and network errors ->
``TransientError``. Pace: one message a second per chat, ``rate_per_s`` (30) per bot.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

# Opt in to python-telegram-bot's time periods as timedelta (its v22.2 behaviour to come): without it,
# reading RetryAfter.retry_after warns that ints are deprecated, and the test suite turns warnings
# into errors. Our code reads timedeltas either way (:func:`_seconds`).
os.environ.setdefault("PTB_TIMEDELTA", "true")

import datetime as dt

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram import error as tg_error
from telegram.request import HTTPXRequest

from models.repositories import notifications as repo
from server.notify.channels import Button, Message, PermanentError, RetryAfter, TransientError

NAME = "telegram"


def make_bot(token: str, api_url: str) -> Bot:
    """A Bot API client for ``token`` at ``api_url`` (no trailing ``/bot``). Close it with
    :func:`close_bot` (``Bot.shutdown`` closes nothing on a bot never ``initialize`` d, and
    initializing costs a getMe at start-up, when the Bot API may be unreachable)."""
    base = api_url.rstrip("/")
    return Bot(
        token=token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=HTTPXRequest(connection_pool_size=8),
        get_updates_request=HTTPXRequest(connection_pool_size=1),
    )


async def close_bot(bot: Bot) -> None:
    """Close ``bot``'s HTTP connections."""
    await bot.request.shutdown()


def keyboard(buttons: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup | None:
    """An inline keyboard of ``buttons`` (None for none)."""
    if not buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(b.label, callback_data=b.data) for b in line] for line in buttons]
    )


def _seconds(value: int | float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramChannel:
    """The Telegram :class:`~server.notify.channels.Channel` (module docstring)."""

    name = NAME
    kinds: frozenset[str] | None = None

    def __init__(self, bot: Bot, *, rate_per_s: float = 30.0, chat_interval_ms: int = 1_000) -> None:
        self.bot = bot
        self.rate_per_s = rate_per_s
        self.address_interval_ms = chat_interval_ms

    async def addresses(self, session: AsyncSession, people: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        return {p: str(chat) for p, chat in (await repo.telegram_chats(session, people)).items()}

    async def send(self, address: str, message: Message) -> str | None:
        """sendMessage to chat ``address``; returns ``<chat id>:<message id>``."""
        try:
            sent = await self.bot.send_message(
                chat_id=int(address), text=message.text, reply_markup=keyboard(message.buttons)
            )
        except tg_error.RetryAfter as exc:
            raise RetryAfter(_seconds(exc.retry_after)) from None
        except (tg_error.Forbidden, tg_error.BadRequest, tg_error.InvalidToken) as exc:
            raise PermanentError(f"{type(exc).__name__}: {str(exc)[:120]}") from None
        except tg_error.TelegramError as exc:  # TimedOut, NetworkError and the rest: try again later
            raise TransientError(f"{type(exc).__name__}: {str(exc)[:120]}") from None
        return f"{address}:{sent.message_id}"
