"""The notification pipeline in-process (the embedded stack, one manual clock): the rules derive one
row per (event, person, channel) from the outbox, the sender delivers each once, with pace, backoff
and a provider's retry_after; quiet hours and preferences suppress news but never an offer, an SOS or
the doctor's arrival."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable

import orjson
import sqlalchemy as sa

from dispatch.sos import SosSettings
from models.enums import CallStatus, SosKind
from models.notifications import NotifyPreference
from models.users import User
from server.notify.channels import INBOX, PermanentError, RetryAfter, TransientError
from server.notify.deriver import Deriver, DeriverSettings
from server.notify.sender import SenderSettings
from tests.dispatch.conftest import WorldFactory
from tests.dispatch.world import World
from tests.notify.pipeline import RecordingChannel, enable_rules, pipeline, row, rows


async def _offer(world: World) -> tuple[RecordingChannel, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A doctor and a patient reachable on a recording channel, and the patient's call offered to the
    doctor. Returns (channel, doctor id, patient id, call id)."""
    channel = RecordingChannel(world.clock)
    enable_rules(world)
    doctor = await world.doctor(north_m=100)
    patient = await world.patient()
    channel.addresses_of = {doctor.user_id: "chat-doctor", patient.user_id: "chat-patient"}
    call_id = await world.new_call(patient)
    return channel, doctor.user_id, patient.user_id, call_id


async def test_an_offer_is_told_to_its_doctor_once_with_its_buttons(world: World) -> None:
    channel, doctor, _, call_id = await _offer(world)
    deriver, sender = pipeline(world, channel)
    assert await deriver.run_once() == 2  # inbox + the channel
    assert await deriver.run_once() == 0  # read already
    [inbox] = await rows(world, channel=INBOX)
    assert (inbox.person_id, inbox.kind, inbox.status, inbox.call_id) == (
        doctor,
        "offer",
        "sent",
        call_id,
    )

    assert await sender.run_once() == 1
    assert await sender.run_once() == 0
    [sent] = channel.delivered
    offer = await world.pending_offer(call_id, (await world.the_pending_offer(call_id))[0])
    assert sent.address == "chat-doctor"
    assert "1 Test Street" in sent.message.text  # Russian by default
    assert "Ответьте до" in sent.message.text
    assert [[b.data for b in line] for line in sent.message.buttons] == [[f"oa:{offer.id}", f"od:{offer.id}"]]
    [done] = await rows(world, channel="rec")
    assert (done.status, done.attempts, done.provider_ref, done.lease_owner) == ("sent", 1, "m1", None)


async def test_a_second_derivation_of_the_same_events_adds_nothing(make_world: WorldFactory) -> None:
    """Two derivers on one database (a lapsed lease): the UNIQUE (event, person, channel) keeps one
    row each."""
    async with make_world() as world:
        channel, *_ = await _offer(world)
        first, _ = pipeline(world, channel, owner="a")
        second, _ = pipeline(world, channel, owner="b")
        assert await first.run_once() == 2
        async with world.sessions.begin() as session:  # the rows read again, as after a crash
            await session.execute(sa.text("UPDATE outbox SET notified_ms = NULL"))
        world.clock.advance(10_000)  # a's lease has run out: b holds it
        assert await second.run_once() == 0
        assert len(await rows(world)) == 2


async def test_the_patient_hears_assigned_en_route_arrived(world: World) -> None:
    channel, _doctor_id, patient, call_id = await _offer(world)
    deriver, sender = pipeline(world, channel)
    doctor, offer = await world.the_pending_offer(call_id)
    await world.loop.accept(doctor, offer.id)
    await world.loop.visit(doctor, call_id, CallStatus.EN_ROUTE)
    await world.loop.visit(doctor, call_id, CallStatus.ARRIVED)
    await world.settle()
    await deriver.run_once()
    mine = [r for r in await rows(world, channel="rec") if r.person_id == patient]
    assert [r.kind for r in mine] == ["assigned", "en_route", "arrived"]
    assert all(r.call_id == call_id for r in mine)
    for _ in range(3):  # one a second to one chat
        await sender.run_once()
        world.clock.advance(1_000)
    texts = [s.message.text for s in channel.delivered if s.address == "chat-patient"]
    assert len(texts) == 3
    assert texts[2] == "Врач прибыл."


async def test_a_cancelled_call_is_told_in_the_patients_language(world: World) -> None:
    channel, _, patient, call_id = await _offer(world)
    async with world.sessions.begin() as session:
        await session.execute(sa.update(User).where(User.id == patient).values(language="en"))
    deriver, sender = pipeline(world, channel)
    await world.loop.cancel(world.dispatcher, call_id, "patient_request")
    await world.settle()
    await deriver.run_once()
    await sender.run_once()
    assert [s.message.text for s in channel.delivered if s.address == "chat-patient"] == [
        "Your call was cancelled."
    ]


