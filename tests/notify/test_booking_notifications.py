"""A booked visit's patient is told when their booked doctor cannot come (issue 20): an emergency
displaces the booking, ``booking.released`` reaches the rules, and the patient gets one notification
(the inbox and their channel), in Russian by default; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from models.enums import DoctorStatus, Urgency
from server.notify.channels import INBOX
from tests.dispatch.booked import book
from tests.dispatch.world import World
from tests.notify.pipeline import RecordingChannel, enable_rules, pipeline, rows


async def test_a_displaced_booking_is_told_to_its_patient_once(pworld: World) -> None:
    world = pworld
    enable_rules(world)
    channel = RecordingChannel(world.clock)
    doctor = await world.doctor(north_m=0)
    at = dt.datetime(2027, 3, 1, 14, 0, tzinfo=dt.UTC)
    planned = await book(world, doctor, at, north_m=1000)
    planned_patient = (await world.call(planned)).patient_id
    channel.addresses_of = {planned_patient: "chat-planned"}

    world.clock.set(int(dt.datetime(2027, 3, 1, 12, 59, tzinfo=dt.UTC).timestamp() * 1000))
    await world.place(doctor, 0)
    emergency = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY, north_m=200)
    await world.loop.accept(doctor, (await world.pending_offer(emergency, doctor)).id)
    await world.settle()
    assert await world.status(doctor) is DoctorStatus.BUSY

    deriver, sender = pipeline(world, channel)
    await deriver.run_once()
    await deriver.run_once()
    mine = [r for r in await rows(world) if r.person_id == planned_patient]
    assert sorted((r.channel, r.kind) for r in mine) == [
        (INBOX, "booking_released"),
        ("rec", "booking_released"),
    ]
    assert all(r.call_id == planned for r in mine)
    await sender.run_once()
    [sent] = [s for s in channel.delivered if s.address == "chat-planned"]
    assert "не сможет приехать" in sent.message.text
    assert "01.03.2027 17:00" in sent.message.text  # 14:00 UTC in Moscow, the default zone
