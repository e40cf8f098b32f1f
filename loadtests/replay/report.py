"""The replay report: ``report.md``, ``summary.json`` and PNG charts (matplotlib, Agg) in the report folder.

Every number is derived here from two sources: the server's record of each call (its event history
and offers, read over REST after the run: server timestamps, so no clock skew) and what the
simulated clients measured themselves (chat and tracking latency, offsets, the server's
``/metrics``). Field by field, ``docs/replay.md`` explains them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loadtests.replay.cleanup import END_REASON
from loadtests.replay.collect import ServerCall
from loadtests.replay.monitor import DOCTOR_STATES
from loadtests.replay.runner import RunResult
from loadtests.replay.stats import Summary, fmt

TTFO_TARGET_MS = 50.0
"""The issue's target for time to first offer, p99, milliseconds."""


@dataclass(frozen=True)
class Numbers:
    """The report's numbers. Durations in milliseconds unless named ``_s``; distances in metres."""

    created: int
    create_failed: int
    assigned: int
    escalated: int
    escalated_before_offer: int
    escalated_at_end: int
    relaunched: int
    cancelled: int
    completed: int
    open_at_end: int
    time_to_first_offer_ms: Summary
    time_to_accept_ms: Summary
    distance_m: Summary
    eta_s: Summary
    offers_per_call: Summary
    offer_outcomes: dict[str, int]
    chat_latency_ms: Summary
    tracking_latency_ms: Summary
    sos_raised: int
    sos_ack_ms: Summary
    cpu_percent: Summary
    rss_mb: Summary
    client_loop_lag_ms: Summary
    """The replay process's own event-loop lag: large values mean the load generator was saturated."""
    client_cpu_percent: float
    """The replay process's CPU over the replay and the drain, % of one core."""
    utilisation_on_call: float
    """Mean share of on-shift doctors (not offline) who were offered or on a call."""
    fixes_per_wall_s: float
    calls_per_wall_s: float
    checks_passed: bool


def status_at_end(record: ServerCall) -> str:
    """The call's status when the run ended: its status, or for a call the replay cancelled after the
    drain (still open), the status it had then."""
    assert record.call is not None
    if record.call.get("cancel_reason") == END_REASON and record.events:
        return str(record.events[-1]["from_status"])
    return str(record.call["status"])


