"""The Telegram channel against the loopback fake Bot API (real HTTP, python-telegram-bot), driven by
the manual clock: offers arrive with their buttons, a 429's retry_after is honoured exactly and the
message is then sent once, a blocked bot fails for good; link tokens are single use and short-lived."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from models.repositories import telegram as telegram_repo
from server.notify.deriver import Deriver
from server.notify.fake_telegram import FakeBotApi, serving
from server.notify.links import LinkTokens
from server.notify.sender import Sender
from server.notify.telegram import TelegramChannel, close_bot, make_bot
from tests.dispatch.world import World
from tests.notify.pipeline import enable_rules, rows

TOKEN = "123456:TEST-token"
CHAT = 424242


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi()
    async with serving(api) as url:
        yield api, url


async def _linked_offer(world: World, url: str) -> tuple[Deriver, Sender, TelegramChannel]:
    """A doctor linked to :data:`CHAT` and a call offered to them; the pipeline on the world's clock."""
    enable_rules(world)
    bot = make_bot(TOKEN, url)
    channel = TelegramChannel(bot)
    doctor = await world.doctor(north_m=100)
    async with world.sessions.begin() as session:
        await telegram_repo.link(session, doctor.user_id, CHAT, world.clock())
    await world.new_call(await world.patient())
    channels = {"telegram": channel}
    deriver = Deriver(world.sessions, channels, clock=world.clock)
    sender = Sender(world.sessions, channels, clock=world.clock)
    return deriver, sender, channel


async def test_an_offer_reaches_the_fake_with_accept_and_decline(
    world: World, fake: tuple[FakeBotApi, str]
) -> None:
    api, url = fake
    deriver, sender, channel = await _linked_offer(world, url)
    await deriver.run_once()
    assert await sender.run_once() == 1
    [request] = api.calls("sendMessage")
    assert request.token == TOKEN
    assert int(request.params["chat_id"]) == CHAT
    assert "Новый вызов" in request.params["text"]
    keyboard = request.params["reply_markup"]["inline_keyboard"]
    assert [[b["text"] for b in line] for line in keyboard] == [["Принять визит", "Отказаться"]]
    assert keyboard[0][0]["callback_data"].startswith("oa:")
    [row] = await rows(world, channel="telegram")
    assert row.provider_ref == f"{CHAT}:1"
    await close_bot(channel.bot)


async def test_a_429_with_retry_after_3_is_resent_after_3_s_once(
    world: World, fake: tuple[FakeBotApi, str]
) -> None:
    api, url = fake
    api.fail_next("sendMessage", 429, retry_after=3)
    deriver, sender, channel = await _linked_offer(world, url)
    await deriver.run_once()
    start = world.clock()
    assert await sender.run_once() == 0
    [row] = await rows(world, channel="telegram")
    assert (row.status, row.next_attempt_ms, row.last_error) == ("queued", start + 3_000, "retry_after=3")
    world.clock.advance(2_999)
    assert await sender.run_once() == 0
    assert len(api.calls("sendMessage")) == 1
    world.clock.advance(1)
    assert await sender.run_once() == 1
    world.clock.advance(60_000)
    assert await sender.run_once() == 0
    assert len(api.calls("sendMessage")) == 2  # the refused one and the one delivered
    [row] = await rows(world, channel="telegram")
    assert (row.status, row.attempts) == ("sent", 2)
    await close_bot(channel.bot)


async def test_a_blocked_bot_fails_for_good(world: World, fake: tuple[FakeBotApi, str]) -> None:
    api, url = fake
    api.fail_next("sendMessage", 403)
    deriver, sender, channel = await _linked_offer(world, url)
    await deriver.run_once()
    await sender.run_once()
    world.clock.advance(3_600_000)
    await sender.run_once()
    assert len(api.calls("sendMessage")) == 1
    [row] = await rows(world, channel="telegram")
    assert row.status == "failed"
    assert row.last_error is not None and row.last_error.startswith("Forbidden")
    await close_bot(channel.bot)


async def test_link_tokens_are_single_use_and_short_lived(world: World) -> None:
    links = LinkTokens(world.sessions, ttl_ms=600_000, clock=world.clock)
    person = (await world.patient()).user_id
    first = await links.issue(person)
    assert first.expires_ms == world.clock() + 600_000
    assert await links.redeem(first.token, CHAT)
    assert await links.chat_of(person) == CHAT
    assert not await links.redeem(first.token, CHAT + 1)  # reused
    assert await links.chat_of(person) == CHAT
    late = await links.issue(person)
    world.clock.advance(600_000)
    assert not await links.redeem(late.token, CHAT + 2)  # expired
    assert not await links.redeem("not-a-token", CHAT + 3)
    assert await links.chat_of(person) == CHAT
    assert await links.unlink(person)
    assert await links.chat_of(person) is None
    assert not await links.unlink(person)


async def test_handled_updates_are_remembered_then_pruned(world: World) -> None:
    async with world.sessions.begin() as session:
        assert await telegram_repo.first_sight(session, 7, world.clock())
        assert not await telegram_repo.first_sight(session, 7, world.clock())
    world.clock.advance(1)
    async with world.sessions.begin() as session:
        assert await telegram_repo.first_sight(session, 8, world.clock())
        assert await telegram_repo.prune_updates(session, world.clock()) == 1  # 7 only
        assert not await telegram_repo.first_sight(session, 8, world.clock())
