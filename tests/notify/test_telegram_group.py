"""The dispatchers' Telegram group (server/notify/group.py) against the loopback fake Bot API (real
HTTP, python-telegram-bot), on the manual clock: escalations and unanswered SOS reach the group once
per event (also when two derivers read the event), beside each dispatcher's own message; the group
is paced at one message per interval; a 429 is honoured; nothing else reaches the group."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from dispatch.sos import SosSettings
from models.enums import CallStatus, SosKind
from models.repositories import telegram as telegram_repo
from server.notify.channels import Channel
from server.notify.deriver import Deriver
from server.notify.fake_telegram import FakeBotApi, serving
from server.notify.group import TelegramGroupChannel
from server.notify.sender import Sender
from server.notify.telegram import TelegramChannel, close_bot, make_bot
from tests.dispatch.conftest import WorldFactory
from tests.dispatch.world import World
from tests.notify.pipeline import enable_rules, rows

TOKEN = "123456:TEST-token"
GROUP = -1001234567890
DISPATCHER_CHAT = 777001
INTERVAL_MS = 3_000


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi()
    async with serving(api) as url:
        yield api, url


def channels(url: str, language: str = "ru") -> dict[str, Channel]:
    telegram = TelegramChannel(make_bot(TOKEN, url))
    group = TelegramGroupChannel(telegram, GROUP, language=language, interval_ms=INTERVAL_MS)
    return {telegram.name: telegram, group.name: group}


async def close(configured: dict[str, Channel]) -> None:
    telegram = configured["telegram"]
    assert isinstance(telegram, TelegramChannel)
    await close_bot(telegram.bot)


def to_chat(api: FakeBotApi, chat: int) -> list[str]:
    return [str(r.params["text"]) for r in api.calls("sendMessage") if int(r.params["chat_id"]) == chat]


async def drain(world: World, sender: Sender, until: int, step_ms: int = 100) -> None:
    """Run the sender every ``step_ms`` of manual time until ``until`` messages were sent."""
    for _ in range(1_000):
        await sender.run_once()
        if sender.stats.sent >= until:
            return
        world.clock.advance(step_ms)
    raise AssertionError(f"sent {sender.stats.sent} of {until}")


async def test_the_group_gets_each_escalation_and_unanswered_sos_once(
    make_world: WorldFactory, fake: tuple[FakeBotApi, str]
) -> None:
    api, url = fake
    async with make_world(sos_settings=SosSettings(repeat_s=15.0)) as world:
        enable_rules(world)
        async with world.sessions.begin() as session:
            await telegram_repo.link(session, world.dispatcher.user_id, DISPATCHER_CHAT, world.clock())
        configured = channels(url, language="en")
        # Two processes' derivers and senders (their leases: one derives, the UNIQUE key makes a
        # second derivation a no-op).
        first = Deriver(world.sessions, configured, clock=world.clock, owner="a")
        second = Deriver(world.sessions, configured, clock=world.clock, owner="b")
        sender = Sender(world.sessions, configured, clock=world.clock, owner="a")
        patient = await world.patient()
        call_id = await world.new_call(patient)  # nobody in range: escalated
        assert await world.call_status(call_id) is CallStatus.ESCALATED
        await world.sos.raise_alert(await world.doctor(north_m=0), SosKind.DANGER, message="help")
        for _ in range(3):  # repeats 1, 2, 3: only the second is "unanswered"
            await world.advance_s(15)
            await first.run_once()
        world.clock.advance(10_000)  # the first deriver's lease runs out; the second reads again
        await second.run_once()
        group_rows = await rows(world, channel="tg_group")
        assert [(r.kind, r.person_id) for r in group_rows] == [("escalated", None), ("sos_unanswered", None)]
        await drain(world, sender, until=4)  # the group's two and the dispatcher's own two
        group = to_chat(api, GROUP)
        assert len(group) == 2, group
        assert group[0].startswith("No doctor took the call")  # the group's language: en
        assert group[1].startswith("Unacknowledged SOS") and "help" in group[1]
        assert len(to_chat(api, DISPATCHER_CHAT)) == 2
        for request in api.calls("sendMessage"):
            if int(request.params["chat_id"]) == GROUP:
                assert "reply_markup" not in request.params  # no buttons in a group
        # Nothing more is sent later: once per event.
        world.clock.advance(60_000)
        await first.run_once()
        await second.run_once()
        await sender.run_once()
        assert len(to_chat(api, GROUP)) == 2
        await close(configured)


async def test_the_group_is_paced_and_a_429_is_honoured(world: World, fake: tuple[FakeBotApi, str]) -> None:
    api, url = fake
    enable_rules(world)
    configured = channels(url)
    deriver = Deriver(world.sessions, configured, clock=world.clock)
    sender = Sender(world.sessions, configured, clock=world.clock)
    patient = await world.patient()
    for _ in range(4):
        await world.new_call(patient)  # four escalations at once
    await deriver.run_once()
    assert len(await rows(world, channel="tg_group")) == 4
    api.fail_next("sendMessage", 429, retry_after=5)
    start = world.clock()
    await drain(world, sender, until=4)
    times = [r.sent_ms for r in await rows(world, channel="tg_group")]
    assert all(t is not None for t in times)
    sent = sorted(t for t in times if t is not None)
    # The first try met the 429: nothing before start + 5 s, then one message per interval.
    assert sent[0] >= start + 5_000
    assert all(b - a >= INTERVAL_MS for a, b in itertools.pairwise(sent)), sent
    assert len(to_chat(api, GROUP)) == 5  # the try refused with 429, then the four
    assert all(text.startswith("Вызов не принят") for text in to_chat(api, GROUP))
    await close(configured)


async def test_nothing_but_dispatchers_news_reaches_the_group(
    world: World, fake: tuple[FakeBotApi, str]
) -> None:
    _, url = fake
    enable_rules(world)
    configured = channels(url)
    deriver = Deriver(world.sessions, configured, clock=world.clock)
    await world.doctor(north_m=100)
    await world.new_call(await world.patient())  # offered to the doctor: an offer, not an escalation
    await deriver.run_once()
    assert await rows(world, channel="tg_group") == []
    await close(configured)