def _first(events: list[dict[str, Any]], to: str) -> dict[str, Any] | None:
    return next((e for e in events if e["to_status"] == to), None)


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One call's dispatch timing from its server record (ms, m, s); None where it does not apply.
    ``first_offer_ms`` counts only a first offer made in the first search round: a call that escalated
    before any offer (nobody in range) is counted in ``escalated_first`` instead, since its first offer
    waited for a dispatcher."""

    first_offer_ms: float | None
    accept_ms: float | None
    distance_m: float | None
    eta_s: float | None
    escalated_first: bool


def call_timing(record: ServerCall) -> CallTiming:
    """The :class:`CallTiming` of a call read from the server (``record.call`` must be set)."""
    assert record.call is not None
    created = _first(record.events, "created")
    created_at = float(created["at"]) if created else float(record.call["created_at"])
    escalated = _first(record.events, "escalated")
    first_offer = min((float(o["created_at"]) for o in record.offers), default=None)
    escalated_first = escalated is not None and (first_offer is None or float(escalated["at"]) < first_offer)
    accepted = sorted((o for o in record.offers if o["outcome"] == "accepted"), key=lambda o: o["decided_at"])
    first = accepted[0] if accepted else None
    return CallTiming(
        first_offer_ms=None if first_offer is None or escalated_first else first_offer - created_at,
        accept_ms=None if first is None else float(first["decided_at"]) - created_at,
        distance_m=None if first is None or first["distance_m"] is None else float(first["distance_m"]),
        eta_s=None if first is None or first["eta_s"] is None else float(first["eta_s"]),
        escalated_first=escalated_first,
    )


def record_created_s(record: ServerCall) -> float:
    """When the server created the call, epoch seconds (its ``created`` event)."""
    assert record.call is not None
    created = _first(record.events, "created")
    return (float(created["at"]) if created else float(record.call["created_at"])) / 1000.0


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def compute(result: RunResult) -> Numbers:
    """Derive the report's numbers from a run."""
    rec, records = result.recorder, [r for r in result.server.values() if r.call is not None]
    statuses = Counter(status_at_end(r) for r in records)
    timings = [call_timing(r) for r in records]
    ttfo = _present(t.first_offer_ms for t in timings)
    tta = _present(t.accept_ms for t in timings)
    distance = _present(t.distance_m for t in timings)
    eta = _present(t.eta_s for t in timings)
    per_call = [float(len(r.offers)) for r in records]
    outcomes: Counter[str] = Counter(str(o["outcome"]) for r in records for o in r.offers)
    cpu = _cpu_percent(result)
    rss = [s.rss_bytes / 1e6 for s in rec.server]
    wall = max(result.meta.replay_wall_s + result.meta.drain_wall_s, 1e-9)
    created_n = sum(1 for c in rec.calls.values() if c.call_id is not None)
    sos_ack = [rec.sos_acked_ms[k] - v for k, v in rec.sos_raised_ms.items() if k in rec.sos_acked_ms]
    return Numbers(
        created=created_n,
        create_failed=sum(1 for c in rec.calls.values() if c.call_id is None),
        assigned=sum(1 for r in records if _first(r.events, "assigned")),
        escalated=sum(1 for r in records if _first(r.events, "escalated")),
        escalated_before_offer=sum(1 for t in timings if t.escalated_first),
        escalated_at_end=statuses.get("escalated", 0),
        relaunched=sum(
            1
            for r in records
            for e in r.events
            if (e["from_status"], e["to_status"]) == ("escalated", "searching")
        ),
        cancelled=statuses.get("cancelled", 0),
        completed=statuses.get("completed", 0),
        open_at_end=sum(n for s, n in statuses.items() if s not in ("completed", "cancelled", "escalated")),
        time_to_first_offer_ms=Summary.of(ttfo),
        time_to_accept_ms=Summary.of(tta),
        distance_m=Summary.of(distance),
        eta_s=Summary.of(eta),
        offers_per_call=Summary.of(per_call),
        offer_outcomes=dict(outcomes),
        chat_latency_ms=Summary.of(rec.chat_latency_ms),
        tracking_latency_ms=Summary.of(rec.tracking_latency_ms),
        sos_raised=len(rec.sos_raised_ms),
        sos_ack_ms=Summary.of(sos_ack),
        cpu_percent=Summary.of(cpu),
        rss_mb=Summary.of(rss),
        client_loop_lag_ms=Summary.of(rec.loop_lag_ms),
        client_cpu_percent=100.0 * result.meta.client_cpu_s / wall,
        utilisation_on_call=_utilisation(result),
        fixes_per_wall_s=rec.fixes_sent / wall,
        calls_per_wall_s=created_n / max(result.meta.replay_wall_s, 1e-9),
        checks_passed=all(c.passed for c in result.checks),
    )


CPU_WINDOW = 5
"""Samples (about a second apart) per CPU figure: a poll answered late would otherwise show its
CPU seconds over too short a wall time (and a process with threads, such as SQLite's, can exceed
100 %: the figure is % of one core)."""


def _cpu_percent(result: RunResult) -> list[float]:
    """Server CPU, % of one core, over sliding windows of ``CPU_WINDOW`` samples (one per sample
    after the first ``CPU_WINDOW``)."""
    samples = result.recorder.server
    return [
        100.0 * (b.cpu_s - a.cpu_s) / (b.wall_s - a.wall_s)
        for a, b in zip(samples, samples[CPU_WINDOW:], strict=False)
        if b.wall_s > a.wall_s
    ]


def _utilisation(result: RunResult) -> float:
    shares = []
    for sample in result.recorder.utilisation:
        on_shift = sum(n for s, n in sample.counts.items() if s != "offline")
        if on_shift:
            shares.append((sample.counts.get("on_call", 0) + sample.counts.get("offered", 0)) / on_shift)
    return sum(shares) / len(shares) if shares else math.nan


# --- charts ---------------------------------------------------------------------------------------------


def _times(values: Iterable[float], tz: ZoneInfo) -> list[float]:
    """Epoch seconds as matplotlib date numbers of the local wall clock in ``tz``."""
    import matplotlib.dates as mdates

    return [float(mdates.date2num(dt.datetime.fromtimestamp(v, tz).replace(tzinfo=None))) for v in values]


