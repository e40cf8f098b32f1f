"""The ``tot-dispatch`` command line (click).

``serve`` runs the server; ``migrate`` moves the database schema; ``users create`` makes accounts
(the only way to create admins and dispatchers), ``users disable|enable|set-role`` change them and
revoke their tokens; ``zones import`` loads service zones from GeoJSON;
``demo`` migrates the embedded database and serves it with demo accounts; ``replay`` replays a real
city against a running server. A bad setting stops any command with one line naming it, and exit status 2.

``replay`` (and the demo's city) come from ``loadtests/replay``, which is above ``server`` in the layer
order, is not part of the wheel and needs the ``[replay]`` extra (httpx, tqdm, matplotlib): it is mounted
lazily (:class:`_Commands`), so the server and its other commands neither import nor require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import click
import uvicorn

from server.demo import DEMO_LOG_FILE, announce_replay_end, demo_banner
from server.settings import MIN_SECRET_KEY_LENGTH, Settings, SettingsError, load_settings
from server.ws.uvicorn_protocol import DirectTextProtocol

if TYPE_CHECKING:
    from server.demo_fakes import DemoFakes

DEMO_ACCOUNTS = (
    ("admin", "admin@demo.tot", "demo-admin-pass", "Demo Admin"),
    ("dispatcher", "dispatcher@demo.tot", "demo-dispatcher-pass", "Demo Dispatcher"),
    ("doctor", "doctor@demo.tot", "demo-doctor-pass", "Demo Doctor"),
    ("patient", "patient@demo.tot", "demo-patient-pass", "Demo Patient"),
)
"""The demo's people to sign in as. The doctor is a verified therapist whom the replay does not drive:
open /doctor as them and /app as the patient in another browser to play a visit by hand."""


DEMO_KEY_FILE = Path("tot-demo.key")
DEMO_VAPID_FILE = Path("tot-demo-vapid.key")
"""Where the demo keeps the key it generated when ``TOT_SECRET_KEY`` is not set (the working directory,
beside its database): its tokens, and the demo city's cached sign-ins, survive a restart of the demo."""


def _fail(message: str) -> NoReturn:
    click.echo(f"tot-dispatch: {message}", err=True)
    sys.exit(2)


def _settings(*, demo: bool = False, require_secret: bool = True) -> Settings:
    try:
        return load_settings(demo=demo, require_secret=require_secret)
    except SettingsError as exc:
        _fail(str(exc))


GC_THRESHOLDS = (100_000, 10, 10)


def uvicorn_ws_options(max_frame_bytes: int, event_loop: str = "uvloop") -> dict[str, Any]:
    """uvicorn's event loop, WebSocket and logging settings for the server (``event_loop``:
    ``uvloop`` or ``asyncio``, TOT_EVENT_LOOP); ``loadtests/bare_endpoint.py`` runs under the very
    same ones, so the ingest benchmark compares like with like."""
    return {
        # uvloop (libuv) moves the sockets' reads and writes out of Python: with 10,000 doctors at
        # 1 fix/s the server's CPU for ingest fell from 70% to 48% of a core, and the dispatch
        # benchmark's create -> offer p50 from seconds (a saturated loop) to ~50 ms
        # (loadtests/bench_ingest.py, loadtests/bench_dispatch.py; docs/benchmarks.md).
        "loop": event_loop,
        # httptools parses HTTP/1.1 in C when installed (uvicorn's "auto").
        "http": "auto",
        # sans-I/O websockets: the same protocol, 25-30% less CPU per frame than the legacy
        # implementation measured here (docs/operations.md), and not deprecated; subclassed so that
        # the gateway takes location fixes without a queue and a task step each
        # (server/ws/uvicorn_protocol.py; the bare endpoint never sets the direct path: stock behaviour).
        "ws": DirectTextProtocol,
        # Deflate multiplies an idle connection's memory by ~4 and cut peak ingest by 28% here.
        "ws_per_message_deflate": False,
        # Hard limit: beyond it the WebSocket layer closes with 1009; between the soft limit
        # (TOT_WS_MAX_FRAME_BYTES) and this, the gateway answers frame_too_large and keeps the socket.
        "ws_max_size": 4 * max_frame_bytes,
        "log_config": None,
        "access_log": False,
    }


