"""The box the console opens on when there are no zones (``GET /v1/map/extent``)."""

from __future__ import annotations

from server.routes.console import doctors_extent


def test_no_doctors_no_box() -> None:
    assert doctors_extent([]) is None


def test_a_few_doctors_are_all_inside() -> None:
    points = [(55.70, 37.50), (55.80, 37.70), (55.75, 37.60)]
    assert doctors_extent(points) == [37.50, 55.70, 37.70, 55.80]


def test_one_stray_fix_among_many_does_not_widen_the_box() -> None:
    city = [(55.70 + i * 0.002, 37.50 + i * 0.004) for i in range(99)]
    stray = (0.0, 0.0)  # a phone's "null island" fix
    west, south, east, north = doctors_extent([*city, stray]) or []
    # 2 % of 100 on each side: the stray and the lowest city fix below, the two highest above.
    assert (south, west) == city[1]
    assert (north, east) == city[96]
