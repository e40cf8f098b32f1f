"""The coordinate limits of everything that reaches the live location index, in one place.

Latitude stops at +-85.05112878 degrees, not 90: Redis GEO (and so both engines, which must agree) works
on the Web Mercator square (EPSG:3857), which ends there. A call, an SOS alert or a doctor's fix outside
it could never be matched, so the REST bodies and the socket take the same limits as the index. Plain
WGS84 ranges (+-90) remain where no index is involved (zones, map boxes).
"""

from __future__ import annotations

MAX_LAT = 85.05112878
"""Largest absolute latitude accepted (Redis GEO's limit, EPSG:3857), degrees."""

MAX_LON = 180.0
"""Largest absolute longitude accepted, degrees."""