def write_charts(result: RunResult, folder: Path) -> list[str]:
    """Draw the charts into ``folder``; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    tz = ZoneInfo(result.options.tz)
    rec = result.recorder
    written = []
    label = f"replayed time ({result.options.tz})"

    if rec.utilisation:
        fig, ax = plt.subplots(figsize=(9, 3.6), dpi=90)
        x = _times((s.replay_s for s in rec.utilisation), tz)
        ax.stackplot(
            x,
            *[[s.counts.get(state, 0) for s in rec.utilisation] for state in DOCTOR_STATES],
            labels=[s.replace("_", " ") for s in DOCTOR_STATES],
            colors=["#d62728", "#ff7f0e", "#2ca02c", "#9ecae1", "#dddddd"],
        )
        ax.set_ylabel("doctors")
        ax.set_xlabel(label)
        ax.set_title("Doctors by state")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        ax.legend(loc="upper left", fontsize=8, ncol=5)
        fig.tight_layout()
        fig.savefig(folder / "utilisation.png")
        plt.close(fig)
        written.append("utilisation.png")

    if len(rec.server) > CPU_WINDOW:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 4.6), dpi=90, sharex=True)
        cpu = _cpu_percent(result)
        top.plot(_times((s.replay_s for s in rec.server[CPU_WINDOW:]), tz)[: len(cpu)], cpu, linewidth=1)
        top.set_ylabel(f"CPU % ({CPU_WINDOW} s mean)")
        top.set_title("Server process")
        x = _times((s.replay_s for s in rec.server), tz)
        bottom.plot(x, [s.rss_bytes / 1e6 for s in rec.server], color="#9467bd", linewidth=1)
        bottom.set_ylabel("resident MB")
        bottom.set_xlabel(label)
        bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        fig.tight_layout()
        fig.savefig(folder / "server.png")
        plt.close(fig)
        written.append("server.png")

    series = _latency_series(result)
    if any(series.values()):
        fig, ax = plt.subplots(figsize=(9, 3.6), dpi=90)
        for name, values in series.items():
            if values:
                ordered = sorted(max(v, 0.01) for v in values)
                ax.plot(
                    ordered,
                    [(i + 1) / len(ordered) for i in range(len(ordered))],
                    label=f"{name} (n={len(values)})",
                )
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_ylabel("share of samples")
        ax.set_title("Latency distributions (cumulative)")
        ax.axvline(TTFO_TARGET_MS, color="grey", linestyle=":", linewidth=1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "latency.png")
        plt.close(fig)
        written.append("latency.png")

    points = [
        (record_created_s(r), t.first_offer_ms)
        for r in result.server.values()
        if r.call is not None and (t := call_timing(r)).first_offer_ms is not None
    ]
    if points:
        fig, ax = plt.subplots(figsize=(9, 3.2), dpi=90)
        ax.scatter(_times((p[0] for p in points), tz), [max(p[1], 0.1) for p in points], s=6, color="#1f77b4")
        ax.set_yscale("log")
        ax.axhline(TTFO_TARGET_MS, color="grey", linestyle=":", linewidth=1)
        ax.set_ylabel("ms (log scale)")
        ax.set_xlabel("wall clock of the server (UTC)")
        ax.set_title("Time to first offer of each call, by the time it was created")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        fig.tight_layout()
        fig.savefig(folder / "dispatch.png")
        plt.close(fig)
        written.append("dispatch.png")

    created = [c.replay_ts for c in rec.calls.values() if c.call_id is not None]
    if created:
        fig, ax = plt.subplots(figsize=(9, 3.0), dpi=90)
        ax.hist(_times(created, tz), bins=max(1, min(60, len(created) // 5)), color="#8c564b")
        ax.set_ylabel("calls")
        ax.set_xlabel(label)
        ax.set_title("Calls created")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        fig.tight_layout()
        fig.savefig(folder / "calls.png")
        plt.close(fig)
        written.append("calls.png")
    return written


def _latency_series(result: RunResult) -> dict[str, list[float]]:
    timings = [call_timing(r) for r in result.server.values() if r.call is not None]
    return {
        "time to first offer": _present(t.first_offer_ms for t in timings),
        "time to acceptance": _present(t.accept_ms for t in timings),
        "chat delivery": result.recorder.chat_latency_ms,
        "tracking delivery": result.recorder.tracking_latency_ms,
    }


# --- Markdown -----------------------------------------------------------------------------------------


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
