"""Headless Chromium for the console's end-to-end tests and its benchmark (Playwright's Python client
driving Debian's ``chromium``; ``scripts/test`` installs both)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = os.environ.get("TOT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "console-screenshots"
"""Where the tests save what the page looked like at each step (``build/`` is not committed)."""
VIEWPORT = {"width": 1400, "height": 860}
ARGS = [
    "--no-sandbox",  # the test machines run as root, where Chromium's sandbox refuses to start
    "--autoplay-policy=no-user-gesture-required",  # the SOS alarm may sound without a click
    "--disable-gpu",
]


def chromium_installed() -> bool:
    """Whether the Chromium binary is there."""
    return os.path.exists(CHROMIUM)


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium. Raises ``RuntimeError`` naming the fix when it is not installed."""
    if not chromium_installed():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: run scripts/test (it installs Debian's chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base_url: str, login: str, password: str, path: str = "/console") -> None:
    """Open the console (or another app at ``path`` with the same sign-in form and ``#conn`` badge: the
    doctor's app) and sign in through its form; returns once the socket is live."""
    await page.goto(f"{base_url}{path}")
    await page.fill("#login-name", login)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await page.wait_for_selector("#conn.conn-online", timeout=15_000)


async def screenshot(page: Page, name: str) -> Path:
    """Save the page as ``build/console-screenshots/<name>.png``; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path
