"""The replay report's PNG charts (matplotlib with the Agg backend, imported when drawing)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from zoneinfo import ZoneInfo

from loadtests.replay.monitor import DOCTOR_STATES
from loadtests.replay.numbers import (
    CPU_WINDOW,
    TTFO_TARGET_MS,
    call_timing,
    cpu_percent,
    present,
    record_created_s,
)
from loadtests.replay.runner import RunResult


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
        cpu = cpu_percent(result)
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
        "time to first offer": present(t.first_offer_ms for t in timings),
        "time to acceptance": present(t.accept_ms for t in timings),
        "chat delivery": result.recorder.chat_latency_ms,
        "tracking delivery": result.recorder.tracking_latency_ms,
    }
