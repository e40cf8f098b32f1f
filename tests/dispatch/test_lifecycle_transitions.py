"""Every transition of ``dispatch/lifecycle.py`` made in-process by the code path that makes it in the
product, one recipe per transition; a transition added to the table without a recipe fails
:func:`test_every_transition_has_a_recipe`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from dispatch.calls import Who
from dispatch.lifecycle import TRANSITIONS, Actor
from models.enums import CallStatus, Urgency
from tests.dispatch.world import World, lose_spawned_steps

S = CallStatus
ROLE_OF = {Actor.SYSTEM: None, Actor.DOCTOR: "doctor", Actor.PATIENT: "patient", Actor.STAFF: "dispatcher"}
"""The ``actor_role`` an event row records for each actor (the system records none)."""


@dataclass(frozen=True)
class Party:
    """A call brought to some status, with its patient and its doctor (offered or assigned)."""

    call_id: uuid.UUID
    patient: Who
    doctor: Who


# --- getting a call to a status -------------------------------------------------------------------


async def offered(w: World) -> Party:
    patient = await w.patient()
    doctor = await w.doctor(north_m=100)
    return Party(await w.new_call(patient), patient, doctor)


async def assigned(w: World) -> Party:
    p = await offered(w)
    await w.loop.accept(p.doctor, (await w.pending_offer(p.call_id, p.doctor)).id)
    return p


async def visiting(w: World, *steps: CallStatus) -> Party:
    p = await assigned(w)
    for step in steps:
        await w.loop.visit(p.doctor, p.call_id, step)
    return p


async def searching(w: World) -> Party:
    """Searching, and staying so: the step after the decline is lost (its safety net is ahead)."""
    p = await offered(w)
    with lose_spawned_steps(w.loop):
        await w.loop.decline(p.doctor, (await w.pending_offer(p.call_id, p.doctor)).id)
    return p


async def escalated(w: World) -> Party:
    patient = await w.patient()
    call_id = await w.new_call(patient)  # nobody on duty
    return Party(call_id, patient, await w.doctor(north_m=100))


async def created(w: World) -> Party:
    """A planned call, ``created`` until its dispatch begins."""
    patient = await w.patient()
    at = w.clock.utcnow() + dt.timedelta(days=1)
    return Party(await w.new_call(patient, urgency=Urgency.PLANNED, scheduled_at=at), patient, patient)


async def another_doctor(w: World) -> Who:
    return await w.doctor(north_m=5_000, available=False)


# --- the recipes ----------------------------------------------------------------------------------


Recipe = Callable[[World], Awaitable[uuid.UUID]]


@dataclass(frozen=True)
class Step:
    actor: Actor
    recipe: Recipe


async def _created_searching(w: World) -> uuid.UUID:
    return (await escalated(w)).call_id  # with nobody to offer it to, the search is started first


async def _searching_offered(w: World) -> uuid.UUID:
    return (await offered(w)).call_id


async def _searching_escalated(w: World) -> uuid.UUID:
    return (await escalated(w)).call_id


async def _offered_searching(w: World) -> uuid.UUID:
    return (await searching(w)).call_id


async def _offered_assigned(w: World) -> uuid.UUID:
    return (await assigned(w)).call_id


async def _searching_assigned(w: World) -> uuid.UUID:
    p = await searching(w)
    await w.loop.assign(w.dispatcher, p.call_id, (await another_doctor(w)).user_id)
    return p.call_id


async def _escalated_assigned(w: World) -> uuid.UUID:
    p = await escalated(w)
    await w.loop.assign(w.dispatcher, p.call_id, p.doctor.user_id)
    return p.call_id


async def _escalated_searching(w: World) -> uuid.UUID:
    p = await escalated(w)
    await w.loop.relaunch(w.dispatcher, p.call_id)
    await w.settle()
    return p.call_id


async def _reassigned_from(w: World, *steps: CallStatus) -> uuid.UUID:
    p = await visiting(w, *steps)
    await w.loop.assign(w.dispatcher, p.call_id, (await another_doctor(w)).user_id)
    return p.call_id


async def _assigned_assigned(w: World) -> uuid.UUID:
    return await _reassigned_from(w)


async def _en_route_assigned(w: World) -> uuid.UUID:
    return await _reassigned_from(w, S.EN_ROUTE)


async def _assigned_searching(w: World) -> uuid.UUID:
    p = await assigned(w)
    await w.loop.drop(p.doctor, p.call_id, reason="cannot make it")
    await w.settle()
    return p.call_id


async def _en_route_searching(w: World) -> uuid.UUID:
    p = await visiting(w, S.EN_ROUTE)
    await w.loop.drop(p.doctor, p.call_id)
    await w.settle()
    return p.call_id


def _visit_to(*steps: CallStatus) -> Recipe:
    async def recipe(w: World) -> uuid.UUID:
        return (await visiting(w, *steps)).call_id

    return recipe


def _cancel(start: Callable[[World], Awaitable[Party]], by: Actor) -> Recipe:
    async def recipe(w: World) -> uuid.UUID:
        p = await start(w)
        await w.loop.cancel(p.patient if by is Actor.PATIENT else w.dispatcher, p.call_id, "not needed")
        await w.settle()
        return p.call_id

    return recipe


def _at(*steps: CallStatus) -> Callable[[World], Awaitable[Party]]:
    async def start(w: World) -> Party:
        return await visiting(w, *steps)

    return start


RECIPES: dict[tuple[CallStatus, CallStatus], Step] = {
    (S.CREATED, S.SEARCHING): Step(Actor.SYSTEM, _created_searching),
    (S.SEARCHING, S.OFFERED): Step(Actor.SYSTEM, _searching_offered),
    (S.SEARCHING, S.ESCALATED): Step(Actor.SYSTEM, _searching_escalated),
    (S.OFFERED, S.SEARCHING): Step(Actor.SYSTEM, _offered_searching),
    (S.OFFERED, S.ASSIGNED): Step(Actor.DOCTOR, _offered_assigned),
    (S.SEARCHING, S.ASSIGNED): Step(Actor.STAFF, _searching_assigned),
    (S.ESCALATED, S.ASSIGNED): Step(Actor.STAFF, _escalated_assigned),
    (S.ESCALATED, S.SEARCHING): Step(Actor.STAFF, _escalated_searching),
    (S.ASSIGNED, S.ASSIGNED): Step(Actor.STAFF, _assigned_assigned),
    (S.EN_ROUTE, S.ASSIGNED): Step(Actor.STAFF, _en_route_assigned),
    (S.ASSIGNED, S.SEARCHING): Step(Actor.DOCTOR, _assigned_searching),
    (S.EN_ROUTE, S.SEARCHING): Step(Actor.DOCTOR, _en_route_searching),
    (S.ASSIGNED, S.EN_ROUTE): Step(Actor.DOCTOR, _visit_to(S.EN_ROUTE)),
    (S.EN_ROUTE, S.ARRIVED): Step(Actor.DOCTOR, _visit_to(S.EN_ROUTE, S.ARRIVED)),
    (S.ARRIVED, S.IN_PROGRESS): Step(Actor.DOCTOR, _visit_to(S.EN_ROUTE, S.ARRIVED, S.IN_PROGRESS)),
    (S.IN_PROGRESS, S.COMPLETED): Step(
        Actor.DOCTOR, _visit_to(S.EN_ROUTE, S.ARRIVED, S.IN_PROGRESS, S.COMPLETED)
    ),
    (S.CREATED, S.CANCELLED): Step(Actor.PATIENT, _cancel(created, Actor.PATIENT)),
    (S.SEARCHING, S.CANCELLED): Step(Actor.PATIENT, _cancel(searching, Actor.PATIENT)),
    (S.OFFERED, S.CANCELLED): Step(Actor.PATIENT, _cancel(offered, Actor.PATIENT)),
    (S.ASSIGNED, S.CANCELLED): Step(Actor.PATIENT, _cancel(assigned, Actor.PATIENT)),
    (S.EN_ROUTE, S.CANCELLED): Step(Actor.STAFF, _cancel(_at(S.EN_ROUTE), Actor.STAFF)),
    (S.ESCALATED, S.CANCELLED): Step(Actor.STAFF, _cancel(escalated, Actor.STAFF)),
    (S.ARRIVED, S.CANCELLED): Step(Actor.STAFF, _cancel(_at(S.EN_ROUTE, S.ARRIVED), Actor.STAFF)),
    (S.IN_PROGRESS, S.CANCELLED): Step(
        Actor.STAFF, _cancel(_at(S.EN_ROUTE, S.ARRIVED, S.IN_PROGRESS), Actor.STAFF)
    ),
}


def test_every_transition_has_a_recipe() -> None:
    """The recipes are exactly the life cycle's transitions, each made by an actor the table allows:
    a new transition needs a recipe here, a removed one takes its recipe with it."""
    assert set(TRANSITIONS) - set(RECIPES) == set(), "transitions without a recipe"
    assert set(RECIPES) - set(TRANSITIONS) == set(), "recipes of transitions that no longer exist"
    wrong = {move: step.actor for move, step in RECIPES.items() if step.actor not in TRANSITIONS[move]}
    assert wrong == {}, "recipes made by an actor the table does not allow"


@pytest.mark.parametrize(("move"), list(RECIPES), ids=[f"{a.value}->{b.value}" for a, b in RECIPES])
async def test_transition(world: World, move: tuple[CallStatus, CallStatus]) -> None:
    """The recipe makes the transition: an event row ``from -> to`` by the recipe's actor, and a
    ``call.status`` event with that ``from`` and ``status`` on the call's channel."""
    step = RECIPES[move]
    call_id = await step.recipe(world)
    frm, to = move
    rows = [e for e in await world.history(call_id) if (e.from_status, e.to_status) == (frm.value, to.value)]
    assert rows, f"no {frm} -> {to} among {await world.transitions(call_id)}"
    assert {e.actor_role for e in rows} == {ROLE_OF[step.actor]}
    published = [(e["from"], e["status"]) for e in world.events(f"call:{call_id}", "call.status")]
    assert (frm.value, to.value) in published
