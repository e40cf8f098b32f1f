"""Everything a replay can be told: inputs, the slice of the day, speed, scale, behaviour shares and delays.

Units are in the names: ``_s`` seconds, ``_ms`` milliseconds, ``_m`` metres, ``_kmh`` km/h. Two clocks
are involved (see :mod:`loadtests.replay.clock`): *replay* durations (``replay_``, ``_min`` of the day
being replayed, compressed by ``speed``) and *wall* durations (``wall_``), which race the server's own
timers (offer deadlines, SOS repeats) and are therefore never compressed.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("TOT_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
"""The folder of the real datasets (``../shared/data`` beside the checkout; ``TOT_SHARED_DATA`` names
another, e.g. for a checkout cloned elsewhere)."""
DEFAULT_DATA = SHARED_DATA / "cabspotting-sf-fleet-1day"
DEFAULT_TRACES = DEFAULT_DATA / "cabspotting_fleet_2008-05-28.csv"
DEFAULT_CALLS = DEFAULT_DATA / "pickups_2008-05-28.csv"
DEFAULT_TZ = "America/Los_Angeles"
"""The default data's local time zone (San Francisco): ``--from`` is a time of day there."""
DEFAULT_REPORTS = REPO_ROOT / "loadtests" / "reports"

DEMO_ADMIN = ("admin@demo.tot", "demo-admin-pass")
DEMO_DISPATCHER = ("dispatcher@demo.tot", "demo-dispatcher-pass")


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the simulated people act. Shares are probabilities in [0, 1]."""

    accept_share: float = 0.9
    """Share of offers a doctor accepts."""
    decline_share: float = 0.7
    """Of the offers not accepted, the share declined; the rest are left to expire."""
    wall_accept_delay_s: tuple[float, float] = (0.2, 2.0)
    """Wall seconds a doctor takes to answer an offer (uniform in the range); not compressed, because
    the server's offer deadline (``TOT_OFFER_TIMEOUT``) is wall time."""
    drive_kmh: float = 30.0
    """Average driving speed to the patient, km/h of replay time (the server's ETA default)."""
    road_factor: float = 1.4
    """Road distance / straight-line distance: the drive lasts ``distance x factor / speed``."""
    replay_visit_min: tuple[float, float] = (15.0, 30.0)
    """Visit duration, replay minutes (uniform in the range)."""
    replay_drive_fix_s: float = 10.0
    """Replay seconds between two positions sent while driving (at least ``WALL_MIN_FIX_GAP_S`` wall)."""
    cancel_share: float = 0.03
    """Share of patients who cancel their call."""
    replay_cancel_after_min: tuple[float, float] = (0.5, 10.0)
    """When a cancelling patient cancels, replay minutes after creating the call."""
    sos_share: float = 0.01
    """Share of patients who raise an SOS ``emergency`` once their doctor is assigned."""
    rating_range: tuple[int, int] = (3, 5)
    """Scores patients give (uniform integers)."""
    dispatchers: int = 2
    """Dispatcher consoles connected to ``dispatch`` and ``sos``."""
    wall_sos_ack_delay_s: tuple[float, float] = (1.0, 4.0)
    """Wall seconds before a dispatcher acknowledges an SOS."""
    relaunch_share: float = 0.5
    """Share of escalated calls a dispatcher re-launches (the rest are left escalated)."""
    wall_relaunch_delay_s: tuple[float, float] = (1.0, 3.0)
    """Wall seconds before a dispatcher re-launches an escalated call."""
    replay_offline_gap_min: float = 10.0
    """A gap longer than this (replay minutes) in a trace takes the doctor offline until the next fix."""
    wall_keepalive_s: float = 10.0
    """A doctor not on a call re-sends its position at least this often (wall seconds), so the server,
    which drops doctors silent for 60 s, keeps it online at any replay speed."""


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """One replay run."""

    server: str = "http://127.0.0.1:8000"
    traces: Path = DEFAULT_TRACES
    calls: Path = DEFAULT_CALLS
    start: str = "08:00"
    """Time of day (``HH:MM[:SS]`` in ``tz``, on the traces' first day) or a full ISO-8601 time."""
    tz: str = DEFAULT_TZ
    hours: float = 1.0
    speed: float = 60.0
    """Replay seconds per wall second: 60 replays one hour in one minute."""
    seed: int = 7
    scale: int = 1
    """Clone the fleet and the calls this many times (1: the data as it is)."""
    jitter_m: float = 250.0
    """Largest shift (metres, north and east each) of a clone from its original."""
    jitter_s: float = 120.0
    """Largest time shift (seconds) of a clone from its original."""
    limit_doctors: int | None = None
    """Replay only the first N cabs (by id), for small runs."""
    limit_calls: int | None = None
    """Replay only the first N calls of the slice."""
    fleet_calls: bool = False
    """Keep only the calls whose ``id`` is a replayed vehicle's (cabspotting pickups carry their cab's
    id): with ``limit_doctors``, the subset keeps its own demand, and doctors per call stay the data's."""
    patients: int = 50
    """Patient accounts; calls are spread over them round-robin (one app per call)."""
    specialty: str = "therapist"
    admin: tuple[str, str] = DEMO_ADMIN
    dispatcher: tuple[str, str] = DEMO_DISPATCHER
    password: str = "replay-pass-1"
    """Password of every account the replay creates."""
    email_domain: str = "replay.tot"
    report_dir: Path | None = None
    """Where the report goes (default ``loadtests/reports/<date>-<scenario>/``)."""
    accounts_file: Path | None = None
    """Cached accounts (default ``accounts.json`` in the report folder)."""
    scenario: str | None = None
    """Name of the run in the report folder's name (default from speed, hours and scale)."""
    replay_drain_min: float = 60.0
    """After the slice: at most this many replay minutes for open calls to finish."""
    progress: bool = True
    wall_server_wait_s: float = 60.0
    """How long to wait for the server's health check to pass before giving up."""
    behaviour: Behaviour = field(default_factory=Behaviour)

    def scenario_name(self) -> str:
        """``sf-1h-x60`` style: the slice length, the speed and the scale."""
        if self.scenario:
            return self.scenario
        hours = f"{self.hours:g}h"
        scale = f"-scale{self.scale}" if self.scale != 1 else ""
        return f"replay-{hours}-x{self.speed:g}{scale}"

    def resolved_report_dir(self, today: dt.date | None = None) -> Path:
        """The report folder: ``report_dir`` or ``loadtests/reports/<date>-<scenario>/``."""
        if self.report_dir is not None:
            return self.report_dir
        day = (today or dt.date.today()).isoformat()
        return DEFAULT_REPORTS / f"{day}-{self.scenario_name()}"