async def test_escalations_and_unacknowledged_sos_reach_every_dispatcher(make_world: WorldFactory) -> None:
    async with make_world(sos_settings=SosSettings(repeat_s=15.0)) as world:
        channel = RecordingChannel(world.clock)
        enable_rules(world)
        channel.addresses_of = {world.dispatcher.user_id: "chat-dispatch"}
        patient = await world.patient()
        call_id = await world.new_call(patient)  # nobody in range: escalated
        assert await world.call_status(call_id) is CallStatus.ESCALATED
        raiser = await world.doctor(north_m=0)
        await world.sos.raise_alert(raiser, SosKind.DANGER, message="help")
        deriver, _ = pipeline(world, channel)
        await world.advance_s(15)
        await deriver.run_once()
        assert [r.kind for r in await rows(world, channel="rec")] == ["escalated"]  # repeat 1: not yet
        await world.advance_s(15)
        await world.advance_s(15)  # repeat 3: no second notification
        await deriver.run_once()
        got = await rows(world, channel="rec")
        assert [r.kind for r in got] == ["escalated", "sos_unanswered"]
        assert {r.person_id for r in got} == {world.dispatcher.user_id}
        assert orjson.loads(got[1].params)["message"] == "help"


async def test_quiet_hours_hold_back_news_but_not_offers_sos_or_arrival(world: World) -> None:
    channel, doctor_id, patient, call_id = await _offer(world)
    async with world.sessions.begin() as session:  # quiet all day long, both of them
        await session.execute(
            sa.update(User)
            .where(User.id.in_([doctor_id, patient]))
            .values(quiet_start_min=0, quiet_end_min=24 * 60 - 1, time_zone="UTC")
        )
    world.clock.set(world.clock() - world.clock() % 86_400_000 + 3_600_000)  # 01:00 UTC
    deriver, _ = pipeline(world, channel)
    doctor, offer = await world.the_pending_offer(call_id)
    await world.loop.accept(doctor, offer.id)
    await world.loop.visit(doctor, call_id, CallStatus.EN_ROUTE)
    await world.loop.visit(doctor, call_id, CallStatus.ARRIVED)
    await world.settle()
    await deriver.run_once()
    got = {(r.kind, r.status, r.last_error) for r in await rows(world, channel="rec")}
    assert got == {
        ("offer", "queued", None),
        ("assigned", "suppressed", "quiet_hours"),
        ("en_route", "suppressed", "quiet_hours"),
        ("arrived", "queued", None),
    }
    assert len(await rows(world, channel=INBOX)) == 4  # the inbox keeps everything


async def test_a_channel_turned_off_for_a_kind_is_suppressed(world: World) -> None:
    channel, doctor_id, _, _ = await _offer(world)
    async with world.sessions.begin() as session:  # the offer already made is derived now
        session.add(NotifyPreference(person_id=doctor_id, kind="*", channel="rec", enabled=False))
    deriver, _ = pipeline(world, channel)
    await deriver.run_once()
    [only] = await rows(world, channel="rec")
    assert (only.status, only.last_error) == ("suppressed", "preference")


async def test_ten_messages_to_one_chat_leave_at_least_a_second_apart(world: World) -> None:
    """Ten events for one person at once (ten of their calls cancelled): the shared per-chat pace lets
    one a second through, and the rows put back meanwhile count no attempt."""
    channel = RecordingChannel(world.clock)
    enable_rules(world)
    patient = await world.patient()
    channel.addresses_of = {patient.user_id: "chat-patient"}
    for _ in range(10):
        call_id = await world.new_call(patient, start=False)
        await world.loop.cancel(world.dispatcher, call_id, "patient_request")
    await world.settle()
    deriver, sender = pipeline(world, channel)
    await deriver.run_once()
    assert len(await rows(world, channel="rec")) == 10
    for _ in range(400):  # 20 s of 50 ms steps
        await sender.run_once()
        world.clock.advance(50)
    times = [s.at_ms for s in channel.delivered]
    assert len(times) == 10
    assert all(b - a >= 1_000 for a, b in itertools.pairwise(times))
    assert {(r.status, r.attempts) for r in await rows(world, channel="rec")} == {("sent", 1)}


async def test_a_429_is_honoured_exactly_then_sent_once(world: World) -> None:
    channel, *_ = await _offer(world)
    channel.failures = [RetryAfter(3)]
    deriver, sender = pipeline(world, channel)
    await deriver.run_once()
    start = world.clock()
    assert await sender.run_once() == 0
    [waiting] = await rows(world, channel="rec")
    assert (waiting.status, waiting.next_attempt_ms, waiting.last_error) == (
        "queued",
        start + 3_000,
        "retry_after=3",
    )
    world.clock.advance(2_999)
    assert await sender.run_once() == 0
    world.clock.advance(1)
    assert await sender.run_once() == 1
    assert [(c.at_ms - start, c.ok) for c in channel.calls] == [(0, False), (3_000, True)]
    assert await sender.run_once() == 0
    assert (await row(world, waiting.id)).attempts == 2


