"""The call life cycle, checked against every (from, to, actor) combination.

The expectation below is written out by hand from the product rules (docs/architecture.md), not
derived from ``dispatch.lifecycle.TRANSITIONS``, so a change to either side shows up here.
"""

from __future__ import annotations

import itertools

import pytest

from dispatch.lifecycle import Actor, TransitionError, check_transition, next_statuses
from models.enums import CallStatus as S

P, D, ST, SY = Actor.PATIENT, Actor.DOCTOR, Actor.STAFF, Actor.SYSTEM

# from status -> actor -> the statuses that actor may move the call to
EXPECTED: dict[S, dict[Actor, set[S]]] = {
    S.CREATED: {SY: {S.SEARCHING}, P: {S.CANCELLED}, ST: {S.CANCELLED}, D: set()},
    S.SEARCHING: {SY: {S.OFFERED, S.ESCALATED}, P: {S.CANCELLED}, ST: {S.ASSIGNED, S.CANCELLED}, D: set()},
    S.OFFERED: {SY: {S.SEARCHING}, P: {S.CANCELLED}, ST: {S.ASSIGNED, S.CANCELLED}, D: {S.ASSIGNED}},
    S.ASSIGNED: {
        SY: set(),
        P: {S.CANCELLED},
        ST: {S.ASSIGNED, S.SEARCHING, S.CANCELLED},
        D: {S.EN_ROUTE, S.SEARCHING},
    },
    S.EN_ROUTE: {
        SY: set(),
        P: {S.CANCELLED},
        ST: {S.ASSIGNED, S.SEARCHING, S.CANCELLED},
        D: {S.ARRIVED, S.SEARCHING},
    },
    S.ARRIVED: {SY: set(), P: set(), ST: {S.CANCELLED}, D: {S.IN_PROGRESS}},
    S.IN_PROGRESS: {SY: set(), P: set(), ST: {S.COMPLETED, S.CANCELLED}, D: {S.COMPLETED}},
    S.ESCALATED: {SY: set(), P: {S.CANCELLED}, ST: {S.SEARCHING, S.ASSIGNED, S.CANCELLED}, D: set()},
    S.COMPLETED: {SY: set(), P: set(), ST: set(), D: set()},
    S.CANCELLED: {SY: set(), P: set(), ST: set(), D: set()},
}


@pytest.mark.parametrize(("current", "wanted", "actor"), list(itertools.product(S, S, Actor)))
def test_every_transition_for_every_actor(current: S, wanted: S, actor: Actor) -> None:
    allowed = wanted in EXPECTED[current][actor]
    if allowed:
        check_transition(current, wanted, actor)
    else:
        with pytest.raises(TransitionError) as raised:
            check_transition(current, wanted, actor)
        assert raised.value.current is current
        assert set(raised.value.allowed) == EXPECTED[current][actor]


def test_final_statuses_have_no_way_out() -> None:
    for actor in Actor:
        assert next_statuses(S.COMPLETED, actor) == []
        assert next_statuses(S.CANCELLED, actor) == []
