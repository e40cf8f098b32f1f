"""The ranking of candidates: ETA buckets, then rating, then fairness, then the doctor id."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from dispatch.ranking import Candidate, RankingSettings, rank

NOW = 1_732_200_000_000
# 1 m straight line = 0.1 s: a 60 s bucket is 600 m, easy to reason about in the table below.
SIMPLE = RankingSettings(road_factor=1.0, speed_mps=10.0, eta_bucket_s=60.0, default_rating=4.0)


def cand(doctor_id: str, distance_m: float, rating: float | None = 4.5, idle_s_ago: int = 60) -> Candidate:
    return Candidate(doctor_id, distance_m, rating, NOW - idle_s_ago * 1000)


@dataclass(frozen=True)
class Case:
    name: str
    candidates: list[Candidate]
    expected: list[str]
    settings: RankingSettings = SIMPLE


CASES = [
    Case("empty", [], []),
    Case("one", [cand("a", 100)], ["a"]),
    Case(
        "different buckets: nearer wins whatever the rating and idle time",
        [cand("far", 700, rating=5.0, idle_s_ago=3600), cand("near", 500, rating=1.0, idle_s_ago=1)],
        ["near", "far"],
    ),
    Case(
        "same bucket: higher rating wins over a nearer doctor",
        [cand("near", 10, rating=4.0), cand("far", 590, rating=4.9)],
        ["far", "near"],
    ),
    Case(
        "bucket edge: 599.9 m and 600 m fall on both sides",
        [cand("edge", 600, rating=5.0), cand("inside", 599.9, rating=1.0)],
        ["inside", "edge"],
    ),
    Case(
        "same bucket and rating: idle longest first",
        [cand("fresh", 100, idle_s_ago=10), cand("waiting", 500, idle_s_ago=900)],
        ["waiting", "fresh"],
    ),
    Case(
        "unrated counts as the default rating (4.0): beats 3.9, loses to 4.1",
        [cand("low", 100, rating=3.9), cand("new", 200, rating=None), cand("good", 300, rating=4.1)],
        ["good", "new", "low"],
    ),
    Case(
        "unrated ties with an exact 4.0 and fairness decides",
        [cand("rated", 100, rating=4.0, idle_s_ago=5), cand("new", 100, rating=None, idle_s_ago=50)],
        ["new", "rated"],
    ),
    Case(
        "everything equal: doctor id decides",
        [cand("c", 100), cand("a", 100), cand("b", 100)],
        ["a", "b", "c"],
    ),
    Case(
        "same bucket, rating and idle time, different distance: still the id (distance inside a bucket "
        "is noise)",
        [cand("b", 10), cand("a", 550)],
        ["a", "b"],
    ),
    Case(
        "idle time in the future (clock skew) counts as now, not as 'longest idle'",
        [
            Candidate("skewed", 100, 4.5, NOW + 3_600_000),
            Candidate("now", 100, 4.5, NOW),
            Candidate("older", 100, 4.5, NOW - 1),
        ],
        ["older", "now", "skewed"],
    ),
    Case(
        "no buckets (0): exact ETA first, rating only breaks exact ties",
        [cand("near", 10, rating=1.0), cand("far", 11, rating=5.0), cand("tie", 10, rating=2.0)],
        ["tie", "near", "far"],
        RankingSettings(road_factor=1.0, speed_mps=10.0, eta_bucket_s=0.0),
    ),
    Case(
        "defaults: one bucket is ~357 m straight line",
        [cand("a", 356, rating=3.0), cand("b", 0, rating=4.0), cand("c", 358, rating=5.0)],
        ["b", "a", "c"],
        RankingSettings(),
    ),
    Case(
        "all four levels at once",
        [
            cand("d4", 1300, rating=5.0),
            cand("d3-id-b", 700, rating=4.0, idle_s_ago=100),
            cand("d3-id-a", 700, rating=4.0, idle_s_ago=100),
            cand("d2", 650, rating=4.0, idle_s_ago=300),
            cand("d1", 1100, rating=4.5),
            cand("d0", 50, rating=2.0),
        ],
        ["d0", "d1", "d2", "d3-id-a", "d3-id-b", "d4"],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rank_order(case: Case) -> None:
    ranked = rank(case.candidates, case.settings, NOW)
    assert [r.candidate.doctor_id for r in ranked] == case.expected


def test_rank_does_not_depend_on_input_order() -> None:
    candidates = CASES[-1].candidates
    forward = [r.candidate.doctor_id for r in rank(candidates, SIMPLE, NOW)]
    backward = [r.candidate.doctor_id for r in rank(list(reversed(candidates)), SIMPLE, NOW)]
    assert forward == backward


def test_eta_is_distance_times_road_factor_over_speed_and_not_rounded() -> None:
    settings = RankingSettings()  # 1.4 road factor, 8.33 m/s
    [ranked] = rank([cand("a", 1000)], settings, NOW)
    assert ranked.eta_s == pytest.approx(1000 * 1.4 / 8.33)
    assert ranked.eta_s == pytest.approx(168.07, abs=0.01)
    assert ranked.candidate == cand("a", 1000)
    [zero] = rank([cand("z", 0)], settings, NOW)
    assert zero.eta_s == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"road_factor": 0.9},
        {"road_factor": math.inf},
        {"speed_mps": 0},
        {"speed_mps": -1},
        {"speed_mps": math.nan},
        {"eta_bucket_s": -1},
        {"default_rating": 0.5},
        {"default_rating": 5.5},
    ],
)
def test_settings_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RankingSettings(**kwargs)


@pytest.mark.parametrize(
    "bad",
    [cand("neg", -1), cand("nan", math.nan), cand("inf", math.inf), cand("r0", 10, 0.0), cand("r6", 10, 6)],
)
def test_rank_refuses_bad_candidates(bad: Candidate) -> None:
    with pytest.raises(ValueError, match=bad.doctor_id):
        rank([cand("ok", 10), bad], SIMPLE, NOW)
