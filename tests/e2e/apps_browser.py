"""Browser steps the three apps' end-to-end tests share: the patient's app (``/app``), the doctor's app
(``/doctor``) and the dispatcher console (``/console``), driven by Playwright in Debian's Chromium
(:mod:`tests.e2e.console_browser`). Selectors and page handles are the ones docs/patient-app.md,
docs/doctor-app.md and docs/console.md describe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Geolocation, Page

from tests.conftest import create_migrated_pg_database, drop_pg_database, redis_test_url
from tests.e2e.console_browser import ROOT
from tests.e2e.dispatch_world import City, city, forget_engine_keys

WAIT_MS = 30_000
"""How long a step waits for the page (generous: a loaded 2-core machine runs three pages and a server)."""
PHONE = {"width": 420, "height": 900}
DESKTOP = {"width": 1400, "height": 860}


def geolocation(lat: float, lon: float, accuracy: float = 12) -> Geolocation:
    """An emulated position (degrees; accuracy in metres)."""
    return {"latitude": lat, "longitude": lon, "accuracy": accuracy}


async def until(page: Page, predicate: str, arg: Any = None, timeout_ms: int = WAIT_MS) -> None:
    """Wait until the JS function ``predicate(arg)`` is truthy in the page; ``TimeoutError`` if not."""
    await page.wait_for_function(predicate, arg=arg, timeout=timeout_ms)


async def shows(page: Page, selector: str, timeout_ms: int = WAIT_MS) -> None:
    """Wait until the page has a visible element matching ``selector``; ``TimeoutError`` if not."""
    await page.wait_for_selector(selector, timeout=timeout_ms)


async def js(page: Page, expression: str, arg: Any = None) -> Any:
    """Evaluate ``expression`` (a function of ``arg``) in the page."""
    return await page.evaluate(expression, arg)


async def app_context(
    browser: Browser,
    *,
    at: tuple[float, float] | None = None,
    viewport: dict[str, int] = PHONE,
    locale: str = "en-US",
) -> BrowserContext:
    """A browser context (a phone by default); ``at``: with the geolocation permission, emulated there."""
    options: dict[str, Any] = {"viewport": viewport, "locale": locale}
    if at is not None:
        options["geolocation"] = geolocation(*at)
        options["permissions"] = ["geolocation"]
    return await browser.new_context(**options)


def watch_errors(page: Page, name: str) -> list[str]:
    """The list the page's uncaught errors are appended to (prefixed with ``name``); its console lines
    are printed (pytest shows them when a test fails)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"{name}: {exc}"))
    page.on("console", lambda msg: print(f"{name} {msg.type}: {msg.text}"))
    return errors


async def shot(page: Page, folder: str, name: str) -> Path:
    """Save the page as ``build/<folder>/<name>.png`` (``build/`` is not committed); returns the path."""
    directory = ROOT / "build" / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


# --- the doctor's app -------------------------------------------------------------------------------


async def go_on_shift(page: Page) -> None:
    """Press "On shift" in a signed-in doctor's app; returns once it has a position and the server has
    the doctor available."""
    await page.click("#shift-available")
    await page.wait_for_selector("#location-state[data-state='ok']", timeout=WAIT_MS)
    await page.wait_for_selector("#server-status[data-status='available']", timeout=WAIT_MS)


async def visit_step(page: Page, status: str) -> None:
    """Press the visit's next-status button for ``status``; returns once the app shows it (the server
    answered)."""
    await page.click(f"#visit-next[data-next='{status}']")
    await page.wait_for_selector(f"#visit[data-status='{status}']", timeout=WAIT_MS)


async def complete_with_price(page: Page, price: str) -> None:
    """Enter the final price and complete the visit; returns once the app shows it completed."""
    await page.fill("#visit-price", price)
    await visit_step(page, "completed")


# --- the patient's app ------------------------------------------------------------------------------

PATIENT_DOCTOR_AT = """([lat, lon]) => {
  const m = window.totPatient && window.totPatient.markers.doctor;
  if (!m) return false;
  const at = m.getLatLng();
  return Math.abs(at.lat - lat) < 1e-6 && Math.abs(at.lng - lon) < 1e-6;
}"""
"""Whether the patient's map has the doctor's marker at ``[lat, lon]``."""

