"""Route length on the WGS84 ellipsoid.

PostGIS measures ``geography`` lines on the WGS84 spheroid with Karney's geodesic algorithm (PostGIS
docs, ST_Length: "default is true, uses spheroid"; since PostGIS 2.2 geodesics follow GeographicLib).
SQLite has no such function, so the embedded deployment computes the same quantity in Python with
GeographicLib (C. F. F. Karney, "Algorithms for geodesics", J. Geodesy 87, 43-55, 2013): both
deployments answer the same length to well under a millimetre per kilometre.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from geographiclib.geodesic import Geodesic

_WGS84 = Geodesic.WGS84


def route_length_m(points: Sequence[tuple[float, float]]) -> float:
    """Length in metres of the polyline through ``points`` ((lat, lon) WGS84 degrees, in order):
    the sum of the ellipsoidal geodesic distances between consecutive points. 0 for fewer than 2."""
    total = 0.0
    for (lat1, lon1), (lat2, lon2) in itertools.pairwise(points):
        total += _WGS84.Inverse(lat1, lon1, lat2, lon2, Geodesic.DISTANCE)["s12"]
    return total
