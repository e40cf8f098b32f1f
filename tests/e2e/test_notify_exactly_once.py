"""Exactly once across kill -9: every (event, person, channel) reaches its fake provider once.

Patients linked to Telegram chats each have five calls cancelled: five ``cancelled`` notifications a
chat (paced one a second per chat, so they stay in flight for seconds) and five e-mails to their
address (the fake SMTP server). A server is killed with -9
while they are being sent; the rest arrive through the survivor (scale-out: two processes on
PostgreSQL and Redis) or through the same server restarted on its SQLite file (embedded). Each chat
then holds exactly five messages, and each mailbox five e-mails: none lost, none twice. In the
database every row is ``sent``, or ``failed`` as ``outcome_unknown`` when its sender died between
handing it over and recording the answer (the fake did record it: it counts once).
"""

from __future__ import annotations

import asyncio
import email.message
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.notifications import Notification
from models.repositories import telegram as telegram_repo
from server.notify.fake_telegram import BOT_USERNAME, FakeBotApi, serving_in_thread
from tests.conftest import create_pg_database, drop_pg_database, redis_test_url
from tests.e2e.dispatch_world import CENTRE, City, city, forget_engine_keys
from tests.e2e.process import kill_hard, run_server
from tests.notify.fake_smtp import FakeSmtp, smtp_serving

CALLS_PER_PATIENT = 5
PATIENTS = 12
CHAT0 = 90_000
SETTINGS = {
    "TOT_SEARCH_RINGS_KM": "1",
    "TOT_TELEGRAM_BOT_TOKEN": "123456:KILL-token",
    "TOT_TELEGRAM_WEBHOOK_SECRET": "kill-secret-0123456789",
    "TOT_TELEGRAM_BOT_USERNAME": BOT_USERNAME,
    "TOT_NOTIFY_LEASE_MS": "3000",
    "TOT_OUTBOX_COMMIT_LEASE_MS": "1000",
}
pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]


async def _link_patients(world: City) -> dict[int, str]:
    engine = make_engine(world.database_url)
    chats: dict[int, str] = {}
    try:
        async with make_sessionmaker(engine).begin() as session:
            for i, patient in enumerate(world.of_role(Role.PATIENT)):
                chats[CHAT0 + i] = patient.id
                await telegram_repo.link(session, uuid.UUID(patient.id), CHAT0 + i, 0)
    finally:
        await engine.dispose()
    return chats


async def _make_news(world: City, servers: list[str]) -> None:
    """Each patient files and cancels :data:`CALLS_PER_PATIENT` calls, spread over ``servers``."""

    async def one(patient_index: int) -> None:
        patient = world.of_role(Role.PATIENT)[patient_index]
        headers = {"Authorization": f"Bearer {patient.token}"}
        for n in range(CALLS_PER_PATIENT):
            base = servers[(patient_index + n) % len(servers)]
            async with httpx.AsyncClient(base_url=base, timeout=30, headers=headers) as client:
                body = {
                    "address": "Kill street",
                    "lat": CENTRE[0] + 5,
                    "lon": CENTRE[1],
                    "urgency": "urgent",
                    "specialty": "therapist",
                }
                created = await client.post("/v1/calls", json=body)
                assert created.status_code == 201, created.text
                cancelled = await client.post(
                    f"/v1/calls/{created.json()['id']}/cancel", json={"reason": "changed my mind"}
                )
                assert cancelled.status_code == 200, cancelled.text

    await asyncio.gather(*(one(i) for i in range(PATIENTS)))


def _per_chat(fake: FakeBotApi) -> Counter[int]:
    return Counter(
        int(r.params["chat_id"])
        for r in fake.calls("sendMessage")
        if "отменён" in str(r.params.get("text", ""))
    )


def _per_mailbox(fake: FakeSmtp) -> Counter[str]:
    return Counter(str(m["To"]) for m in fake.messages if "отменён" in _text(m))


