"""The replay's CSV readers: both timestamp forms, extra columns, the glitch rule, slicing."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from loadtests.replay.inputs import (
    GlitchRule,
    InputError,
    parse_occupied,
    parse_timestamp,
    read_calls,
    read_traces,
    resolve_start,
    slice_calls,
    slice_traces,
)
from loadtests.replay.options import ReplayOptions
from loadtests.replay.runner import load_inputs
from loadtests.replay.scale import shift

T0 = 1211958000  # 2008-05-28T07:00:00Z, 00:00 in San Francisco
SF = (37.7749, -122.4194)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2008-05-28T07:00:00Z", T0),
        ("2008-05-28T00:00:00-07:00", T0),
        ("2008-05-28T07:00:00", T0),  # no zone: UTC
        ("2008-05-28T07:00:00.250Z", T0 + 0.25),
        ("1211958000", T0),
        ("1211958000.5", T0 + 0.5),
        ("1211958000000", T0),  # epoch milliseconds
        ("1211958000250", T0 + 0.25),
        (" 1211958000 ", T0),
    ],
)
def test_timestamps_iso_and_epoch_seconds_or_milliseconds(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "", "12:00", "2008-13-01T00:00:00Z"])
def test_unreadable_timestamps_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_occupied_values() -> None:
    assert parse_occupied("1") is True and parse_occupied("TRUE") is True
    assert parse_occupied("0") is False and parse_occupied("false") is False
    assert parse_occupied(None) is None
    with pytest.raises(ValueError):
        parse_occupied("maybe")


def test_traces_in_both_timestamp_forms_with_extra_columns_in_any_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        "lat,id,extra,ts,lon,occupied\n"
        f"{SF[0]},b,x,{T0 + 60},{SF[1]},1\n"
        f"{SF[0]},a,x,2008-05-28T07:00:00Z,{SF[1]},0\n"
        f"{SF[0] + 0.001},a,x,{(T0 + 60) * 1000},{SF[1]},1\n",
    )
    traces, stats = read_traces(path)
    assert [t.id for t in traces] == ["a", "b"]
    a = traces[0]
    assert [f.ts for f in a.fixes] == [T0, T0 + 60]
    assert [f.occupied for f in a.fixes] == [False, True]
    assert (stats.rows, stats.kept) == (3, 3)


def test_traces_without_occupied_column(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", f"id,ts,lat,lon\na,{T0},{SF[0]},{SF[1]}\n")
    traces, _ = read_traces(path)
    assert traces[0].fixes[0].occupied is None


def test_glitches_are_dropped_by_the_documented_rule(tmp_path: Path) -> None:
    rows = ["id,ts,lat,lon,occupied"]
    # A cab driving 200 m a minute, with glitches in between.
    for i in range(10):
        lat, lon = shift(*SF, 200.0 * i, 0.0)
        rows.append(f"a,{T0 + 60 * i},{lat},{lon},0")
    rows.append(f"a,{T0 + 90},33.39201,-125.79776,0")  # 430 km off: far from the median
    spike = shift(*SF, 20_000.0, 0.0)  # 20 km in 30 s: 2,400 km/h, then back
    rows.append(f"a,{T0 + 150},{spike[0]},{spike[1]},0")
    rows.append(f"a,{T0 + 200},0,0,0")  # null island
    rows.append(f"a,{T0 + 210},91,0,0")  # out of range
    rows.append(f"a,not-a-time,{SF[0]},{SF[1]},0")  # unreadable
    # Jitter: 300 m in one second is fine (the time between fixes counts as at least 30 s: 36 km/h).
    jitter = shift(*SF, 1_800.0 + 300.0, 0.0)
    rows.append(f"a,{T0 + 541},{jitter[0]},{jitter[1]},0")
    traces, stats = read_traces(write(tmp_path / "t.csv", "\n".join(rows) + "\n"))
    times = [f.ts for f in traces[0].fixes]
    assert times == [T0 + 60 * i for i in range(10)] + [T0 + 541]
    assert (stats.far, stats.too_fast, stats.out_of_range, stats.unreadable) == (1, 1, 2, 1)


def test_a_real_jump_is_kept_after_three_refusals(tmp_path: Path) -> None:
    """The data jumps 50 km and stays there (a gap in the data): after three dropped fixes, the trace
    re-anchors on the new place instead of dropping the rest of the day."""
    rows = ["id,ts,lat,lon", f"a,{T0},{SF[0]},{SF[1]}"]
    far = shift(*SF, 50_000.0, 0.0)
    rows += [f"a,{T0 + 60 * i},{far[0]},{far[1]}" for i in range(1, 7)]
    traces, stats = read_traces(
        write(tmp_path / "t.csv", "\n".join(rows) + "\n"), GlitchRule(reanchor_after=3)
    )
    assert stats.too_fast == 3
    assert [f.ts for f in traces[0].fixes] == [T0, T0 + 240, T0 + 300, T0 + 360]


def test_calls_keep_repeated_ids_at_different_times_and_drop_exact_repeats(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.csv",
        "id,ts,lat,lon,unix_ts\n"
        f"cab1,2008-05-28T07:01:00Z,{SF[0]},{SF[1]},x\n"
        f"cab1,{T0 + 60},{SF[0]},{SF[1]},x\n"  # the same call again (epoch form): dropped
        f"cab1,{T0 + 600},{SF[0]},{SF[1]},x\n"
        f"cab2,{T0 + 30},34.8,-125.0,x\n",  # 400 km off: a glitch
    )
    calls, stats = read_calls(path)
    assert [(c.id, c.ts) for c in calls] == [("cab1", T0 + 60), ("cab1", T0 + 600)]
    assert len({c.key for c in calls}) == 2
    assert (stats.duplicates, stats.far) == (1, 1)


def test_missing_columns_and_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing column"):
        read_calls(write(tmp_path / "c.csv", "id,time,lat,lon\n"))
    with pytest.raises(InputError, match="no such file"):
        read_traces(tmp_path / "nothing.csv")


def test_slices_and_the_start_time_of_day(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        "id,ts,lat,lon\n" + "".join(f"a,{T0 + 600 * i},{SF[0]},{SF[1]}\n" for i in range(10)),
    )
    traces, _ = read_traces(path)
    sliced = slice_traces(traces, T0 + 600, T0 + 1800)
    assert [f.ts for f in sliced[0].fixes] == [T0 + 600, T0 + 1200]
    assert slice_traces(traces, T0 + 10**6, T0 + 10**6 + 1) == []
    calls, _ = read_calls(write(tmp_path / "c.csv", f"id,ts,lat,lon\nx,{T0 + 5},{SF[0]},{SF[1]}\n"))
    assert slice_calls(calls, T0, T0 + 5) == [] and len(slice_calls(calls, T0, T0 + 6)) == 1
    # 08:00 in San Francisco on the data's first day is 15:00 UTC.
    assert resolve_start("08:00", "America/Los_Angeles", T0) == T0 + 8 * 3600
    assert resolve_start("8:30", "America/Los_Angeles", T0) == T0 + 8.5 * 3600
    iso = dt.datetime(2008, 5, 28, 9, tzinfo=dt.UTC).isoformat()
    assert resolve_start(iso, "America/Los_Angeles", T0) == T0 + 2 * 3600


def test_a_doctors_subset_keeps_its_own_calls_with_fleet_calls(tmp_path: Path) -> None:
    rows = "".join(f"{cab},{T0 + 600 * i},{SF[0]},{SF[1]}\n" for cab in "abc" for i in range(6))
    traces = write(tmp_path / "t.csv", "id,ts,lat,lon\n" + rows)
    pickups = "".join(f"{cab},{T0 + 700 + i},{SF[0]},{SF[1]}\n" for i, cab in enumerate("abcab"))
    calls = write(tmp_path / "c.csv", "id,ts,lat,lon\n" + pickups)
    base = ReplayOptions(traces=traces, calls=calls, start="00:00", tz="America/Los_Angeles", hours=1.0)
    every = load_inputs(base)
    assert len(every.traces) == 3 and len(every.calls) == 5
    subset = load_inputs(dataclasses.replace(base, limit_doctors=2, fleet_calls=True))
    assert [t.id for t in subset.traces] == ["a", "b"]
    assert sorted(c.id for c in subset.calls) == ["a", "a", "b", "b"]  # c's pickup left with its cab
    assert len(load_inputs(dataclasses.replace(base, limit_doctors=2)).calls) == 5
