"""``tot-dispatch replay``: the click command (mounted on the project's CLI by ``server/cli.py``).

Imports of the replay itself happen when the command runs, so ``tot-dispatch --help`` stays fast and
works without the ``[replay]`` extra; the command checks the extra first and says how to install it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from loadtests.replay.options import DEFAULT_CALLS, DEFAULT_TRACES, DEFAULT_TZ, Behaviour, ReplayOptions

REPLAY_EXTRA = ("httpx", "tqdm", "matplotlib")
"""The ``[replay]`` extra of pyproject.toml: REST client, progress bars, report charts. matplotlib is
imported only when the report is drawn, at the end of a run: checked up front so a run is not lost."""


class MissingExtra(click.ClickException):
    """The ``[replay]`` extra is not installed (exit status 2, like other bad input)."""

    exit_code = 2


def missing_extra() -> list[str]:
    """The modules of :data:`REPLAY_EXTRA` that cannot be imported here."""
    return [name for name in REPLAY_EXTRA if importlib.util.find_spec(name) is None]


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    a = float(low)
    return (a, float(high) if high else a)


@click.command("replay")
@click.option(
    "--server", default="http://127.0.0.1:8000", show_default=True, help="Base URL of a running server."
)
@click.option(
    "--traces",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_TRACES,
    help="Trace CSV: id,ts,lat,lon[,occupied] (default: the cabspotting fleet day).",
)
@click.option(
    "--calls",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CALLS,
    help="Call CSV: id,ts,lat,lon (default: the cabspotting pickups).",
)
@click.option(
    "--from",
    "start",
    default="08:00",
    show_default=True,
    help="Slice start: time of day HH:MM in --tz on the traces' first day, or an ISO-8601 time.",
)
@click.option(
    "--tz", default=DEFAULT_TZ, show_default=True, help="Time zone of --from and of the report's clock."
)
@click.option(
    "--hours", type=float, default=1.0, show_default=True, help="Length of the slice, replay hours."
)
@click.option(
    "--speed",
    type=float,
    default=60.0,
    show_default=True,
    help="Replay seconds per wall second (60: one hour per minute).",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--scale",
    type=int,
    default=1,
    show_default=True,
    help="Clone the fleet and the calls N times with small jitter and new ids.",
)
@click.option(
    "--jitter-m", type=float, default=250.0, show_default=True, help="Clones: largest shift, metres."
)
@click.option(
    "--jitter-s", type=float, default=120.0, show_default=True, help="Clones: largest time shift, seconds."
)
@click.option("--doctors", "limit_doctors", type=int, default=None, help="Replay only the first N cabs.")
@click.option("--max-calls", "limit_calls", type=int, default=None, help="Replay only the first N calls.")
@click.option(
    "--fleet-calls",
    is_flag=True,
    help="Only the calls whose id is a replayed cab's (its pickups): a --doctors subset keeps its demand.",
)
@click.option("--patients", type=int, default=50, show_default=True, help="Patient accounts the calls share.")
@click.option(
    "--accept",
    "accept_share",
    type=float,
    default=0.9,
    show_default=True,
    help="Probability that a doctor accepts an offer.",
)
@click.option(
    "--decline",
    "decline_share",
    type=float,
    default=0.7,
    show_default=True,
    help="Of the offers not accepted, the share declined (the rest expire).",
)
@click.option(
    "--accept-delay",
    default="0.2-2",
    show_default=True,
    help="Wall seconds a doctor takes to answer an offer, LOW-HIGH.",
)
@click.option(
    "--visit-minutes", default="15-30", show_default=True, help="Visit duration, replay minutes, LOW-HIGH."
)
@click.option(
    "--drive-kmh", type=float, default=30.0, show_default=True, help="Driving speed to the patient."
)
@click.option(
    "--cancel",
    "cancel_share",
    type=float,
    default=0.03,
    show_default=True,
    help="Share of patients who cancel.",
)
@click.option(
    "--sos",
    "sos_share",
    type=float,
    default=0.01,
    show_default=True,
    help="Share of patients who raise an SOS emergency.",
)
@click.option("--dispatchers", type=int, default=2, show_default=True, help="Connected dispatcher consoles.")
@click.option(
    "--relaunch",
    "relaunch_share",
    type=float,
    default=0.5,
    show_default=True,
    help="Share of escalated calls a dispatcher re-launches.",
)
@click.option(
    "--drain-minutes",
    type=float,
    default=60.0,
    show_default=True,
    help="After the slice, at most this many replay minutes for open calls to finish.",
)
@click.option(
    "--admin",
    default="admin@demo.tot:demo-admin-pass",
    show_default=True,
    help="Admin LOGIN:PASSWORD (verifies the doctors).",
)
@click.option(
    "--dispatcher",
    default="dispatcher@demo.tot:demo-dispatcher-pass",
    show_default=True,
    help="Dispatcher LOGIN:PASSWORD (else the admin acts as dispatcher).",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Report folder (default loadtests/reports/<date>-<scenario>/).",
)
@click.option("--scenario", default=None, help="Scenario name in the default report folder's name.")
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Cached accounts file (default: accounts.json in the report folder).",
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the server to become healthy.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@click.option(
    "--setup-only", is_flag=True, help="Only make and cache the accounts (a big run's set-up, ahead of it)."
)
def replay(
    server: str,
    traces: Path,
    calls: Path,
    start: str,
    tz: str,
    hours: float,
    speed: float,
    seed: int,
    scale: int,
    jitter_m: float,
    jitter_s: float,
    limit_doctors: int | None,
    limit_calls: int | None,
    fleet_calls: bool,
    patients: int,
    accept_share: float,
    decline_share: float,
    accept_delay: str,
    visit_minutes: str,
    drive_kmh: float,
    cancel_share: float,
    sos_share: float,
    dispatchers: int,
    relaunch_share: float,
    drain_minutes: float,
    admin: str,
    dispatcher: str,
    report_dir: Path | None,
    scenario: str | None,
    accounts_file: Path | None,
    wait_s: float,
    progress: bool,
    setup_only: bool,
) -> None:
    """Replay real GPS traces as doctors and real pickups as patient calls against a running server,
    through its public REST and WebSocket interfaces, then write the dispatch report.

    Exit status 0 when every integrity check passes, 1 when one fails, 2 for bad input.
    """
    if missing := missing_extra():
        raise MissingExtra(
            f"the replay needs the [replay] extra (missing {', '.join(missing)}): "
            "pip install -e '.[replay]' in a source checkout"
        )
    import asyncio

    from loadtests.replay.accounts import AccountSetupError
    from loadtests.replay.inputs import InputError
    from loadtests.replay.numbers import compute
    from loadtests.replay.report import headline, write_report
    from loadtests.replay.runner import prepare_accounts, run_replay

    for name, value in (
        ("--accept", accept_share),
        ("--decline", decline_share),
        ("--cancel", cancel_share),
        ("--sos", sos_share),
        ("--relaunch", relaunch_share),
    ):
        if not 0.0 <= value <= 1.0:
            raise click.BadParameter(f"{value} is not a share in [0, 1]", param_hint=name)
    if speed <= 0 or hours <= 0 or scale < 1:
        raise click.UsageError("--speed and --hours must be positive, --scale at least 1")
    try:
        delay, visit = _range(accept_delay), _range(visit_minutes)
    except ValueError as exc:
        raise click.UsageError(f"a range is LOW-HIGH in numbers: {exc}") from None
    admin_login, _, admin_pass = admin.partition(":")
    disp_login, _, disp_pass = dispatcher.partition(":")
    options = ReplayOptions(
        server=server.rstrip("/"),
        traces=traces,
        calls=calls,
        start=start,
        tz=tz,
        hours=hours,
        speed=speed,
        seed=seed,
        scale=scale,
        jitter_m=jitter_m,
        jitter_s=jitter_s,
        limit_doctors=limit_doctors,
        limit_calls=limit_calls,
        fleet_calls=fleet_calls,
        patients=patients,
        admin=(admin_login, admin_pass),
        dispatcher=(disp_login, disp_pass),
        report_dir=report_dir,
        scenario=scenario,
        accounts_file=accounts_file,
        replay_drain_min=drain_minutes,
        progress=progress,
        wall_server_wait_s=wait_s,
        behaviour=Behaviour(
            accept_share=accept_share,
            decline_share=decline_share,
            wall_accept_delay_s=delay,
            replay_visit_min=visit,
            drive_kmh=drive_kmh,
            cancel_share=cancel_share,
            sos_share=sos_share,
            dispatchers=max(dispatchers, 1),
            relaunch_share=relaunch_share,
        ),
    )
    try:
        if setup_only:
            counts = asyncio.run(prepare_accounts(options))
            click.echo("accounts ready: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            return
        result = asyncio.run(run_replay(options))
    except (InputError, ValueError) as exc:
        click.echo(f"tot-dispatch replay: {exc}", err=True)
        sys.exit(2)
    except (AccountSetupError, TimeoutError) as exc:
        click.echo(f"tot-dispatch replay: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("tot-dispatch replay: interrupted", err=True)
        sys.exit(130)
    path = write_report(result)
    numbers = compute(result)
    click.echo(headline(result, numbers))
    for check in result.checks:
        click.echo(f"  {check.verdict}  {check.name}: {check.detail}")
    click.echo(f"report: {path}")
    sys.exit(0 if numbers.checks_passed else 1)
