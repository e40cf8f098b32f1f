"""Ranking of candidate doctors for one call: ETA first, then rating, then fairness.

The search (``geo/``) hands over the doctors that may take the call with their straight-line distance;
:func:`rank` puts them in the order the offer loop offers the call in. It is a pure function: no I/O,
no clock (the caller passes ``now_ms``), deterministic for equal inputs.

**ETA.** ``eta_s = distance_m * road_factor / speed_mps``: the straight-line (great-circle) distance
stretched by a *detour index* to approximate the road distance, driven at a city-average speed. Both
defaults are assumptions, not measurements of ours:

- ``road_factor = 1.4``. The ratio of road distance to straight-line distance ("circuity", "detour
  index") is commonly put at about 1.2-1.4 in cities. Boscoe, Henry & Zdeb (2012), "A nationwide
  comparison of driving distance versus straight-line distance to hospitals", *The Professional
  Geographer* 64(2), doi:10.1080/00330124.2011.583586, compared the two from more than 66,000 places in
  the United States and found road distance about 1.4 times the straight line on average, very highly
  correlated with it, with local exceptions near shorelines and other physical barriers. That is a US
  figure; Moscow's radial-ring street plan, river and rail lines have not been measured here, and 1.4
  is the cautious end of the usual range.
- ``speed_mps = 8.33`` (30 km/h): an assumed average door-to-door driving speed in big-city traffic,
  not a measured Moscow figure. It scales every ETA by the same factor, so it changes the ETA a
  patient is shown, but not the order of candidates (except through the bucket width in metres).

Where a road graph is loaded later, its travel times replace this estimate; the ordering rules below
stay the same.

**Order.** Candidates are sorted by

1. the ETA rounded *down* to ``eta_bucket_s`` (60 s by default). A straight-line ETA is only good to a
   minute or so: the detour index varies from street to street, one-way streets and a river between
   doctor and patient add minutes, and GPS fixes are tens of metres off. Ranking by the exact metre
   would let that noise decide every time and rating and fairness would never count. With the
   defaults one bucket is 60 s * 8.33 m/s / 1.4 = ~357 m of straight-line distance, so doctors a few
   hundred metres apart compete on rating and fairness. The price of buckets is a step at each edge:
   doctors 10 m apart can fall on both sides of one, and then the nearer wins outright;
2. the rating, higher first; an unrated doctor counts as ``default_rating`` (4.0 on the 1-5 scale:
   below a good doctor's record, above a poor one, so new doctors get calls without jumping the queue);
3. fairness: the doctor idle longest first (the smallest ``idle_since_ms``). An ``idle_since_ms`` in the
   future (clock skew between processes) counts as "idle since now";
4. ``doctor_id``, so that equal candidates come out in the same order on every process and run.

Setting ``eta_bucket_s = 0`` ranks by the exact ETA (rating and fairness then only break exact ties).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MIN_RATING = 1.0
MAX_RATING = 5.0


@dataclass(frozen=True)
class Candidate:
    """A doctor who may take the call.

    ``distance_m``: straight-line (haversine) distance to the call in metres, >= 0.
    ``rating``: mean patient rating 1-5, ``None`` before the first rating.
    ``idle_since_ms``: when the doctor last became available, Unix epoch milliseconds.
    """

    doctor_id: str
    distance_m: float
    rating: float | None
    idle_since_ms: int


@dataclass(frozen=True)
class RankingSettings:
    """Tunables of :func:`rank` (see the module docstring for where the defaults come from).

    ``road_factor``: road distance / straight-line distance, >= 1. ``speed_mps``: average driving speed
    in metres per second, > 0. ``eta_bucket_s``: seconds of ETA treated as equal, >= 0 (0: exact ETA).
    ``default_rating``: the rating an unrated doctor counts with, 1-5.

    Raises ``ValueError`` on construction when a value is out of range or not finite.
    """

    road_factor: float = 1.4
    speed_mps: float = 8.33
    eta_bucket_s: float = 60.0
    default_rating: float = 4.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.road_factor) and self.road_factor >= 1.0):
            raise ValueError(f"road_factor must be a finite number >= 1, got {self.road_factor}")
        if not (math.isfinite(self.speed_mps) and self.speed_mps > 0):
            raise ValueError(f"speed_mps must be a finite number > 0, got {self.speed_mps}")
        if not (math.isfinite(self.eta_bucket_s) and self.eta_bucket_s >= 0):
            raise ValueError(f"eta_bucket_s must be a finite number >= 0, got {self.eta_bucket_s}")
        if not (MIN_RATING <= self.default_rating <= MAX_RATING):
            raise ValueError(f"default_rating must be within 1-5, got {self.default_rating}")

    def eta_s(self, distance_m: float) -> float:
        """Estimated driving time in seconds for a straight-line distance in metres."""
        return distance_m * self.road_factor / self.speed_mps


@dataclass(frozen=True)
class Ranked:
    """A candidate with its estimated time of arrival in seconds (not rounded to the bucket)."""

    candidate: Candidate
    eta_s: float


def rank(candidates: Iterable[Candidate], settings: RankingSettings, now_ms: int) -> list[Ranked]:
    """The candidates, best first, each with its ETA (order described in the module docstring).

    ``now_ms`` is the current time in Unix epoch milliseconds (idle times after it are clamped to it).
    Raises ``ValueError`` for a negative or non-finite distance, or a rating outside 1-5.
    """
    keyed: list[tuple[tuple[float, float, int, str], Ranked]] = []
    for candidate in candidates:
        distance = candidate.distance_m
        if not (math.isfinite(distance) and distance >= 0):
            raise ValueError(f"doctor {candidate.doctor_id}: distance_m must be finite and >= 0")
        rating = settings.default_rating if candidate.rating is None else candidate.rating
        if not (MIN_RATING <= rating <= MAX_RATING):
            raise ValueError(f"doctor {candidate.doctor_id}: rating must be within 1-5, got {rating}")
        eta = settings.eta_s(distance)
        bucket = math.floor(eta / settings.eta_bucket_s) if settings.eta_bucket_s > 0 else eta
        idle_since = min(candidate.idle_since_ms, now_ms)
        keyed.append(((bucket, -rating, idle_since, candidate.doctor_id), Ranked(candidate, eta)))
    keyed.sort(key=lambda item: item[0])
    return [ranked for _, ranked in keyed]
