"""Web push in the doctor's app, in a real browser (headless Chromium through Playwright) against a
real server: the app's service worker is handed a push message through the DevTools protocol
(``ServiceWorker.deliverPushMessage``, as the browser's push service would deliver it) carrying the
payload the server's web push channel builds (server/notify/push_payload.py), shows the notification
with its Accept / Decline actions, and accepting from it makes the same state as accepting in the app:
the call assigned to this doctor. Both click paths: the service worker's click handler messaging the
open app, and the URL it opens when no window is open (``/doctor?accept=<offer>``). The dispatcher
console's service worker shows an escalation (in Russian) and a click selects the call.

The embedded default (SQLite, memory engine), then PostgreSQL with the Redis engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, CDPSession, Page

from models.enums import Role
from server.notify.actions import buttons
from server.notify.channels import Message
from server.notify.push_payload import payload
from server.notify.templates import render
from server.notify.vapid import generate_private_key
from tests.e2e.apps_browser import deployed_city, geolocation, go_on_shift, until
from tests.e2e.console_browser import chromium, sign_in
from tests.e2e.dispatch_world import CENTRE, PASSWORD, City, Person, offset

SETTINGS = {
    "TOT_OFFER_TIMEOUT": "30",
    "TOT_VAPID_PRIVATE_KEY": generate_private_key(),
    "TOT_PUSH_ALLOW_LOOPBACK": "true",
}
WAIT_MS = 20_000
CALL_AT = offset(*CENTRE, 200, 100)
NOTIFICATIONS = """async () => (await (await navigator.serviceWorker.ready).getNotifications()).map(
  (n) => ({title: n.title, body: n.body, tag: n.tag, data: n.data,
           actions: n.actions.map((a) => a.action)}))"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[City]:
    with deployed_city(request.param, tmp_path_factory.mktemp("push-browser"), SETTINGS, "tot_push_app") as c:
        yield c


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as b:
        yield b


@pytest.fixture(scope="module")
async def context(world: City, browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(
        viewport={"width": 420, "height": 900},
        locale="en-US",
        geolocation=geolocation(*CENTRE),
        permissions=["geolocation", "notifications"],
    )
    yield ctx
    await ctx.close()


@pytest.fixture(scope="module")
async def page(world: City, context: BrowserContext) -> AsyncIterator[Page]:
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: print(f"page {msg.type}: {msg.text}"))
    await sign_in(page, world.url, doctor(world).email, PASSWORD, path="/doctor")
    await go_on_shift(page)
    await page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
    yield page
    assert errors == [], f"the page threw: {errors}"


def doctor(world: City) -> Person:
    return world.of_role(Role.DOCTOR)[0]


def patient(world: City) -> Person:
    return world.of_role(Role.PATIENT)[0]


async def registration_id(cdp: CDPSession, scope: str) -> str:
    """The service worker registration of ``scope``, as DevTools names it."""
    found: dict[str, str] = {}
    seen = asyncio.Event()

    def updated(event: dict[str, Any]) -> None:
        for reg in event["registrations"]:
            if reg["scopeURL"].rstrip("/") == scope and not reg.get("isDeleted"):
                found["id"] = reg["registrationId"]
                seen.set()

    cdp.on("ServiceWorker.workerRegistrationUpdated", updated)
    await cdp.send("ServiceWorker.enable")
    try:
        async with asyncio.timeout(WAIT_MS / 1000):
            await seen.wait()
    except TimeoutError:
        raise AssertionError(f"DevTools named no service worker registration of {scope}") from None
    return found["id"]


async def offered(world: City, page: Page) -> tuple[str, dict[str, Any]]:
    """A patient's new call, offered to the doctor's app: ``(call id, the offer as the card has it)``."""
    response = await world.create_call(patient(world), *CALL_AT, symptoms="cough")
    assert response.status_code == 201, response.text
    call_id: str = response.json()["id"]
    await page.locator("#offer[data-state='open']").wait_for(timeout=WAIT_MS)
    offer: dict[str, Any] = await page.evaluate("() => window.totDoctor.offer.offer")
    assert offer["call"]["id"] == call_id
    return call_id, offer


def pushed(offer: dict[str, Any]) -> dict[str, Any]:
    """What the server's web push channel sends the doctor for ``offer`` (English)."""
    params = {
        "offer": offer["id"],
        "address": offer["call"]["address"],
        "urgency": offer["call"]["urgency"],
        "distance_m": offer["distance_m"],
        "eta_s": offer["eta_s"],
        "deadline_ms": offer["deadline"],
    }
    message = Message(
        text=render("offer", "en", params),
        buttons=buttons("offer", params, "en"),
        key="notification:1",
        kind="offer",
        params=params,
        call_id=offer["call"]["id"],
        language="en",
    )
    return payload(message)


async def deliver(
    cdp: CDPSession, page: Page, world: City, registration: str, data: dict[str, Any]
) -> list[dict[str, Any]]:
    """Hand ``data`` to the service worker as a push message; returns the notifications it then shows."""
    await cdp.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": world.url, "registrationId": registration, "data": json.dumps(data)},
    )
    shown: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(WAIT_MS / 1000):
            while not any(n["tag"] == data["tag"] for n in shown):
                await asyncio.sleep(0.05)
                shown = await page.evaluate(NOTIFICATIONS)
    except TimeoutError:
        raise AssertionError(f"the service worker showed no notification; it shows {shown}") from None
    return shown


