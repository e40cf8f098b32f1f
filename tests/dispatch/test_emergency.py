"""An emergency is a broadcast: offered to ``broadcast_k`` doctors at once, the first accept wins."""

from __future__ import annotations

import asyncio

import pytest

from dispatch.errors import DispatchError
from dispatch.settings import DispatchSettings
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Urgency
from tests.dispatch.world import World

S = CallStatus
K = DispatchSettings().broadcast_k


async def test_an_emergency_is_offered_to_the_k_nearest_at_once(world: World) -> None:
    """``broadcast_k`` doctors are reserved and offered in one ``searching -> offered`` change; the
    farthest of ``k + 1`` is not asked."""
    doctors = [await world.doctor(north_m=100 * (i + 1)) for i in range(K + 1)]
    call_id = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY)

    assert await world.call_status(call_id) is S.OFFERED
    for doctor in doctors[:K]:
        await world.pending_offer(call_id, doctor)
        assert await world.status(doctor) is DoctorStatus.OFFERED
    assert await world.status(doctors[K]) is DoctorStatus.AVAILABLE
    offered = [e for e in await world.history(call_id) if e.to_status == S.OFFERED]
    assert len(offered) == 1 and offered[0].data is not None and len(offered[0].data["offers"]) == K


async def test_the_first_accept_wins_and_the_others_are_withdrawn(world: World) -> None:
    """The first doctor to accept gets the call; the other offers are withdrawn (doctors freed and
    told); a later accept of a withdrawn offer is ``offer_withdrawn``."""
    doctors = [await world.doctor(north_m=100 * (i + 1)) for i in range(K)]
    call_id = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY)
    offers = [await world.pending_offer(call_id, d) for d in doctors]

    await world.loop.accept(doctors[1], offers[1].id)
    await world.settle()
    with pytest.raises(DispatchError) as late:
        await world.loop.accept(doctors[0], offers[0].id)

    assert late.value.code == "offer_withdrawn"
    assert (await world.call(call_id)).doctor_id == doctors[1].user_id
    assert await world.outcomes(call_id) == sorted(
        [OfferOutcome.ACCEPTED] + [OfferOutcome.WITHDRAWN] * (K - 1)
    )
    for loser in (doctors[0], doctors[2]):
        assert await world.status(loser) is DoctorStatus.AVAILABLE
        assert (
            world.events(f"doctor:{loser.user_id}", "offer.withdrawn")[0]["reason"]
            == "another doctor accepted"
        )


async def test_concurrent_accepts_have_exactly_one_winner(world: World) -> None:
    """All ``k`` doctors accept at the same moment: one is assigned and busy, every other accept is
    refused with ``offer_withdrawn`` and its doctor is available."""
    doctors = [await world.doctor(north_m=100 * (i + 1)) for i in range(K)]
    call_id = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY)
    offers = [await world.pending_offer(call_id, d) for d in doctors]

    results = await asyncio.gather(
        *(world.loop.accept(d, o.id) for d, o in zip(doctors, offers, strict=True)), return_exceptions=True
    )
    await world.settle()

    won = [d for d, r in zip(doctors, results, strict=True) if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and all(isinstance(r, DispatchError) and r.code == "offer_withdrawn" for r in lost)
    assert (await world.call(call_id)).doctor_id == won[0].user_id
    assert [await world.status(d) for d in doctors].count(DoctorStatus.BUSY) == 1


async def test_one_decline_keeps_the_broadcast_open_until_all_have_declined(world: World) -> None:
    """A decline while other offers of the broadcast are open changes nothing for the call; when the
    last one declines, the call is offered to the next doctors."""
    doctors = [await world.doctor(north_m=100 * (i + 1)) for i in range(K + 1)]
    call_id = await world.new_call(await world.patient(), urgency=Urgency.EMERGENCY)
    for doctor in doctors[:K]:
        assert await world.call_status(call_id) is S.OFFERED
        await world.loop.decline(doctor, (await world.pending_offer(call_id, doctor)).id)
        await world.settle()
    await world.pending_offer(call_id, doctors[K])
    assert sum(1 for t in await world.history(call_id) if t.to_status == S.SEARCHING) == 2