async def test_transient_failures_back_off_then_fail(world: World) -> None:
    channel, *_ = await _offer(world)
    channel.failures = [TransientError("503"), TransientError("503"), TransientError("503")]
    settings = SenderSettings(max_attempts=3, backoff_ms=1_000)
    deriver, sender = pipeline(world, channel, settings)
    await deriver.run_once()
    start = world.clock()
    await sender.run_once()
    world.clock.advance(999)
    await sender.run_once()
    world.clock.advance(1)
    await sender.run_once()  # second try at +1 s
    world.clock.advance(2_000)
    await sender.run_once()  # third at +3 s: the last
    assert [c.at_ms - start for c in channel.calls] == [0, 1_000, 3_000]
    [failed] = await rows(world, channel="rec")
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 3, "503")


async def test_a_permanent_error_is_not_retried(world: World) -> None:
    channel, *_ = await _offer(world)
    channel.failures = [PermanentError("blocked")]
    deriver, sender = pipeline(world, channel)
    await deriver.run_once()
    await sender.run_once()
    world.clock.advance(3_600_000)
    await sender.run_once()
    assert len(channel.calls) == 1
    assert (await rows(world, channel="rec"))[0].status == "failed"


async def test_a_row_left_sending_by_a_dead_sender_is_never_sent_again(world: World) -> None:
    """The sender died between marking the row ``sending`` and recording the provider's answer: the
    message may have left, so it is failed as ``outcome_unknown`` once the lease passes (at most
    once), and an unreachable person's row fails as ``not_reachable``."""
    channel, _doctor_id, *_ = await _offer(world)
    deriver, _sender = pipeline(world, channel, owner="dead")
    await deriver.run_once()
    async with world.sessions.begin() as session:
        await session.execute(
            sa.text(
                "UPDATE notifications SET status = 'sending', lease_owner = 'dead', lease_until_ms = :t"
                " WHERE channel = 'rec'"
            ),
            {"t": world.clock() + 30_000},
        )
    _, survivor = pipeline(world, channel, owner="alive")
    assert await survivor.run_once() == 0
    world.clock.advance(30_000)
    assert await survivor.run_once() == 0
    [row_] = await rows(world, channel="rec")
    assert (row_.status, row_.last_error) == ("failed", "outcome_unknown")
    assert channel.calls == []


async def test_an_unlinked_person_fails_as_not_reachable(world: World) -> None:
    channel, doctor_id, *_ = await _offer(world)
    deriver, sender = pipeline(world, channel)
    await deriver.run_once()
    channel.addresses_of.pop(doctor_id)
    await sender.run_once()
    [row_] = await rows(world, channel="rec")
    assert (row_.status, row_.last_error) == ("failed", "not_reachable")


async def _until(done: Callable[[], bool]) -> None:
    """Let the loop run until ``done`` (SQLite runs on the loop's thread here: turns, not time)."""
    for _ in range(10_000):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("never happened")


async def test_a_woken_deriver_waits_for_more_commits_then_makes_one_pass(world: World) -> None:
    """Commits in quick succession cost one pass, not one each: the woken deriver pauses
    ``coalesce_ms`` first (held here until released), and commits meanwhile join that pass."""
    channel = RecordingChannel(world.clock)
    enable_rules(world)
    near, far = await world.doctor(north_m=100), await world.doctor(north_m=5_000)
    first, second = await world.patient(), await world.patient()
    channel.addresses_of = {near.user_id: "chat-near", far.user_id: "chat-far"}
    released = asyncio.Event()
    naps: list[float] = []

    async def nap(seconds: float) -> None:
        naps.append(seconds)
        await released.wait()

    deriver = Deriver(
        world.sessions,
        {channel.name: channel},
        settings=DeriverSettings(interval_ms=3_600_000, coalesce_ms=100),
        clock=world.clock,
        sleep=nap,
    )
    running = asyncio.create_task(deriver.run())
    try:
        await _until(lambda: deriver.passes == 1)  # the first pass found nothing
        await world.new_call(first)
        deriver.wake()
        await _until(lambda: naps == [0.1])
        await world.new_call(second)
        deriver.wake()
        assert (deriver.passes, deriver.derived) == (1, 0)  # still pausing
        released.set()
        await _until(lambda: deriver.passes == 2)
        await _until(lambda: deriver.derived == 4)  # both offers: inbox + the channel each
        assert deriver.passes == 2
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