async def release(world: City, call_id: str) -> None:
    """Cancel the call as the patient (the doctor is freed for the next test)."""
    response = await world.http(
        "POST", f"/v1/calls/{call_id}/cancel", patient(world), json={"reason": "test over"}
    )
    assert response.status_code == 200, response.text
    await world.wait_status(call_id, {"cancelled"})


async def test_a_pushed_offer_is_shown_and_accepted_from_the_notification(
    world: City, context: BrowserContext, page: Page
) -> None:
    cdp = await context.new_cdp_session(page)
    registration = await registration_id(cdp, f"{world.url}/doctor")
    call_id, offer = await offered(world, page)
    data = pushed(offer)
    [shown] = await deliver(cdp, page, world, registration, data)
    assert shown["title"] == "New call" and "Answer by" in shown["body"]
    assert shown["actions"] == ["accept", "decline"]
    assert shown["data"]["offer"] == offer["id"] and shown["data"]["url"] == f"/doctor?offer={offer['id']}"

    [worker] = context.service_workers
    how = await worker.evaluate(
        """async (tag) => {
          const [n] = await self.registration.getNotifications({tag});
          return self.totPush.click(n, "accept");
        }""",
        data["tag"],
    )
    assert how == "message"  # the app was open: it was told, and accepted over REST
    assigned = await world.wait_status(call_id, {"assigned"})
    assert assigned["doctor_id"] == doctor(world).id
    await page.wait_for_selector(f"#visit[data-call='{call_id}'][data-status='assigned']", timeout=WAIT_MS)
    assert await page.locator("#offer").is_hidden()
    assert await page.evaluate(NOTIFICATIONS) == []  # the click closed it
    await release(world, call_id)


async def test_the_url_a_closed_app_is_opened_at_accepts_the_offer(
    world: City, context: BrowserContext, page: Page
) -> None:
    await page.wait_for_selector("#server-status[data-status='available']", timeout=WAIT_MS)
    call_id, offer = await offered(world, page)
    cdp = await context.new_cdp_session(page)
    registration = await registration_id(cdp, f"{world.url}/doctor")
    await deliver(cdp, page, world, registration, pushed(offer))
    [worker] = context.service_workers
    target = await worker.evaluate(
        "(data) => self.totPush.target({data}, 'accept')",
        pushed(offer) | {"url": f"/doctor?offer={offer['id']}"},
    )
    assert target["url"] == f"/doctor?accept={offer['id']}"
    await page.goto(f"{world.url}{target['url']}")  # what clients.openWindow opens
    assigned = await world.wait_status(call_id, {"assigned"})
    assert assigned["doctor_id"] == doctor(world).id
    await page.wait_for_selector(f"#visit[data-call='{call_id}'][data-status='assigned']", timeout=WAIT_MS)
    await until(page, "() => location.search === ''")  # a reload does not answer again
    async with asyncio.timeout(WAIT_MS / 1000):  # the answered offer's notification is closed
        shown = await page.evaluate(NOTIFICATIONS)
        while shown:
            await asyncio.sleep(0.05)
            shown = await page.evaluate(NOTIFICATIONS)
    await release(world, call_id)


async def test_the_console_shows_an_escalation_and_a_click_selects_the_call(
    world: City, browser: Browser
) -> None:
    ctx = await browser.new_context(
        viewport={"width": 1400, "height": 860}, locale="ru-RU", permissions=["notifications"]
    )
    try:
        console = await ctx.new_page()
        errors: list[str] = []
        console.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(console, world.url, world.dispatcher.email, PASSWORD)
        await console.evaluate("async () => (await navigator.serviceWorker.ready).scope")
        assert await console.get_attribute("#push", "data-state") == "off"  # web push on, not yet allowed
        cdp = await ctx.new_cdp_session(console)
        registration = await registration_id(cdp, f"{world.url}/console")
        response = await world.create_call(patient(world), *offset(*CENTRE, 5_000, 0), symptoms="")
        call_id = response.json()["id"]
        params = {"address": "Test street 1", "reason": "no_candidates"}
        message = Message(
            text=render("escalated", "ru", params),
            key="notification:2",
            kind="escalated",
            params=params,
            call_id=call_id,
            language="ru",
        )
        data = payload(message)
        [shown] = await deliver(cdp, console, world, registration, data)
        assert shown["title"] == "Нужен диспетчер" and shown["actions"] == []
        assert shown["data"]["url"] == f"/console?call={call_id}"
        [worker] = [w for w in ctx.service_workers if w.url.endswith("/console/sw.js")]
        how = await worker.evaluate(
            "async (tag) => self.totPush.click((await self.registration.getNotifications({tag}))[0], '')",
            data["tag"],
        )
        assert how == "message"
        await until(console, "(id) => window.totConsole.selected === id", call_id)
        assert errors == []
        await world.http("POST", f"/v1/calls/{call_id}/cancel", patient(world), json={"reason": "test over"})
    finally:
        await ctx.close()
