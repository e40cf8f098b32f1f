"""The replay report: ``report.md``, ``summary.json``, ``calls.csv`` and the charts in the report folder.

The numbers come from :mod:`loadtests.replay.numbers`, the charts from :mod:`loadtests.replay.charts`;
``docs/replay.md`` explains every field.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loadtests.replay.charts import write_charts
from loadtests.replay.numbers import (
    CPU_WINDOW,
    TTFO_TARGET_MS,
    Numbers,
    call_timing,
    compute,
    record_created_s,
    status_at_end,
)
from loadtests.replay.runner import RunResult
from loadtests.replay.stats import Summary, fmt


def _row(name: str, s: Summary, unit: str, digits: int = 1) -> str:
    return (
        f"| {name} | {s.n} | {fmt(s.p50, digits)} | {fmt(s.p95, digits)} | {fmt(s.p99, digits)} "
        f"| {fmt(s.max, digits)} | {unit} |"
    )


def headline(result: RunResult, n: Numbers) -> str:
    """One paragraph: what one server process sustained."""
    m = result.meta
    target = "within" if n.time_to_first_offer_ms.p99 <= TTFO_TARGET_MS else "over"
    return (
        f"{m.doctors} doctors and {n.created} calls in {m.replay_wall_s:.0f} s of wall time "
        f"({n.calls_per_wall_s:.1f} calls/s, {n.fixes_per_wall_s:.0f} position frames/s) "
        "on one server process: "
        f"time to first offer p50 {fmt(n.time_to_first_offer_ms.p50)} ms, p99 "
        f"{fmt(n.time_to_first_offer_ms.p99)} ms ({target} the {TTFO_TARGET_MS:.0f} ms target); "
        f"server CPU mean {fmt(n.cpu_percent.mean, 0)} % (max {fmt(n.cpu_percent.max, 0)} %), "
        f"resident memory max {fmt(n.rss_mb.max, 0)} MB. Integrity: "
        + ("all checks PASS." if n.checks_passed else "**a check FAILED**.")
    )


def _local(ts: float, tz: str) -> str:
    return dt.datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z")


def markdown(result: RunResult, n: Numbers, charts: list[str]) -> str:
    """The report as Markdown."""
    o, m, rec = result.options, result.meta, result.recorder
    b = o.behaviour
    lines = [
        f"# Replay report: {o.scenario_name()}",
        "",
        headline(result, n),
        "",
        "## Integrity checks",
        "",
    ]
    lines += [f"- **{c.verdict}** {c.name}: {c.detail}" for c in result.checks]
    lines += [
        "",
        "## Calls",
        "",
        "| created | assigned | escalated (ever) | of which before any offer | re-launched | cancelled "
        "| completed | escalated at end | open at end | creation failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {n.created} | {n.assigned} | {n.escalated} | {n.escalated_before_offer} | {n.relaunched} "
        f"| {n.cancelled} | {n.completed} "
        f"| {n.escalated_at_end} | {n.open_at_end} | {n.create_failed} |",
        "",
        "Offer outcomes: "
        + (", ".join(f"{k} {v}" for k, v in sorted(n.offer_outcomes.items())) or "none")
        + ".",
        "",
        "## Timing and assignment",
        "",
        "| measure | n | p50 | p95 | p99 | max | unit |",
        "|---|---|---|---|---|---|---|",
        _row(
            "time to first offer (call created -> first offer, server times; first search round)",
            n.time_to_first_offer_ms,
            "ms",
        ),
        _row(
            "time to acceptance (call created -> accepted; includes the doctor's think time)",
            n.time_to_accept_ms,
            "ms",
        ),
        _row("straight-line distance at assignment (accepted offer)", n.distance_m, "m", 0),
        _row("ETA at assignment (accepted offer)", n.eta_s, "s", 0),
        _row("offers per call", n.offers_per_call, "offers", 2),
        _row("chat delivery (send -> the other party receives)", n.chat_latency_ms, "ms"),
        _row(
            "tracking delivery (doctor fix ts -> patient receives doctor.position)",
            n.tracking_latency_ms,
            "ms",
        ),
        _row("SOS raised -> acknowledged (dispatcher delay included)", n.sos_ack_ms, "ms", 0),
        _row(f"server CPU (% of one core, {CPU_WINDOW} s windows)", n.cpu_percent, "%", 0),
        _row("server resident memory", n.rss_mb, "MB", 0),
        _row("load generator's event-loop lag (its own latencies include it)", n.client_loop_lag_ms, "ms"),
        "",
        f"Doctor utilisation: on average {fmt(100 * n.utilisation_on_call)} % of the doctors on shift "
        "were offered or on a call.",
        "",
    ]
    titles = {
        "utilisation.png": "Doctors by state",
        "server.png": "Server CPU and memory",
        "latency.png": "Latency distributions",
        "calls.png": "Calls created",
        "dispatch.png": "Time to first offer by creation time",
    }
    for chart in charts:
        lines += [f"![{titles.get(chart, chart)}]({chart})", ""]
    lines += [
        "## The run",
        "",
        f"- server: `{m.server}`; health: `{json.dumps(m.health, sort_keys=True)}`",
        f"- slice: {_local(m.slice_start, o.tz)} to {_local(m.slice_end, o.tz)} at x{o.speed:g}; "
        f"scale x{o.scale} (jitter {o.jitter_m:g} m, {o.jitter_s:g} s); seed {o.seed}",
        f"- doctors: {m.doctors}; calls planned: {m.calls_planned}; patient accounts: {o.patients}; "
        f"dispatchers: {b.dispatchers} (as `{m.dispatcher_login}`)",
        f"- wall time: set-up {m.setup_wall_s:.1f} s, replay {m.replay_wall_s:.1f} s, "
        f"drain {m.drain_wall_s:.1f} s; load generator CPU {fmt(n.client_cpu_percent, 0)} % of a core; "
        f"position frames sent: {rec.fixes_sent}",
        "- accounts: " + ", ".join(f"{k} {v}" for k, v in m.accounts.items()),
        f"- clean-up: {m.leftovers_cancelled} open calls of earlier runs cancelled before the run; "
        f"{m.closed_at_end} calls still open after the drain cancelled by the replay's dispatcher "
        "(counted above by the status they had)",
        f"- traces `{o.traces.name}`: {m.traces_read.summary()}",
        f"- calls `{o.calls.name}`: {m.calls_read.summary()}",
        f"- behaviour: accept {b.accept_share:g} after "
        f"{b.wall_accept_delay_s[0]:g}-{b.wall_accept_delay_s[1]:g} wall s "
        f"(else decline {b.decline_share:g} / expire); drive {b.drive_kmh:g} km/h "
        f"x road factor {b.road_factor:g}; "
        f"visit {b.replay_visit_min[0]:g}-{b.replay_visit_min[1]:g} min; cancel {b.cancel_share:g}; "
        f"SOS {b.sos_share:g}; relaunch {b.relaunch_share:g}",
        "- what the simulated people did: "
        + (", ".join(f"{k} {v}" for k, v in sorted(rec.actions.items())) or "nothing"),
        "- refusals and failures seen by the clients: "
        + (", ".join(f"`{k}` {v}" for k, v in sorted(rec.errors.items())) or "none"),
        "",
    ]
    return "\n".join(lines)


def write_report(result: RunResult) -> Path:
    """Write ``report.md``, ``summary.json`` and the charts; returns the Markdown file's path."""
    folder = result.meta.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    numbers = compute(result)
    charts = write_charts(result, folder)
    path = folder / "report.md"
    path.write_text(markdown(result, numbers, charts))
    write_calls_csv(result, folder / "calls.csv")
    summary = {
        "scenario": result.options.scenario_name(),
        "numbers": asdict(numbers),
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in result.checks],
        "doctors": result.meta.doctors,
        "speed": result.options.speed,
        "scale": result.options.scale,
        "replay_wall_s": result.meta.replay_wall_s,
        "accounts": result.meta.accounts,
    }
    (folder / "summary.json").write_text(json.dumps(_json_safe(summary), indent=1))
    return path


def write_calls_csv(result: RunResult, path: Path) -> None:
    """One row per call: ids, times and the server's outcome (for analysis beyond the report).
    Times: epoch ms of the server; durations ms; distance m; ETA s."""
    import csv

    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            ["key", "call_id", "created_ms", "status_at_end", "offers", "first_offer_ms", "accept_ms",
             "distance_m", "eta_s", "escalated_before_offer"]
        )  # fmt: skip
        for log in result.recorder.calls.values():
            record = result.server.get(log.call_id or "")
            if record is None or record.call is None:
                out.writerow([log.key, log.call_id or "", "", log.error or "not created"])
                continue
            t = call_timing(record)
            created_ms = round(record_created_s(record) * 1000)
            out.writerow(
                [log.key, log.call_id, created_ms, status_at_end(record), len(record.offers),
                 t.first_offer_ms, t.accept_ms, t.distance_m, t.eta_s, int(t.escalated_first)]
            )  # fmt: skip


def _json_safe(value: Any) -> Any:
    """NaN (no samples) as null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value