RECORD_APPROACH = """() => {
  const seen = [];
  let last = null;
  const note = () => {
    const a = window.totPatient && window.totPatient.approach;
    if (!a || a === last) return;
    last = a;
    seen.push({ distance_m: a.distance_m, eta_s: a.eta_s, lat: a.lat, lon: a.lon });
  };
  // Each doctor.position the app takes is drawn into #call-approach (its text and data attributes).
  const options = { attributes: true, childList: true, subtree: true };
  new MutationObserver(note).observe(document.getElementById("call-approach"), options);
  window.totVisitApproach = seen;
}"""
"""Install, in the patient's app, a record of every distance and ETA it shows
(``window.totVisitApproach``: ``{distance_m, eta_s, lat, lon}`` in order)."""

APPROACH_AT = """([lat, lon]) => {
  const seen = window.totVisitApproach || [];
  const a = seen[seen.length - 1];
  return !!a && a.distance_m !== null && Math.abs(a.lat - lat) < 1e-6 && Math.abs(a.lon - lon) < 1e-6;
}"""
"""Whether the last distance the patient's app showed was for the doctor at ``[lat, lon]``."""


async def request_doctor_here(page: Page, address: str, symptoms: str) -> dict[str, Any]:
    """In a signed-in patient's app: request a therapist at the browser's location; returns the call
    (REST shape) once the app shows it."""
    await page.fill("#address", address)
    await page.click("#locate")
    await until(page, "() => !!(window.totPatient && window.totPatient.markers.point)")
    await page.select_option("#specialty", "therapist")
    await page.fill("#symptoms", symptoms)
    await page.click("#request-submit")
    await page.wait_for_selector("#call:not([hidden])", timeout=WAIT_MS)
    call: dict[str, Any] = await js(page, "() => window.totPatient.call")
    return call


# --- the dispatcher console -------------------------------------------------------------------------

RECORD_CALL_STATUSES = """() => {
  const calls = window.totConsole.calls;
  const seen = {};
  const note = (id) => {
    const status = calls.get(id) ? calls.get(id).status : calls.ended.get(id);
    const list = seen[id] || (seen[id] = []);
    if (status && list[list.length - 1] !== status) list.push(status);
  };
  for (const id of calls.calls.keys()) note(id);
  calls.onChange((id) => { for (const each of id === null ? calls.calls.keys() : [id]) note(each); });
  window.totVisitStatuses = seen;
}"""
"""Install, in a signed-in console, a record of the statuses it holds for each call, each change once
(``window.totVisitStatuses``: call id -> statuses in order; a call that ended: its final status)."""

CONSOLE_IN_VIEW = """(points) => {
  const map = window.totConsole && window.totConsole.map;
  return !!map && points.every(([lat, lon]) => map.getBounds().contains([lat, lon]));
}"""
"""Whether the console's map shows every ``[lat, lon]`` of ``points``."""

CONSOLE_SAW = """([id, status]) => {
  const seen = (window.totVisitStatuses || {})[id] || [];
  return seen[seen.length - 1] === status;
}"""
"""Whether the console's latest status for call ``id`` is ``status``."""


async def console_statuses(page: Page, call_id: str) -> list[str]:
    """The statuses the console recorded for ``call_id`` (after :data:`RECORD_CALL_STATUSES`)."""
    seen: list[str] = await js(page, "(id) => (window.totVisitStatuses || {})[id] || []", call_id)
    return seen


async def console_sees(page: Page, call_id: str, status: str) -> None:
    """Wait until the console's latest status for ``call_id`` is ``status``."""
    await until(page, CONSOLE_SAW, [call_id, status])


@contextlib.contextmanager
def deployed_city(deployment: str, cwd: Path, settings: dict[str, str], name: str) -> Iterator[City]:
    """One doctor and one patient (and the dispatcher) on ``deployment``: ``"sqlite"`` the embedded
    default (SQLite, memory engine), ``"postgresql"`` a scratch PostgreSQL database ``<name>_*`` with the
    Redis engine (dropped, with the engine's keys, afterwards)."""
    if deployment == "sqlite":
        with city(cwd, doctors=1, patients=1, settings=settings) as c:
            yield c
        return
    database_url = asyncio.run(create_migrated_pg_database(name))
    prefix = ""
    try:
        stores: dict[str, Any] = {"database_url": database_url, "engine_url": redis_test_url()}
        with city(cwd, doctors=1, patients=1, settings=settings, **stores) as c:
            prefix = c.env["TOT_ENGINE_PREFIX"]
            yield c
    finally:
        if prefix:
            asyncio.run(forget_engine_keys(prefix))
        asyncio.run(drop_pg_database(database_url))