def _serve(settings: Settings, host: str | None, port: int | None, log_file: Path | None = None) -> None:
    """Run the server until interrupted; its log goes to stderr, or to ``log_file`` (errors on stderr
    too)."""
    from server.app import create_app
    from server.http_protocol import header_timeout_protocol
    from server.logs import configure_logging
    from server.ws.asgi import asgi_app

    try:
        configure_logging(settings.log_level, settings.log_format, log_file)
    except OSError as exc:
        _fail(f"cannot write the log file {log_file}: {exc}")
    # The cyclic garbage collector's young generation is collected every 100,000 allocations instead
    # of 700. With 5,000 connections (~125 tracked objects each) at 4 fixes/s, the default let
    # short-lived objects (a doctor's latest fix lives 250 ms) survive into the old generation, and a
    # full collection ran every 1-2 s for 60-450 ms: 20-25% of the CPU, and as long a stall of every
    # socket. Measured with loadtests/bench_ingest.py: GC under 1% of the CPU, no stall over ~50 ms.
    # Reference cycles are still collected, a little later.
    gc.set_threshold(*GC_THRESHOLDS)
    options = uvicorn_ws_options(settings.ws_max_frame_bytes, settings.event_loop)
    uvicorn.run(
        asgi_app(create_app(settings)),
        host=host or settings.host,
        port=port or settings.port,
        lifespan="on",
        **{
            **options,
            # httptools with a deadline on request headers (server/http_protocol.py): uvicorn has none.
            "http": header_timeout_protocol(settings.http_header_timeout_s),
            "timeout_keep_alive": settings.http_keep_alive_timeout_s,
            # X-Forwarded-For / -Proto are believed only from these peers (the proxy in front,
            # deploy/nginx/nginx.conf): the per-address limits then count the real client.
            "proxy_headers": True,
            "forwarded_allow_ips": settings.forwarded_allow_ips,
        },
    )


REPLAY_INSTALL = "pip install -e '.[replay]' in a source checkout (scripts/demo and scripts/test do)"
"""How to get the replay: its code (``loadtests``, not in the wheel) and its extra."""


def _find_replay() -> None:
    """Make ``loadtests`` importable when this is a source checkout. An editable install exposes only the
    wheel's packages (pyproject.toml leaves ``loadtests`` out), and a console script does not see the
    working directory, so ``tot-dispatch replay`` would not find the replay sitting beside ``server/``.
    Appended, not prepended: installed packages keep precedence. In a wheel install there is no such
    folder and nothing changes."""
    root = Path(__file__).resolve().parent.parent
    if importlib.util.find_spec("loadtests") is None and (root / "loadtests" / "replay" / "cli.py").is_file():
        sys.path.append(str(root))


