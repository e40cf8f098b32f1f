"""The apps' "Link Telegram" control (server/static/shared/telegram.js) and the patient app's phone
confirmation form (server/static/shared/phone.js) in headless Chromium, against a real server process
whose bot talks to the loopback fake Bot API and whose SMS go to the loopback fake gateway.

For each app (patient, doctor, console): the button asks the server for a link and opens the deep link
``https://t.me/<bot>?start=<token>`` (``window.open`` is stubbed: tests never reach the internet);
the fake Bot API then posts the ``/start <token>`` update Telegram would send when the person presses
Start, and the page shows the chat linked; Unlink unlinks it. Russian text after a switch of language.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, Page

from models.enums import Role
from server.notify.fake_sms import FakeSmsGateway
from server.notify.fake_telegram import BOT_USERNAME, FakeBotApi, serving_in_thread
from tests.e2e.apps_browser import js, shot, watch_errors
from tests.e2e.console_browser import chromium, sign_in
from tests.e2e.dispatch_world import PASSWORD, City, city

WAIT_MS = 15_000
SECRET = "webhook-secret-0123456789"
SETTINGS = {
    "TOT_TELEGRAM_BOT_TOKEN": "123456:E2E-token",
    "TOT_TELEGRAM_WEBHOOK_SECRET": SECRET,
    "TOT_TELEGRAM_BOT_USERNAME": BOT_USERNAME,
    "TOT_CONSOLE_TILE_URL": "off",
    "TOT_PHONE_CODE_LIMIT_ACCOUNT": "off",
    "TOT_PHONE_CODE_LIMIT_ADDRESS": "off",
}
NO_POPUPS = "window.open = (url) => { window.__opened = url; return null; };"
"""Stands in for the new tab: the deep link points at t.me, and tests never reach the internet."""
_chats = itertools.count(9101)


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeBotApi, FakeSmsGateway, str, str]]:
    bot, sms = FakeBotApi(), FakeSmsGateway()
    with serving_in_thread(bot) as bot_url, serving_in_thread(sms) as sms_url:
        yield bot, sms, bot_url, sms_url


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeBotApi, FakeSmsGateway, str, str]
) -> Iterator[City]:
    settings = {**SETTINGS, "TOT_TELEGRAM_API_URL": fakes[2], "TOT_SMS_GATEWAY_URL": fakes[3]}
    with city(tmp_path_factory.mktemp("tg-buttons"), doctors=1, patients=1, settings=settings) as c:
        yield c


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


async def new_page(browser: Browser) -> tuple[Page, list[str]]:
    context = await browser.new_context(locale="en-US", viewport={"width": 1200, "height": 820})
    await context.add_init_script(NO_POPUPS)
    page = await context.new_page()
    return page, watch_errors(page, "page")


def start_update(chat: int, token: str) -> dict[str, object]:
    sender = {"id": chat, "is_bot": False, "first_name": "T", "language_code": "en"}
    chat_of = {"id": chat, "type": "private"}
    return {
        "message": {"message_id": 1, "date": 0, "chat": chat_of, "from": sender, "text": f"/start {token}"}
    }


@pytest.mark.parametrize(
    ("path", "role"), [("/app", Role.PATIENT), ("/doctor", Role.DOCTOR), ("/console", Role.DISPATCHER)]
)
async def test_the_button_links_through_the_deep_link_and_unlinks(
    world: City, fakes: tuple[FakeBotApi, FakeSmsGateway, str, str], browser: Browser, path: str, role: Role
) -> None:
    bot = fakes[0]
    person = world.of_role(role)[0]
    page, errors = await new_page(browser)
    try:
        await sign_in(page, world.url, person.email, PASSWORD, path=path)
        await page.wait_for_selector("#telegram .tg-link", timeout=WAIT_MS)
        assert await page.text_content("#telegram .tg-link") == "Link Telegram"
        await page.click("#telegram .tg-link")
        await page.wait_for_selector("#telegram a.tg-open", timeout=WAIT_MS)
        href = await page.get_attribute("#telegram a.tg-open", "href")
        assert href is not None and href == await js(page, "() => window.__opened")
        link = re.fullmatch(rf"https://t\.me/{BOT_USERNAME}\?start=([A-Za-z0-9_-]{{32}})", href)
        assert link is not None, href
        # The person presses Start in Telegram: the Bot API posts /start <token> to the webhook.
        answer = await bot.deliver(
            f"{world.url}/v1/telegram/webhook", start_update(next(_chats), link.group(1)), SECRET
        )
        assert answer.json()["handled"] == "linked", answer.text
        await page.wait_for_selector("#telegram[data-state=linked] .tg-unlink", timeout=WAIT_MS)
        assert await page.text_content("#telegram .tg-state") == "Telegram linked"
        await shot(page, "telegram-buttons", f"{path.strip('/')}-linked")
        assert (await world.http("GET", "/v1/telegram/link", person)).json()["linked"] is True
        await page.select_option("#language", "ru")
        assert await page.text_content("#telegram .tg-state") == "Telegram подключён"
        await page.click("#telegram .tg-unlink")
        await page.wait_for_selector("#telegram[data-state=unlinked] .tg-link", timeout=WAIT_MS)
        assert await page.text_content("#telegram .tg-link") == "Подключить Telegram"
        assert (await world.http("GET", "/v1/telegram/link", person)).json()["linked"] is False
        assert errors == []
    finally:
        await page.context.close()


async def test_a_phone_sign_up_is_confirmed_with_the_sms_code(
    world: City, fakes: tuple[FakeBotApi, FakeSmsGateway, str, str], browser: Browser
) -> None:
    sms = fakes[1]
    digits = f"{secrets.randbelow(10**7):07d}"
    phone = f"+7999{digits}"
    page, errors = await new_page(browser)
    try:
        await page.goto(f"{world.url}/app")
        await page.fill("#signup-name", "Oleg Ivanov")
        await page.fill("#signup-login", f"8 999 {digits[:3]}-{digits[3:5]}-{digits[5:]}")
        await page.fill("#signup-password", "patient-pass-1")
        await page.click("#signup-submit")
        await page.wait_for_selector("#phone-form #phone-code", timeout=WAIT_MS)
        assert await page.is_hidden("#signup-form")
        deadline = time.monotonic() + 10
        while not [m for m in sms.messages if m["to"] == phone]:
            assert time.monotonic() < deadline, "no SMS reached the gateway"
            await page.wait_for_timeout(50)
        text = next(str(m["text"]) for m in sms.messages if m["to"] == phone)
        found = re.search(r"\b(\d{6})\b", text)
        assert found is not None, text
        wrong = f"{(int(found.group(1)) + 1) % 10**6:06d}"
        await page.fill("#phone-code", wrong)
        await page.click("#phone-submit")
        await page.wait_for_selector("#phone-error:has-text('Wrong or expired code')", timeout=WAIT_MS)
        await page.fill("#phone-code", found.group(1))
        await page.click("#phone-submit")
        await page.wait_for_selector("#request:not([hidden])", timeout=WAIT_MS)
        session = await js(page, "() => JSON.parse(localStorage.getItem('tot-patient-session'))")
        assert session["user"]["phone"] == phone
        assert errors == []
    finally:
        await page.context.close()
