"""Great-circle distance on a spherical Earth, in metres.

Every distance the live engine reports or compares (nearest-available search, H3 ring bounds, the
brute-force checks in the tests) comes from :func:`haversine_m`, so that two engines and a check agree
to the last bit. The Redis engine's Lua search evaluates the very same expression, operation by
operation (see ``geo/lua/location_index_nearest.lua``); change both or neither.

Units: latitude and longitude in WGS84 decimal degrees, distances in metres.
"""

from __future__ import annotations

import math

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius R1 = (2a + b) / 3 of the GRS80/WGS84 ellipsoid, in metres.

Source: H. Moritz, "Geodetic Reference System 1980", Journal of Geodesy 74 (2000) 128-133, table of
derived constants (mean radius R1 = 6 371 008.7714 m), rounded to 0.1 m as in the IUGG recommendation.
A sphere of this radius keeps the haversine distance within about 0.5 % of the ellipsoidal (Vincenty)
distance anywhere on Earth, far below GPS accuracy for ranking doctors by straight-line distance.
"""

RAD_PER_DEG = math.pi / 180.0
"""Degrees to radians; the same factor ``math.radians`` and Lua's ``math.rad`` multiply by."""


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 points given in decimal degrees.

    Formula: haversine (R. W. Sinnott, "Virtues of the Haversine", Sky and Telescope 68(2), 1984,
    p. 159), numerically stable for the short distances dispatch deals with; the intermediate value is
    clamped to 1 so antipodal points give pi * R instead of a domain error. Near antipodes the formula
    is ill-conditioned (decimetres of rounding over 20,000 km); irrelevant at city scale.
    Argument order matters only in the last bit: callers pass the query point first.
    """
    phi1 = lat1 * RAD_PER_DEG
    phi2 = lat2 * RAD_PER_DEG
    s_lat = math.sin((phi2 - phi1) / 2)
    s_lon = math.sin((lon2 - lon1) * RAD_PER_DEG / 2)
    a = s_lat * s_lat + math.cos(phi1) * math.cos(phi2) * s_lon * s_lon
    if a > 1.0:
        a = 1.0
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def metres_per_degree_lat() -> float:
    """Length in metres of one degree of latitude on the sphere of :data:`EARTH_RADIUS_M`."""
    return EARTH_RADIUS_M * RAD_PER_DEG