def _replay_command() -> click.Command:
    """The ``replay`` command, imported when asked for. Without ``loadtests`` (an installed wheel), a
    stand-in that says how to get it; a missing extra is reported by the command itself when it runs."""
    _find_replay()
    try:
        from loadtests.replay.cli import replay
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "loadtests":
            raise

        @click.command("replay", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
        def unavailable() -> None:
            """Replay a real city against a running server (not installed here)."""
            _fail(f"the replay command is not installed: {REPLAY_INSTALL}")

        return unavailable
    return replay


class _Commands(click.Group):
    """The command group, with ``replay`` mounted lazily (module docstring)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), "replay"})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "replay":
            return _replay_command()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands)
@click.version_option(package_name="tot-dispatch")
def main() -> None:
    """TOT Dispatch: real-time dispatch of home-visit doctors."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default TOT_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default TOT_PORT, 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the server with the settings from the environment."""
    _serve(_settings(), host, port)


@main.command()
@click.argument("direction", type=click.Choice(["upgrade", "downgrade"]), default="upgrade")
@click.argument("revision", default=None, required=False)
def migrate(direction: str, revision: str | None) -> None:
    """Migrate TOT_DATABASE_URL up to REVISION (default head) or down to it (default base)."""
    from migrations import runner as migrations

    settings = _settings(require_secret=False)
    if direction == "upgrade":
        migrations.upgrade(settings.database_url, revision or "head")
    else:
        migrations.downgrade(settings.database_url, revision or "base")
    click.echo(f"database at {direction} target {revision or ('head' if direction == 'upgrade' else 'base')}")


@main.group()
def users() -> None:
    """Manage accounts."""


@users.command("create")
@click.option(
    "--role", required=True, type=click.Choice(["patient", "doctor", "clinic_admin", "dispatcher", "admin"])
)
@click.option("--email", default=None)
@click.option("--phone", default=None, help="E.164, e.g. +79991234567")
@click.option("--name", "full_name", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--licence", default=None, help="Doctors: licence number.")
@click.option("--specialty", "specialties", multiple=True, help="Doctors: a specialty code (repeatable).")
@click.option("--verified/--unverified", default=False, help="Doctors: create already verified.")
def create_user(
    role: str,
    email: str | None,
    phone: str | None,
    full_name: str,
    password: str,
    licence: str | None,
    specialties: tuple[str, ...],
    verified: bool,
) -> None:
    """Create an account of any role (the only way to create staff accounts)."""
    from server.accounts import AccountError, NewAccount, create_account

    settings = _settings(require_secret=False)
    account = NewAccount(
        role=role,
        email=email,
        phone=phone,
        full_name=full_name,
        password=password,
        licence_number=licence,
        specialties=list(specialties),
        verified=verified,
    )
    try:
        user_id = asyncio.run(create_account(settings.database_url, account))
    except AccountError as exc:
        _fail(str(exc))
    click.echo(f"created {role} {user_id}")


def _change_account(who: str, reason: str, *, is_active: bool | None = None, role: str | None = None) -> None:
    from models.enums import Role
    from server.accounts import AccountError, change_account
    from server.auth.revocation import RevokeReason

    settings = _settings(require_secret=False)
    try:
        outcome = asyncio.run(
            change_account(
                settings.database_url,
                who,
                RevokeReason(reason),
                is_active=is_active,
                role=None if role is None else Role(role),
            )
        )
    except AccountError as exc:
        _fail(str(exc))
    user = outcome.user
    if user is None:
        click.echo(f"deleted {who}; its tokens are revoked")
        return
    state = "active" if user.is_active else "disabled"
    click.echo(f"{user.id} {user.role} {state}; tokens before version {outcome.valid_from} revoked")


@users.command("disable")
@click.argument("who")
def disable_user(who: str) -> None:
    """Disable the account WHO (id, email or phone): it cannot sign in, its tokens are revoked and the
    running servers close its sockets (within a second)."""
    _change_account(who, "disabled", is_active=False)


@users.command("enable")
@click.argument("who")
def enable_user(who: str) -> None:
    """Let the disabled account WHO (id, email or phone) sign in again."""
    _change_account(who, "enabled", is_active=True)


@users.command("delete")
@click.argument("who")
def delete_user(who: str) -> None:
    """Delete the account WHO (id, email or phone) and revoke its tokens. An account that calls, messages
    or ratings refer to cannot be deleted: disable it instead."""
    _change_account(who, "deleted")


@users.command("set-role")
@click.argument("who")
@click.argument("role", type=click.Choice(["patient", "doctor", "clinic_admin", "dispatcher", "admin"]))
def set_user_role(who: str, role: str) -> None:
    """Give the account WHO (id, email or phone) ROLE; its tokens are revoked (it signs in again)."""
    _change_account(who, "role_changed", role=role)


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--no-replay", is_flag=True, help="Only serve; do not replay the demo city against it.")
@click.option("--replay-speed", type=float, default=10.0, show_default=True, help="Speed of the demo city.")
@click.option(
    "--log-file",
    default=str(DEMO_LOG_FILE),
    show_default=True,
    help="Where the server's log goes ('-': the terminal).",
)
@click.option(
    "--no-fakes",
    is_flag=True,
    help="Do not start the loopback fakes of Telegram, SMTP and the SMS gateway (server/demo_fakes.py).",
)
def demo(
    host: str | None, port: int | None, no_replay: bool, replay_speed: float, log_file: str, no_fakes: bool
) -> None:
    """Migrate the embedded database, create demo accounts and serve on http://127.0.0.1:8000, with a
    replay of a real city (San Francisco's cabs as doctors, their pickups as calls) running against it.
    Notifications go to loopback fakes of Telegram, SMTP and an SMS gateway, logged to
    tot-demo-notifications.log. Prints the apps' addresses and the demo accounts; the server's log goes
    to a file."""
    from server.demo_fakes import DemoFakes, start_demo_fakes

    city = None if no_replay else _demo_city()  # before anything is migrated or served
    with contextlib.ExitStack() as stack:
        # Before the settings are read: the fakes set the TOT_* variables that point at them.
        fakes = DemoFakes() if no_fakes else stack.enter_context(start_demo_fakes())
        _demo(host, port, city, replay_speed, log_file, fakes)


def _demo(
    host: str | None,
    port: int | None,
    city: ModuleType | None,
    replay_speed: float,
    log_file: str,
    fakes: DemoFakes,
) -> None:
    from migrations import runner as migrations
    from server.accounts import ensure_demo_accounts

    settings = _demo_vapid(_demo_key(_settings(demo=True)))
    if settings.secret_key_generated:
        click.echo(
            f"TOT_SECRET_KEY is not set: using a random key kept in {DEMO_KEY_FILE} "
            "(tokens survive restarts of the demo)."
        )
    migrations.upgrade(settings.database_url)
    asyncio.run(ensure_demo_accounts(settings.database_url, DEMO_ACCOUNTS))
    if city is not None:
        created = city.seed_demo_accounts(settings)
        if created:
            click.echo(f"Made the demo city's {created} accounts (doctors and patients).")
    address = f"http://{host or settings.host}:{port or settings.port}"
    log_path = None if log_file == "-" else Path(log_file).resolve()
    click.echo("\n".join(demo_banner(address, DEMO_ACCOUNTS, log_path)))
    fakes.point_webhook(address)
    if fakes.lines:
        click.echo("\n".join(fakes.lines))
    replay = None
    if city is not None:
        click.echo(
            f"Replaying San Francisco at x{replay_speed:g} (one hour of the city in {60 / replay_speed:g} "
            f"minutes): progress below, then a summary; the report will be in "
            f"{city.demo_report_dir()}/report.md. --no-replay serves only."
        )
        replay = city.start_demo_replay(host or settings.host, port or settings.port, replay_speed)
        announce_replay_end(replay, address)
    click.echo("Ctrl+C stops the demo.")
    try:
        _serve(settings, host, port, log_path)
    finally:
        if city is not None and replay is not None:
            city.stop_demo_replay(replay)


def _demo_city() -> ModuleType:
    """``loadtests.replay.demo``, or a clear stop when the replay or its extra is missing (checked before
    serving, not when the child process fails in the background)."""
    _find_replay()
    try:
        from loadtests.replay import demo as city
        from loadtests.replay.cli import missing_extra
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "loadtests":
            raise
        _fail(f"the demo's city replay is not installed: {REPLAY_INSTALL}, or run the demo with --no-replay")
    if missing := missing_extra():
        _fail(
            f"the demo's city replay needs the [replay] extra (missing {', '.join(missing)}): "
            f"{REPLAY_INSTALL}, or run the demo with --no-replay"
        )
    return city


def _demo_key(settings: Settings) -> Settings:
    """``settings`` with the key of :data:`DEMO_KEY_FILE` when the demo generated one: the first run
    writes its generated key there (owner-only), later runs read it back."""
    if not settings.secret_key_generated:
        return settings
    key = DEMO_KEY_FILE.read_text().strip() if DEMO_KEY_FILE.is_file() else ""
    if len(key) < MIN_SECRET_KEY_LENGTH:
        key = settings.secret_key
        DEMO_KEY_FILE.touch(mode=0o600)
        DEMO_KEY_FILE.write_text(key + "\n")
        os.chmod(DEMO_KEY_FILE, 0o600)  # touch() keeps the mode of an existing file
    return dataclasses.replace(settings, secret_key=key)


def _demo_vapid(settings: Settings) -> Settings:
    """``settings`` with a VAPID key for web push when ``TOT_VAPID_PRIVATE_KEY`` is unset: the first
    run generates one into :data:`DEMO_VAPID_FILE` (owner-only), later runs read it back (a new key
    would orphan every browser's subscription)."""
    from server.notify.vapid import generate_private_key, load_private_key

    if settings.vapid_private_key:
        return settings
    key = DEMO_VAPID_FILE.read_text().strip() if DEMO_VAPID_FILE.is_file() else ""
    try:
        load_private_key(key)
    except ValueError:
        key = generate_private_key()
        DEMO_VAPID_FILE.touch(mode=0o600)
        DEMO_VAPID_FILE.write_text(key + "\n")
        os.chmod(DEMO_VAPID_FILE, 0o600)
    return dataclasses.replace(settings, vapid_private_key=key)


@main.group()
def zones() -> None:
    """Manage service zones."""


@zones.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--code-property",
    default=None,
    help="Feature property holding each zone's stable code (default: the feature's id).",
)
@click.option(
    "--name-property",
    default=None,
    help="Feature property holding each zone's name (default: name, NAME or Name; else the code).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Also delete zones the file does not contain (refused while doctors are limited to them).",
)
def import_zones(file: Path, code_property: str | None, name_property: str | None, replace: bool) -> None:
    """Load a GeoJSON FeatureCollection of (Multi)Polygon features into TOT_DATABASE_URL's zones.

    Upserts by code; invalid geometry is repaired; features that cannot be zones are skipped with a
    reason. Running servers use the new zones after they reload them.
    """
    from dispatch.zone_import import ZoneImportError, import_geojson_file
    from geo.zones import GeoJSONError

    settings = _settings(require_secret=False)
    try:
        report = asyncio.run(
            import_geojson_file(
                settings.database_url,
                file,
                code_property=code_property,
                name_property=name_property,
                replace=replace,
            )
        )
    except (GeoJSONError, ZoneImportError) as exc:
        _fail(str(exc))
    click.echo(f"zones import {file}")
    for line in report.lines():
        click.echo(line)
