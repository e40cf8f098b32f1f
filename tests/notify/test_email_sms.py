"""E-mail (aiosmtplib to an aiosmtpd fake) and SMS (the httpx gateway adapter to its fake) through the
pipeline, driven by the manual clock: who gets which kinds, the message as sent, temporary and
permanent refusals, a gateway's 429 Retry-After, phone numbers normalised to E.164."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa

from models.enums import CallStatus
from models.users import User
from server.notify.channels import Channel
from server.notify.deriver import Deriver
from server.notify.email import EmailChannel, SmtpSettings
from server.notify.fake_sms import FakeSmsGateway
from server.notify.fake_telegram import serving
from server.notify.sender import Sender, SenderSettings
from server.notify.sms import SmsGateway, normalise_phone
from tests.dispatch.world import World
from tests.notify.fake_smtp import FakeSmtp, smtp_serving
from tests.notify.pipeline import enable_rules, rows


@pytest.fixture
def smtp() -> Iterator[tuple[FakeSmtp, int]]:
    fake = FakeSmtp()
    with smtp_serving(fake) as port:
        yield fake, port


@pytest.fixture
async def sms() -> AsyncIterator[tuple[FakeSmsGateway, SmsGateway]]:
    fake = FakeSmsGateway(api_key="sms-key")
    async with serving(fake) as url:
        gateway = SmsGateway(url, "sms-key")
        yield fake, gateway
        await gateway.close()


def _pipeline(
    world: World, channel: Channel, settings: SenderSettings | None = None
) -> tuple[Deriver, Sender]:
    enable_rules(world)
    channels = {channel.name: channel}
    return (
        Deriver(world.sessions, channels, clock=world.clock),
        Sender(world.sessions, channels, settings=settings, clock=world.clock),
    )


async def _visit(world: World) -> tuple[str, str]:
    """A patient's call offered, accepted, en route, arrived; returns (patient email, call id)."""
    enable_rules(world)
    await world.doctor(north_m=100)
    patient = await world.patient()
    call_id = await world.new_call(patient)
    doctor, offer = await world.the_pending_offer(call_id)
    await world.loop.accept(doctor, offer.id)
    await world.loop.visit(doctor, call_id, CallStatus.EN_ROUTE)
    await world.loop.visit(doctor, call_id, CallStatus.ARRIVED)
    await world.settle()
    async with world.sessions() as session:
        address = await session.scalar(sa.select(User.email).where(User.id == patient.user_id))
    assert address is not None
    return address, str(call_id)


async def test_the_patient_gets_status_news_by_email_and_no_offer_is_mailed(
    world: World, smtp: tuple[FakeSmtp, int]
) -> None:
    fake, port = smtp
    channel = EmailChannel(SmtpSettings(host="127.0.0.1", port=port, sender="tot@clinic.test"))
    address, _ = await _visit(world)
    deriver, sender = _pipeline(world, channel)
    await deriver.run_once()
    assert {r.kind for r in await rows(world, channel="email")} == {"assigned", "en_route", "arrived"}
    assert await sender.run_once() == 3  # no pace per address
    assert [m["To"] for m in fake.messages] == [address] * 3
    arrived = fake.messages[2]
    assert arrived["Subject"] == "Врач прибыл."
    assert arrived.get_content().strip() == "Врач прибыл."
    [row] = [r for r in await rows(world, channel="email") if r.kind == "arrived"]
    assert arrived["Message-ID"] == f"<notification-{row.id}@clinic.test>" == row.provider_ref


async def test_smtp_refusals_temporary_then_permanent(world: World, smtp: tuple[FakeSmtp, int]) -> None:
    fake, port = smtp
    fake.refusals = ["451 4.3.0 try again later", "550 5.1.1 no such user"]
    channel = EmailChannel(SmtpSettings(host="127.0.0.1", port=port))
    enable_rules(world)
    patient = await world.patient()
    call_id = await world.new_call(patient, start=False)
    await world.loop.cancel(world.dispatcher, call_id, "patient_request")
    await world.settle()
    deriver, sender = _pipeline(world, channel, SenderSettings(backoff_ms=1_000))
    await deriver.run_once()
    await sender.run_once()
    [row] = await rows(world, channel="email")
    assert (row.status, row.last_error) == ("queued", "SMTP 451: 4.3.0 try again later")
    world.clock.advance(1_000)
    await sender.run_once()
    [row] = await rows(world, channel="email")
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "SMTP 550: 5.1.1 no such user")
    assert fake.messages == []


async def test_arrival_goes_by_sms_to_the_normalised_number_and_a_429_is_waited_out(
    world: World, sms: tuple[FakeSmsGateway, SmsGateway]
) -> None:
    fake, gateway = sms
    fake.fail_next(429, retry_after=2)
    await _visit(world)
    async with world.sessions.begin() as session:
        await session.execute(sa.update(User).where(User.role == "patient").values(phone="8 (912) 345-67-89"))
    deriver, sender = _pipeline(world, gateway)
    await deriver.run_once()
    [row] = await rows(world, channel="sms")
    assert row.kind == "arrived"  # SMS carries only the doctor's arrival and unanswered SOS
    start = world.clock()
    assert await sender.run_once() == 0
    world.clock.advance(1_999)
    assert await sender.run_once() == 0
    world.clock.advance(1)
    assert await sender.run_once() == 1
    assert fake.requests == 2
    [message] = fake.messages
    assert message == {
        "to": "+79123456789",
        "text": "Врач прибыл.",
        "idempotency_key": f"notification:{row.id}",
    }
    [row] = await rows(world, channel="sms")
    assert (row.status, row.provider_ref, row.sent_ms) == ("sent", "sms1", start + 2_000)


async def test_people_without_a_valid_number_get_no_sms(
    world: World, sms: tuple[FakeSmsGateway, SmsGateway]
) -> None:
    _, gateway = sms
    await _visit(world)
    async with world.sessions.begin() as session:
        await session.execute(sa.update(User).where(User.role == "patient").values(phone="+70000000000"))
    deriver, _ = _pipeline(world, gateway)
    await deriver.run_once()
    assert await rows(world, channel="sms") == []


def test_phone_numbers_are_normalised_to_e164() -> None:
    assert normalise_phone("+7 912 345-67-89") == "+79123456789"
    assert normalise_phone("8 (912) 345-67-89") == "+79123456789"
    assert normalise_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalise_phone("+70000000000") is None
    assert normalise_phone("not a number") is None
    assert normalise_phone(None) is None
