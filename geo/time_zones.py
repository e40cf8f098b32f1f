"""The IANA time zone of a place: planned visits are offered in the time of the place
(docs/planned-visits.md).

``timezonefinder`` answers offline from the timezone-boundary-builder polygons (OpenStreetMap data,
https://github.com/evansiroky/timezone-boundary-builder) that ship with it: about 50 µs a lookup once
loaded (~20 ms, on first use). A point at sea gets its nautical zone (``Etc/GMT-3``); a point it cannot
place at all gets ``UTC``.
"""

from __future__ import annotations

import functools

from timezonefinder import TimezoneFinder

FALLBACK = "UTC"


@functools.cache
def _finder() -> TimezoneFinder:
    return TimezoneFinder()


def zone_name_at(lat: float, lon: float) -> str:
    """The IANA time zone name at (``lat``, ``lon``), WGS84 degrees (``Europe/Moscow``)."""
    name = _finder().timezone_at(lat=lat, lng=lon)
    return name or FALLBACK
