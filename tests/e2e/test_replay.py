"""``tot-dispatch replay`` end to end: a small city (seven cabs, six calls) replayed against a real
server process (``tot-dispatch demo --no-replay``: embedded engine, SQLite, the demo's staff), through
REST and WebSockets only. The replay's own integrity checks must pass and every call must be served."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from loadtests.replay.scale import shift
from tests.e2e.process import cli, run_server

START = dt.datetime(2024, 3, 4, 9, 0, tzinfo=dt.UTC)
CENTRE = (37.7749, -122.4194)  # San Francisco
CABS = 7
"""Enough that a free doctor is always in range: a visit (drive ~3 replay minutes, visit 2-4) keeps up to
four doctors busy when a call comes, and cab 4 has a fare until minute 10. With five cabs a loaded
machine's delays could leave none free at minute 9, and that call escalated before any offer."""
CALL_MINUTES = (1, 3, 5, 7, 9, 11)


def write_city(folder: Path) -> tuple[Path, Path]:
    """Traces (epoch milliseconds, one fix a minute for 30 minutes, cabs 300-1,200 m north of the centre,
    driving 100 m east a minute; cab 4 has a fare for the first ten minutes) and calls (ISO-8601, within
    500 m of the centre)."""
    t0 = START.timestamp()
    rows = ["id,ts,lat,lon,occupied,note"]
    for cab in range(CABS):
        for minute in range(31):
            lat, lon = shift(*CENTRE, 300.0 + 150.0 * cab, -600.0 + 100.0 * minute)
            occupied = 1 if cab == 4 and minute < 10 else 0
            rows.append(f"cab{cab},{int((t0 + 60 * minute) * 1000)},{lat:.6f},{lon:.6f},{occupied},x")
    traces = folder / "traces.csv"
    traces.write_text("\n".join(rows) + "\n")
    rows = ["id,ts,lat,lon"]
    for i, minute in enumerate(CALL_MINUTES):
        lat, lon = shift(*CENTRE, -500.0 + 150.0 * i, 200.0 - 80.0 * i)
        rows.append(f"p{i},{(START + dt.timedelta(minutes=minute)).isoformat()},{lat:.6f},{lon:.6f}")
    calls = folder / "calls.csv"
    calls.write_text("\n".join(rows) + "\n")
    return traces, calls


def replay(
    url: str, folder: Path, report: Path, *extra: str, accounts: str = "accounts.json"
) -> tuple[int, str, dict[str, Any]]:
    traces, calls = write_city(folder)
    args = [
        "replay",
        "--server", url,
        "--traces", str(traces),
        "--calls", str(calls),
        "--from", START.isoformat(),
        "--tz", "UTC",
        "--hours", "0.25",
        "--speed", "60",
        "--accept", "1",
        "--accept-delay", "0.1-0.4",
        "--visit-minutes", "2-4",
        "--cancel", "0",
        "--patients", "2",
        "--report", str(report),
        "--accounts", str(folder / accounts),
        "--no-progress",
        *extra,
    ]  # fmt: skip
    result = cli(args, {}, folder)
    output = result.stdout + result.stderr
    summary = json.loads((report / "summary.json").read_text()) if (report / "summary.json").exists() else {}
    return result.returncode, output, summary


def test_a_small_city_replays_clean(tmp_path: Path) -> None:
    # Access tokens live 70 s: the replay must refresh them (a minute before expiry) during the run.
    env = {"TOT_SECRET_KEY": "", "TOT_LOG_LEVEL": "warning", "TOT_ACCESS_TOKEN_TTL": "70"}
    with run_server(["demo", "--no-replay"], env, tmp_path) as server:
        code, output, summary = replay(server.url, tmp_path, tmp_path / "report", "--sos", "1")
        assert code == 0, output
        checks = {c["name"]: c for c in summary["checks"]}
        assert len(checks) == 4 and all(c["passed"] for c in checks.values()), checks
        n = summary["numbers"]
        assert n["created"] == len(CALL_MINUTES) and n["create_failed"] == 0
        assert n["assigned"] == len(CALL_MINUTES)
        assert n["completed"] == len(CALL_MINUTES), output
        assert n["time_to_first_offer_ms"]["n"] == len(CALL_MINUTES)
        assert 0 < n["distance_m"]["max"] < 3_000  # every cab is within a few km
        assert n["chat_latency_ms"]["n"] == 2 * len(CALL_MINUTES)  # the patient's line and the answer
        assert n["tracking_latency_ms"]["n"] > 0
        assert n["sos_ack_ms"]["n"] == len(CALL_MINUTES)  # every SOS acknowledged by a dispatcher
        assert summary["accounts"]["registered"] == CABS + 2  # and two patients
        # New accounts are registered straight away: no sign-in is tried (and refused) first.
        assert summary["accounts"]["logged in"] == 2 and summary["accounts"]["sign-ins refused"] == 0
        assert summary["accounts"]["refreshed"] > 0  # tokens renewed over POST /v1/auth/refresh
        report = (tmp_path / "report" / "report.md").read_text()
        assert report.count("**PASS**") == 4 and "FAIL" not in report
        for chart in ("utilisation.png", "server.png", "latency.png", "calls.png"):
            assert (tmp_path / "report" / chart).stat().st_size > 1000

        # A second run signs the cached accounts in with their refresh tokens: nothing is registered.
        code, output, summary = replay(
            server.url, tmp_path, tmp_path / "again", "--max-calls", "1", "--hours", "0.05"
        )
        assert code == 0, output
        accounts = (tmp_path / "again" / "report.md").read_text()
        assert "registered 0" in accounts and "logged in 2" in accounts, accounts  # admin, dispatcher
        assert summary["numbers"]["created"] == 1

        # Without the state file the accounts exist on the server all the same: registering a taken
        # licence is refused (doctors), a taken email answered like a new account whose tokens fail
        # (patients); both then log in.
        code, output, summary = replay(
            server.url, tmp_path, tmp_path / "lost", "--max-calls", "1", "--hours", "0.05", accounts="a.json"
        )
        assert code == 0, output
        counts = summary["accounts"]
        # CABS doctors, one patient (one call), the admin and the dispatcher.
        assert counts["registered"] == 0 and counts["logged in"] == CABS + 1 + 2, counts
        assert counts["sign-ins refused"] == 0, counts
