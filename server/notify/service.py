"""The notification pipeline of one process, built from the settings: channels, the deriver, the
sender, (with a bot token) Telegram's bot, link tokens and webhook handler, and (with a VAPID key)
web push.

``server/app.py`` builds one :class:`Notify` per process, sets the outbox to stage the rules' event
types unread (``OutboxSettings.notify_types``), starts :meth:`Notify.tasks` and calls
:meth:`Notify.stop` at shutdown. Everything but the inbox is off unless configured.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.offer_loop import OfferLoop
from models.repositories import telegram as telegram_repo
from realtime.clock import Clock, wall_clock_ms
from server.notify.bot_updates import BotUpdates
from server.notify.channels import Channel
from server.notify.deriver import Deriver, DeriverSettings
from server.notify.email import NAME as EMAIL
from server.notify.email import EmailChannel, SmtpSettings
from server.notify.group import TelegramGroupChannel
from server.notify.links import LinkTokens
from server.notify.phone_codes import PhoneCodes
from server.notify.push_acks import suppressions
from server.notify.rules import Kind
from server.notify.sender import Sender, SenderSettings
from server.notify.sms import SmsGateway
from server.notify.telegram import TelegramChannel, close_bot, make_bot
from server.notify.vapid import Vapid
from server.notify.webpush import WebPushChannel
from server.settings import Settings

log = logging.getLogger("tot.notify")

UPDATES_KEPT_MS = 2 * 24 * 3_600_000
"""Handled ``update_id`` s are remembered two days (Telegram gives up on an update after a day)."""
HOUSEKEEPING_S = 600.0
"""How often a process prunes them (a DELETE of old rows: harmless when several do)."""


class Notify:
    """See the module docstring. ``telegram``/``updates``/``links`` are None without a bot token."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        dispatch: OfferLoop,
        *,
        clock: Clock = wall_clock_ms,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        owner = owner or uuid.uuid4().hex
        channels: dict[str, Channel] = {}
        self.telegram: TelegramChannel | None = None
        self.updates: BotUpdates | None = None
        self.links: LinkTokens | None = None
        if settings.telegram_bot_token:
            bot = make_bot(settings.telegram_bot_token, settings.telegram_api_url)
            self.telegram = TelegramChannel(
                bot,
                rate_per_s=settings.telegram_rate_per_s,
                chat_interval_ms=settings.telegram_chat_interval_ms,
            )
            channels[self.telegram.name] = self.telegram
            if settings.telegram_dispatch_chat is not None:
                group = TelegramGroupChannel(
                    self.telegram,
                    settings.telegram_dispatch_chat,
                    language=settings.telegram_dispatch_chat_language,
                    interval_ms=settings.telegram_group_interval_ms,
                )
                channels[group.name] = group
            self.links = LinkTokens(sessions, settings.telegram_link_ttl_s * 1000, clock)
            self.updates = BotUpdates(bot, sessions, dispatch, self.links, clock)
        if settings.smtp_host:
            smtp = SmtpSettings(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.smtp_from,
                username=settings.smtp_username,
                password=settings.smtp_password,
                starttls=settings.smtp_starttls,
            )
            channels[EMAIL] = EmailChannel(smtp)
        self.sms: SmsGateway | None = None
        if settings.sms_gateway_url:
            self.sms = SmsGateway(
                settings.sms_gateway_url, settings.sms_api_key, default_region=settings.sms_default_region
            )
            channels[self.sms.name] = self.sms
        self.webpush: WebPushChannel | None = None
        holds: dict[tuple[str, str], int] = {}
        if settings.vapid_private_key:
            self.webpush = WebPushChannel(
                sessions,
                Vapid(settings.vapid_private_key, settings.vapid_subject),
                hosts=settings.push_endpoint_hosts,
                allow_loopback=settings.push_allow_loopback,
                clock=clock,
            )
            channels[self.webpush.name] = self.webpush
            # An offer's push waits for the app's socket acknowledgement (server/notify/push_acks.py).
            holds[(self.webpush.name, Kind.OFFER_CREATED.value)] = settings.push_offer_after_ms
        self.channels = channels
        self.phone_codes = PhoneCodes(settings, sessions, self.sms, clock=clock)
        """Phone confirmation codes at registration (``server/notify/phone_codes.py``)."""
        self.sender = Sender(
            sessions,
            channels,
            settings=SenderSettings(
                interval_ms=settings.notify_sender_interval_ms,
                max_attempts=settings.notify_max_attempts,
                lease_ms=settings.notify_lease_ms,
            ),
            clock=clock,
            owner=owner,
            suppress=suppressions if self.webpush is not None else None,
        )
        self.deriver = Deriver(
            sessions,
            channels,
            settings=DeriverSettings(coalesce_ms=settings.notify_coalesce_ms),
            clock=clock,
            owner=owner,
            on_derived=self.sender.wake,
            holds=holds,
        )
        self._bot_username = settings.telegram_bot_username

    async def bot_username(self) -> str:
        """The bot's username for deep links: ``TOT_TELEGRAM_BOT_USERNAME``, else asked once (getMe)."""
        if not self._bot_username and self.telegram is not None:
            me = await self.telegram.bot.get_me()
            self._bot_username = me.username or ""
        return self._bot_username

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        """The loops to run for the process's life, by name."""
        loops = {"notify_rules": self.deriver.run(), "notify_sender": self.sender.run()}
        if self.telegram is not None:
            loops["notify_housekeeping"] = self._housekeeping()
        return loops

    async def prune_updates(self) -> int:
        """Forget handled webhook updates older than :data:`UPDATES_KEPT_MS` (Telegram re-sends an
        update for at most a day); returns how many."""
        async with self.sessions.begin() as session:
            return await telegram_repo.prune_updates(session, self.clock() - UPDATES_KEPT_MS)

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.prune_updates()
            except Exception:
                log.exception("could not prune handled Telegram updates")
            await asyncio.sleep(HOUSEKEEPING_S)

    async def stop(self) -> None:
        """After the loops were cancelled: hand the rules' lease over, close the bot's HTTP client."""
        await self.deriver.stop()
        await self.phone_codes.stop()
        if self.telegram is not None:
            await asyncio.shield(close_bot(self.telegram.bot))
        if self.sms is not None:
            await asyncio.shield(self.sms.close())
        if self.webpush is not None:
            await asyncio.shield(self.webpush.close())
