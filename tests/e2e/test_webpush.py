"""Web push end to end: real server processes whose sender pushes to the loopback fake push service
(server/notify/fake_push.py, which checks VAPID and decrypts), doctors as real WebSocket clients with a
subscription the fake minted and registered over REST.

Both deployments: embedded (one process, SQLite, memory engine) and scale-out (two processes on
PostgreSQL + Redis; the doctor's socket on the second process, REST on the first, so the socket's
``offer.seen`` and the sender holding the push may be in different processes).

Each test works in its own area, 0.5 degree of latitude from the others (as tests/e2e/test_telegram.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from models.enums import Role
from realtime.client import ClientError
from server.notify.fake_push import FakePushService, FakeSubscription
from server.notify.fake_telegram import serving_in_thread
from server.notify.vapid import generate_private_key
from tests.e2e.dispatch_world import CENTRE, DEPLOYMENTS, City, Doctor, Person, deployed_city, offset

HOLD_MS = 1500
OFFER_TIMEOUT_S = 8
SETTINGS = {
    "TOT_SEARCH_RINGS_KM": "1,3",
    "TOT_OFFER_TIMEOUT": str(OFFER_TIMEOUT_S),
    "TOT_MAX_OFFERS_PER_CALL": "3",
    "TOT_BROADCAST_OFFERS": "1",
    "TOT_VAPID_PRIVATE_KEY": generate_private_key(),
    "TOT_VAPID_SUBJECT": "mailto:ops@tot.test",
    "TOT_PUSH_ALLOW_LOOPBACK": "true",
    "TOT_PUSH_OFFER_AFTER_MS": str(HOLD_MS),
    "TOT_NOTIFY_SENDER_INTERVAL_MS": "50",
}
_areas = itertools.count()


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakePushService, str]]:
    service = FakePushService()
    with serving_in_thread(service) as url:
        yield service, url


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake: tuple[FakePushService, str],
) -> Iterator[City]:
    cwd: Path = tmp_path_factory.mktemp(f"push-{request.param}")
    with deployed_city(request.param, cwd, doctors=12, patients=6, settings=SETTINGS, prefix="tot_push") as c:
        yield c


class Area:
    def __init__(self, world: City, fake: FakePushService, fake_url: str) -> None:
        self.world = world
        self.fake = fake
        self.fake_url = fake_url
        n = next(_areas) % 6
        self.lat, self.lon = CENTRE[0] + 0.5 * n, CENTRE[1]
        self.pool = world.of_role(Role.DOCTOR)[n * 2 : n * 2 + 2]
        self.patient = world.of_role(Role.PATIENT)[n]
        self.doctors: list[Doctor] = []

    async def doctor(self) -> Doctor:
        """A doctor 100 m north, on the last server's socket (the second process when scaled out)."""
        lat, lon = offset(self.lat, self.lon, 100.0)
        doctor = self.world.doctor(self.pool[len(self.doctors)], lat, lon, server=len(self.world.servers) - 1)
        await doctor.start()
        await doctor.fix()
        self.doctors.append(doctor)
        return doctor

    async def subscribe(self, who: Person) -> FakeSubscription:
        """A subscription minted by the fake for the server's VAPID key, registered as the app does."""
        key = await self.world.http("GET", "/v1/push/key", who)
        assert key.status_code == 200, key.text
        sub = self.fake.mint(self.fake_url, key.json()["public_key"])
        stored = await self.world.http("POST", "/v1/push/subscriptions", who, json=sub.json())
        assert stored.status_code == 201, stored.text
        assert stored.json()["endpoint"] == sub.endpoint
        return sub

    async def call(self) -> str:
        response = await self.world.create_call(self.patient, self.lat, self.lon)
        assert response.status_code == 201, response.text
        call_id: str = response.json()["id"]
        return call_id

    async def push_rows(
        self, call_id: str, settled: bool = True, timeout_s: float = 15.0
    ) -> list[dict[str, Any]]:
        """The call's web push rows (staff view), once none is queued or sending (``settled``)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            response = await self.world.http(
                "GET", f"/v1/calls/{call_id}/notifications", self.world.dispatcher
            )
            assert response.status_code == 200, response.text
            found = [r for r in response.json()["items"] if r["channel"] == "webpush"]
            if found and (not settled or all(r["status"] not in ("queued", "sending") for r in found)):
                return found
            assert asyncio.get_running_loop().time() < deadline, f"web push rows of {call_id}: {found}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def area(world: City, fake: tuple[FakePushService, str]) -> AsyncIterator[Area]:
    a = Area(world, *fake)
    yield a
    for doctor in a.doctors:
        await doctor.stop()


async def test_an_unacknowledged_offer_arrives_as_an_encrypted_push(area: Area) -> None:
    doctor = await area.doctor()
    sub = await area.subscribe(doctor.person)
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    [message] = await area.fake.wait_for(1, where=lambda m: m.ident == sub.ident)
    data = message.payload
    assert (data["type"], data["offer"], data["call"]) == ("offer", offer["offer"], call_id)
    assert data["deadline"] == offer["deadline"]
    assert data["url"] == f"/doctor?offer={offer['offer']}"
    assert [a["action"] for a in data["actions"]] == ["accept", "decline"]
    assert data["title"] in ("Новый вызов", "New call") and "Test street 1" in data["body"]
    assert message.headers["urgency"] == "high"
    created_ms = offer["deadline"] - OFFER_TIMEOUT_S * 1000
    assert message.at_ms >= created_ms + HOLD_MS - 50  # held for the socket's acknowledgement
    assert 0 < int(message.headers["ttl"]) <= OFFER_TIMEOUT_S - HOLD_MS // 1000
    [row] = await area.push_rows(call_id)
    assert (row["status"], row["person"], row["attempts"]) == ("sent", doctor.id, 1)


async def test_an_offer_acknowledged_on_the_socket_is_not_pushed(area: Area) -> None:
    doctor = await area.doctor()
    sub = await area.subscribe(doctor.person)
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    answer = await doctor.client.request("offer.seen", offer=offer["offer"])
    assert answer["seen"] is True
    [row] = await area.push_rows(call_id)
    assert (row["status"], row["last_error"], row["attempts"]) == ("suppressed", "acknowledged", 0)
    assert area.fake.to(sub) == []
    with pytest.raises(ClientError) as refused:  # another doctor's offer, or none
        await doctor.client.request("offer.seen", offer="00000000-0000-4000-8000-000000000000")
    assert refused.value.code == "not_found"


async def test_a_410_deletes_the_subscription(area: Area) -> None:
    doctor = await area.doctor()
    sub = await area.subscribe(doctor.person)
    area.fake.gone(sub)
    call_id = await area.call()
    [row] = await area.push_rows(call_id)
    assert (row["status"], row["last_error"]) == ("failed", "gone")
    listed = await area.world.http("GET", "/v1/push/subscriptions", doctor.person)
    assert listed.json()["items"] == []


async def test_a_429_retry_after_is_honoured(area: Area) -> None:
    doctor = await area.doctor()
    sub = await area.subscribe(doctor.person)
    area.fake.fail_next(429, retry_after="2")
    refused_before = area.fake.attempts
    call_id = await area.call()
    offer = await doctor.wait_for("offer.created", lambda d: d["call"]["id"] == call_id)
    [message] = await area.fake.wait_for(1, where=lambda m: m.ident == sub.ident)
    created_ms = offer["deadline"] - OFFER_TIMEOUT_S * 1000
    assert message.at_ms >= created_ms + HOLD_MS + 2000 - 50
    assert area.fake.attempts - refused_before == 2
    [row] = await area.push_rows(call_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)


async def test_subscriptions_are_checked_and_own(area: Area) -> None:
    doctor, patient = area.pool[0], area.patient
    sub = area.fake.mint(area.fake_url)
    elsewhere = {**sub.json(), "endpoint": "https://push.example.org/send/1"}
    refused = await area.world.http("POST", "/v1/push/subscriptions", doctor, json=elsewhere)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "endpoint"
    bad_keys = {**sub.json(), "keys": {"p256dh": sub.auth, "auth": sub.auth}}
    refused = await area.world.http("POST", "/v1/push/subscriptions", doctor, json=bad_keys)
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "keys.p256dh"
    stored = await area.world.http("POST", "/v1/push/subscriptions", patient, json=sub.json())
    assert stored.status_code == 201
    params = {"endpoint": sub.endpoint}
    other = await area.world.http("DELETE", "/v1/push/subscriptions", doctor, params=params)
    assert other.json() == {"deleted": False}  # not the doctor's
    own = await area.world.http("DELETE", "/v1/push/subscriptions", patient, params=params)
    assert own.json() == {"deleted": True}
    assert (await area.world.http("GET", "/v1/push/subscriptions", patient)).json()["items"] == []
