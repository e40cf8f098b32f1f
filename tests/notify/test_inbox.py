"""The inbox over REST (an in-process app on SQLite): a person's own notifications, newest first, in
the language their registration's Accept-Language chose, with cursor paging; nobody else's."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from models.users import User
from tests.conftest import app_client_for, make_settings, services_of
from tests.helpers import bearer, register, staff, unique_email


@pytest.fixture
async def client(sqlite_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client_for(make_settings(sqlite_database_url)) as http:
        yield http


async def _inbox(client: httpx.AsyncClient, token: str, **query: Any) -> dict[str, Any]:
    response = await client.get("/v1/notifications", params=query, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_inbox_pages_a_persons_own_news_in_their_language(client: httpx.AsyncClient) -> None:
    other = await register(client, "patient")
    response = await client.post(
        "/v1/auth/register",
        json={
            "email": unique_email("en"),
            "password": "inbox-password-1",
            "full_name": "En",
            "role": "patient",
        },
        headers={"Accept-Language": "en-GB,en;q=0.9,ru;q=0.5"},
    )
    assert response.status_code == 201, response.text
    english = response.json()
    async with services_of(client).sessions() as session:
        languages = dict((await session.execute(sa.select(User.email, User.language))).all())
    assert languages[english["user"]["email"]] == "en"
    assert languages[other["user"]["email"]] == "ru"

    token = english["tokens"]["access_token"]
    for _ in range(3):
        created = await client.post(
            "/v1/calls",
            json={
                "address": "Inbox street",
                "lat": 60.0,
                "lon": 30.0,
                "urgency": "urgent",
                "specialty": "therapist",
            },
            headers=bearer(token),
        )
        assert created.status_code == 201, created.text
        cancelled = await client.post(
            f"/v1/calls/{created.json()['id']}/cancel",
            json={"reason": "no longer needed"},
            headers=bearer(token),
        )
        assert cancelled.status_code == 200, cancelled.text

    deadline = time.monotonic() + 15
    while len((await _inbox(client, token, limit=100))["items"]) < 3:  # the deriver runs every 250 ms
        assert time.monotonic() < deadline, "the notifications were not derived"
        await asyncio.sleep(0.05)
    first = await _inbox(client, token, limit=2)
    assert [i["text"] for i in first["items"]] == ["Your call was cancelled."] * 2
    assert first["next"] == first["items"][-1]["id"]
    second = await _inbox(client, token, limit=2, before=first["next"])
    assert len(second["items"]) == 1 and second["next"] is None
    ids = [i["id"] for i in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)
    assert (await _inbox(client, other["tokens"]["access_token"]))["items"] == []
    assert (await client.get("/v1/notifications")).status_code == 401
    assert (
        await client.get("/v1/notifications", params={"limit": 0}, headers=bearer(token))
    ).status_code == 422


async def test_preferences_round_trip_and_refuse_bad_values(client: httpx.AsyncClient) -> None:
    token = (await register(client, "patient"))["tokens"]["access_token"]
    url = "/v1/notifications/preferences"
    start = await client.get(url, headers=bearer(token))
    assert start.json() == {"language": "ru", "time_zone": None, "quiet_hours": None, "channels": []}
    channels: list[dict[str, Any]] = [
        {"kind": "arrived", "channel": "sms", "enabled": True},
        {"kind": "*", "channel": "email", "enabled": False},
    ]
    body: dict[str, Any] = {
        "language": "en",
        "time_zone": "Asia/Yekaterinburg",
        "quiet_hours": {"start": "22:30", "end": "07:00"},
        "channels": channels,
    }
    changed = await client.put(url, json=body, headers=bearer(token))
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        **body,
        "channels": sorted(channels, key=lambda c: (c["kind"], c["channel"])),
    }
    partial = await client.put(url, json={"quiet_hours": None}, headers=bearer(token))
    assert partial.json()["quiet_hours"] is None
    assert partial.json()["language"] == "en" and len(partial.json()["channels"]) == 2
    for bad in (
        {"language": "de"},
        {"time_zone": "Mars/Olympus"},
        {"quiet_hours": {"start": "25:00", "end": "07:00"}},
        {"channels": [{"kind": "lunch", "channel": "email", "enabled": True}]},
        {"channels": [{"kind": "*", "channel": "pigeon", "enabled": True}]},
        {"colour": "blue"},
    ):
        refused = await client.put(url, json=bad, headers=bearer(token))
        assert refused.status_code == 422, (bad, refused.text)


async def test_staff_see_what_was_sent_for_a_call_and_metrics_count_it(
    client: httpx.AsyncClient, sqlite_database_url: str
) -> None:
    patient = await register(client, "patient")
    dispatcher = await staff(client, sqlite_database_url, "dispatcher")
    token = patient["tokens"]["access_token"]
    created = await client.post(
        "/v1/calls",
        json={
            "address": "Staff street",
            "lat": 61.0,
            "lon": 30.0,
            "urgency": "urgent",
            "specialty": "therapist",
        },
        headers=bearer(token),
    )
    call_id = created.json()["id"]
    deadline = time.monotonic() + 15
    while (await client.get(f"/v1/calls/{call_id}", headers=bearer(token))).json()["status"] != "escalated":
        assert time.monotonic() < deadline, "nobody is in range: the call escalates"
        await asyncio.sleep(0.05)
    await client.post(
        f"/v1/calls/{call_id}/cancel", json={"reason": "no longer needed"}, headers=bearer(token)
    )
    url = f"/v1/calls/{call_id}/notifications"
    staff_token = dispatcher["tokens"]["access_token"]
    while True:
        items = (await client.get(url, headers=bearer(staff_token))).json()["items"]
        if {"escalated", "cancelled"} <= {i["kind"] for i in items}:
            break
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.05)
    cancelled = [i for i in items if i["kind"] == "cancelled"]
    assert [(i["person"], i["channel"], i["status"]) for i in cancelled] == [
        (patient["user"]["id"], "inbox", "sent")
    ]
    assert dispatcher["user"]["id"] in {i["person"] for i in items if i["kind"] == "escalated"}
    assert (await client.get(url, headers=bearer(token))).status_code == 403
    missing = await client.get(f"/v1/calls/{uuid.uuid4()}/notifications", headers=bearer(staff_token))
    assert missing.status_code == 404
    metrics = (await client.get("/metrics")).text
    derived = [line for line in metrics.splitlines() if line.startswith("tot_notify_derived ")]
    assert derived and float(derived[0].split()[1]) >= 2
