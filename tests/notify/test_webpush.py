"""Web push through the pipeline, in process on the manual clock, against the loopback fake push
service over HTTP (server/notify/fake_push.py), which checks VAPID and decrypts: the payload round
trip, an offer held for the socket's acknowledgement, 410 deleting a subscription, 429 Retry-After."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pywebpush import WebPusher

from dispatch.calls import Who
from models.repositories import push as push_repo
from server.notify.channels import Message
from server.notify.deriver import Deriver
from server.notify.fake_push import FakePushService, FakeSubscription, decrypt, verify_vapid
from server.notify.fake_telegram import serving
from server.notify.push_acks import suppressions
from server.notify.push_payload import payload, ttl_s, urgency
from server.notify.sender import Sender
from server.notify.vapid import Vapid, generate_private_key
from server.notify.webpush import NAME, WebPushChannel, check_endpoint, retry_after_s
from tests.dispatch.world import World
from tests.notify.pipeline import enable_rules, rows

HOLD_MS = 1_500


@pytest.fixture
async def push() -> AsyncIterator[tuple[FakePushService, str]]:
    fake = FakePushService()
    async with serving(fake) as url:
        yield fake, url


def _channel(world: World, vapid: Vapid) -> WebPushChannel:
    return WebPushChannel(world.sessions, vapid, hosts=(), allow_loopback=True, clock=world.clock)


async def _subscribe(world: World, who: Who, sub: FakeSubscription) -> None:
    async with world.sessions.begin() as session:
        await push_repo.subscribe(
            session, who.user_id, sub.endpoint, sub.p256dh, sub.auth, "test", world.clock()
        )


def _pipeline(world: World, channel: WebPushChannel) -> tuple[Deriver, Sender]:
    enable_rules(world)
    channels = {NAME: channel}
    deriver = Deriver(world.sessions, channels, clock=world.clock, holds={(NAME, "offer"): HOLD_MS})
    sender = Sender(world.sessions, channels, clock=world.clock, suppress=suppressions)
    return deriver, sender


async def test_encryption_and_vapid_round_trip(push: tuple[FakePushService, str]) -> None:
    fake, url = push
    vapid = Vapid(generate_private_key(), "mailto:ops@example.org")
    sub = fake.mint(url, vapid.public_key)
    body = "Привет, push".encode()
    info = {"endpoint": sub.endpoint, "keys": {"p256dh": sub.p256dh, "auth": sub.auth}}
    encrypted = WebPusher(info).encode(body, "aes128gcm")["body"]
    assert encrypted != body and decrypt(encrypted, sub) == body
    key, claims = verify_vapid(vapid.authorization(sub.endpoint), sub.endpoint, vapid.clock() // 1000)
    assert key == vapid.public_key and claims["aud"] == url and claims["sub"] == "mailto:ops@example.org"
    other = Vapid(generate_private_key(), "mailto:ops@example.org")
    forged = vapid.authorization(sub.endpoint).replace(vapid.public_key, other.public_key)
    with pytest.raises(ValueError, match="VAPID token"):
        verify_vapid(forged, sub.endpoint, vapid.clock() // 1000)
    with pytest.raises(ValueError, match="VAPID token"):  # a token for another push service
        verify_vapid(vapid.authorization("https://push.example.org/x"), sub.endpoint, vapid.clock() // 1000)


def test_endpoints_and_retry_after() -> None:
    hosts = ("fcm.googleapis.com",)
    assert check_endpoint("https://fcm.googleapis.com/fcm/send/abc", hosts, False) is None
    assert check_endpoint("https://evil.example/fcm.googleapis.com", hosts, False) is not None
    assert check_endpoint("https://fcm.googleapis.com.evil.example/x", hosts, False) is not None
    assert check_endpoint("http://fcm.googleapis.com/x", hosts, False) is not None
    assert check_endpoint("http://127.0.0.1:9/push/x", hosts, False) is not None
    assert check_endpoint("http://127.0.0.1:9/push/x", hosts, True) is None
    assert check_endpoint("http://10.0.0.1/push/x", hosts, True) is not None
    assert check_endpoint("https://user:pw@fcm.googleapis.com/x", hosts, False) is not None
    assert retry_after_s("7", 0) == 7.0
    assert retry_after_s(None, 0) == 1.0
    assert retry_after_s("Thu, 01 Jan 1970 00:00:30 GMT", 10_000) == 20.0


async def test_an_offer_is_pushed_encrypted_after_the_hold(
    world: World, push: tuple[FakePushService, str]
) -> None:
    fake, url = push
    vapid = Vapid(generate_private_key(), "mailto:ops@example.org")
    channel = _channel(world, vapid)
    doctor = await world.doctor(north_m=100)
    sub = fake.mint(url, vapid.public_key)
    await _subscribe(world, doctor, sub)
    deriver, sender = _pipeline(world, channel)
    call_id = await world.new_call(await world.patient())
    _, offer = await world.the_pending_offer(call_id)
    created = world.clock()
    assert await deriver.run_once() == 2  # the inbox and web push
    world.clock.advance(HOLD_MS - 1)
    assert await sender.run_once() == 0 and fake.messages == []
    world.clock.advance(1)
    assert await sender.run_once() == 1
    [message] = fake.messages
    deadline = int(offer.deadline_at.timestamp() * 1000)
    assert message.payload["type"] == "offer"
    assert message.payload["offer"] == str(offer.id) and message.payload["call"] == str(call_id)
    assert message.payload["deadline"] == deadline
    assert message.payload["url"] == f"/doctor?offer={offer.id}"
    assert [a["action"] for a in message.payload["actions"]] == ["accept", "decline"]
    assert message.payload["lang"] == "ru" and message.payload["title"] == "Новый вызов"
    assert "1 Test Street" in message.payload["body"]
    assert message.headers["urgency"] == "high"
    assert int(message.headers["ttl"]) == (deadline - created - HOLD_MS) // 1000
    [pushed] = await rows(world, channel=NAME)
    assert (pushed.status, pushed.provider_ref) == ("sent", "1/1")
    async with world.sessions() as session:
        [stored] = await push_repo.of_person(session, doctor.user_id)
    assert stored.last_success_ms == world.clock()
    await channel.close()


async def test_an_acknowledged_offer_is_not_pushed(world: World, push: tuple[FakePushService, str]) -> None:
    fake, url = push
    channel = _channel(world, Vapid(generate_private_key(), "mailto:ops@example.org"))
    doctor = await world.doctor(north_m=100)
    await _subscribe(world, doctor, fake.mint(url))
    deriver, sender = _pipeline(world, channel)
    call_id = await world.new_call(await world.patient())
    _, offer = await world.the_pending_offer(call_id)
    await deriver.run_once()
    world.clock.advance(HOLD_MS - 100)
    async with world.sessions.begin() as session:
        assert not await push_repo.mark_seen(session, offer.id, uuid.uuid4(), world.clock())  # not theirs
        assert await push_repo.mark_seen(session, offer.id, doctor.user_id, world.clock())
    world.clock.advance(100)
    assert await sender.run_once() == 0
    [row] = await rows(world, channel=NAME)
    assert (row.status, row.last_error, row.attempts) == ("suppressed", "acknowledged", 0)
    assert fake.attempts == 0 and sender.stats.suppressed == 1
    await channel.close()


async def test_410_deletes_the_subscription_and_429_is_waited_out(
    world: World, push: tuple[FakePushService, str]
) -> None:
    fake, url = push
    channel = _channel(world, Vapid(generate_private_key(), "mailto:ops@example.org"))
    doctor = await world.doctor(north_m=100)
    gone, kept = fake.mint(url), fake.mint(url)
    await _subscribe(world, doctor, gone)
    await _subscribe(world, doctor, kept)
    fake.gone(gone)
    fake.fail_next(429, retry_after="3")
    deriver, sender = _pipeline(world, channel)
    await world.new_call(await world.patient())
    await deriver.run_once()
    world.clock.advance(HOLD_MS)
    start = world.clock()
    assert await sender.run_once() == 0
    [row] = await rows(world, channel=NAME)
    assert (row.status, row.next_attempt_ms, row.last_error) == ("queued", start + 3_000, "retry_after=3")
    async with world.sessions() as session:
        assert [s.endpoint for s in await push_repo.of_person(session, doctor.user_id)] == [kept.endpoint]
    world.clock.advance(2_999)
    assert await sender.run_once() == 0
    world.clock.advance(1)
    assert await sender.run_once() == 1
    assert [m.ident for m in fake.messages] == [kept.ident]
    fake.gone(kept)
    message = Message(text="x", kind="arrived", key="notification:1", language="en")
    with pytest.raises(Exception, match="gone"):
        await channel.send(str(doctor.user_id), message)
    async with world.sessions() as session:
        assert await push_repo.of_person(session, doctor.user_id) == []
    await channel.close()


def test_payload_of_patient_news_in_english() -> None:
    message = Message(
        text="Your doctor has arrived.", kind="arrived", key="notification:9", call_id="c1", language="en"
    )
    data = payload(message)
    assert data["title"] == "Doctor has arrived" and data["url"] == "/app?call=c1" and "actions" not in data
    assert (urgency("arrived"), ttl_s("arrived", {}, 0)) == ("high", 900)
    assert (urgency("en_route"), urgency("sos_unanswered"), ttl_s("sos_unanswered", {}, 0)) == (
        "normal",
        "high",
        300,
    )
    assert (
        ttl_s("offer", {"deadline_ms": 10_500}, 1_000) == 9 and ttl_s("offer", {"deadline_ms": 0}, 1_000) == 0
    )
    sos = payload(
        Message(text="SOS", kind="sos_unanswered", key="notification:3", call_id=None, language="ru")
    )
    assert sos["url"] == "/console" and sos["title"] == "SOS без ответа"