def _text(message: email.message.EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    return "" if body is None else str(body.get_content())


def _wait(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


async def _summary(database_url: str) -> str:
    """What the database says of the notifications and the outbox (for a failure's message)."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            by_status = await session.execute(
                sa.text(
                    "SELECT channel, status, coalesce(last_error, ''), count(*) FROM notifications"
                    " WHERE kind = 'cancelled' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
                )
            )
            outbox = await session.execute(
                sa.text(
                    "SELECT count(*), count(*) - count(notified_ms), count(*) - count(published_ms)"
                    " FROM outbox"
                )
            )
            return f"notifications {list(by_status)}; outbox (rows, unread, unpublished) {list(outbox)}"
    finally:
        await engine.dispose()


async def _rows(database_url: str) -> list[tuple[str, str | None]]:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await session.execute(
                sa.select(Notification.status, Notification.last_error).where(
                    Notification.channel.in_(("telegram", "email")), Notification.kind == "cancelled"
                )
            )
            return [(s, e) for s, e in rows]
    finally:
        await engine.dispose()


def _check(fake: FakeBotApi, smtp: FakeSmtp, world: City) -> None:
    database_url = world.database_url
    expected = PATIENTS * CALLS_PER_PATIENT
    try:
        _wait(
            lambda: (
                sum(_per_chat(fake).values()) >= expected and sum(_per_mailbox(smtp).values()) >= expected
            ),
            90,
            "too few arrived",
        )
    except TimeoutError:
        raise AssertionError(
            f"{sum(_per_chat(fake).values())} messages and {sum(_per_mailbox(smtp).values())} e-mails"
            f" of {expected} each arrived; {asyncio.run(_summary(database_url))}"
        ) from None
    time.sleep(1.5)  # a late duplicate would arrive within the pace of its chat
    assert _per_chat(fake) == Counter({CHAT0 + i: CALLS_PER_PATIENT for i in range(PATIENTS)})
    patients = world.of_role(Role.PATIENT)
    assert _per_mailbox(smtp) == Counter({p.email: CALLS_PER_PATIENT for p in patients})
    rows = asyncio.run(_rows(database_url))
    assert len(rows) == 2 * expected
    _wait(
        lambda: all(s in ("sent", "failed") for s, _ in asyncio.run(_rows(database_url))),
        30,
        "rows still in flight",
    )
    rows = asyncio.run(_rows(database_url))
    assert {(s, e) for s, e in rows} <= {("sent", None), ("failed", "outcome_unknown")}


def _smtp_settings(port: int) -> dict[str, str]:
    return {"TOT_SMTP_HOST": "127.0.0.1", "TOT_SMTP_PORT": str(port)}


def test_two_processes_one_killed_every_notification_once(tmp_path: Path) -> None:
    fake = FakeBotApi(delay_s=0.05)
    smtp = FakeSmtp()
    database_url = asyncio.run(create_pg_database("tot_notify_kill"))
    try:
        with (
            serving_in_thread(fake) as api_url,
            smtp_serving(smtp) as smtp_port,
            city(
                tmp_path,
                doctors=0,
                patients=PATIENTS,
                servers=2,
                database_url=database_url,
                engine_url=redis_test_url(),
                settings={**SETTINGS, "TOT_TELEGRAM_API_URL": api_url, **_smtp_settings(smtp_port)},
            ) as world,
        ):
            try:
                asyncio.run(_link_patients(world))
                asyncio.run(_make_news(world, [s.url for s in world.servers]))
                _wait(lambda: sum(_per_chat(fake).values()) >= 15, 60, "no notifications in flight")
                kill_hard(world.servers[0])
                assert sum(_per_chat(fake).values()) < PATIENTS * CALLS_PER_PATIENT  # killed mid-way
                _check(fake, smtp, world)
            finally:
                asyncio.run(forget_engine_keys(world.env["TOT_ENGINE_PREFIX"]))
    finally:
        asyncio.run(drop_pg_database(database_url))


def test_the_embedded_server_killed_and_restarted_sends_every_notification_once(tmp_path: Path) -> None:
    fake = FakeBotApi(delay_s=0.05)
    smtp = FakeSmtp()
    with (
        serving_in_thread(fake) as api_url,
        smtp_serving(smtp) as smtp_port,
        city(
            tmp_path,
            doctors=0,
            patients=PATIENTS,
            settings={**SETTINGS, "TOT_TELEGRAM_API_URL": api_url, **_smtp_settings(smtp_port)},
        ) as world,
    ):
        asyncio.run(_link_patients(world))
        asyncio.run(_make_news(world, [world.url]))
        _wait(lambda: sum(_per_chat(fake).values()) >= 15, 60, "no notifications in flight")
        kill_hard(world.servers[0])
        assert sum(_per_chat(fake).values()) < PATIENTS * CALLS_PER_PATIENT
        with run_server(["serve"], world.env, world.cwd):
            _check(fake, smtp, world)
