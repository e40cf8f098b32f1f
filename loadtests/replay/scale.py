"""Scaling a replay: the fleet and the calls cloned N times, each clone shifted a little in space and time.

A clone keeps its original's movement pattern exactly (every fix moves by the same offset), so the
load has real streets, real stops and real shift changes, just N times as much of it. Clone ``k``
(1 <= k < N) of ``abc`` is called ``abc~k``; clone 0 is the original, unchanged. Each clone draws one
shift north and one east, uniform in [-``jitter_m``, ``jitter_m``] metres, and one time shift uniform
in [-``jitter_s``, ``jitter_s``] seconds, from ``rng`` (a seeded ``random.Random``: same seed, same run).
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from geo.distance import metres_per_degree_lat
from loadtests.replay.inputs import CallSpec, Fix, Trace


def shift(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """The point ``north_m`` metres north and ``east_m`` east of (lat, lon) (local flat approximation,
    good to centimetres over the few hundred metres used here). Degrees in and out."""
    per_deg = metres_per_degree_lat()
    return (
        lat + north_m / per_deg,
        lon + east_m / (per_deg * max(math.cos(math.radians(lat)), 1e-6)),
    )


def _offsets(rng: random.Random, jitter_m: float, jitter_s: float) -> tuple[float, float, float]:
    return (
        rng.uniform(-jitter_m, jitter_m),
        rng.uniform(-jitter_m, jitter_m),
        rng.uniform(-jitter_s, jitter_s),
    )


def scale_fleet(
    traces: list[Trace], factor: int, rng: random.Random, *, jitter_m: float, jitter_s: float
) -> list[Trace]:
    """The traces and ``factor - 1`` clones of each (see the module docstring). ``factor`` >= 1."""
    if factor < 1:
        raise ValueError(f"scale must be at least 1, not {factor}")
    out = list(traces)
    for k in range(1, factor):
        for trace in traces:
            north, east, dt_s = _offsets(rng, jitter_m, jitter_s)
            fixes = []
            for f in trace.fixes:
                lat, lon = shift(f.lat, f.lon, north, east)
                fixes.append(Fix(f.ts + dt_s, lat, lon, f.occupied))
            out.append(Trace(f"{trace.id}~{k}", tuple(fixes)))
    return out


def scale_calls(
    calls: list[CallSpec], factor: int, rng: random.Random, *, jitter_m: float, jitter_s: float
) -> list[CallSpec]:
    """The calls and ``factor - 1`` clones of each, sorted by time then id. ``factor`` >= 1."""
    if factor < 1:
        raise ValueError(f"scale must be at least 1, not {factor}")
    out = list(calls)
    for k in range(1, factor):
        for call in calls:
            north, east, dt_s = _offsets(rng, jitter_m, jitter_s)
            lat, lon = shift(call.lat, call.lon, north, east)
            out.append(replace(call, id=f"{call.id}~{k}", ts=call.ts + dt_s, lat=lat, lon=lon))
    out.sort(key=lambda c: (c.ts, c.id))
    return out
