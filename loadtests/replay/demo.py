"""The demo city: ``tot-dispatch demo`` starts the replay as a child process next to the server.

The child is ``python -m server replay`` against the demo server at a watchable speed (x10: one hour
of San Francisco in six minutes), with the demo's staff accounts and a state file of the replay's
accounts next to the demo database (``tot-replay-accounts.json`` in the working directory), so a
second demo logs the doctors in instead of registering them again.

On a first run the demo makes the city's accounts itself, before it serves
(:func:`seed_demo_accounts`): one argon2 hash shared by all of them (they share the replay's password)
and tokens issued with the server's key, written to that state file. Registering 485 people over REST
costs an argon2 hash each (about a minute of the server's CPU on a two-core machine), during which the
console's map stayed empty; seeded, the replay only trades refresh tokens and the first doctors are on
the map within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from loadtests.replay import roster
from loadtests.replay.accounts import write_state
from loadtests.replay.options import DEMO_ADMIN, DEMO_DISPATCHER, ReplayOptions
from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.repositories import doctors as doctor_repo
from models.repositories import users as user_repo
from server.accounts import add_account
from server.auth.passwords import hash_password
from server.auth.tokens import TokenService
from server.settings import Settings

DEMO_SCENARIO = "demo"
DEMO_ACCOUNTS_FILE = "tot-replay-accounts.json"


def demo_report_dir() -> Path:
    """Where the demo's replay writes its report (``loadtests/reports/<date>-demo/``)."""
    return ReplayOptions(scenario=DEMO_SCENARIO).resolved_report_dir()


def start_demo_replay(host: str, port: int, speed: float) -> subprocess.Popen[bytes]:
    """Start the replay against the demo server at ``host:port`` (a wildcard host is reached on
    127.0.0.1). It waits for the server's health check itself, so start it before serving."""
    reachable = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    command = [
        sys.executable,
        "-m",
        "server",
        "replay",
        "--server",
        f"http://{reachable}:{port}",
        "--speed",
        f"{speed:g}",
        "--scenario",
        DEMO_SCENARIO,
        "--accounts",
        DEMO_ACCOUNTS_FILE,
        "--wait",
        "120",
    ]
    return subprocess.Popen(command)


def stop_demo_replay(process: subprocess.Popen[bytes]) -> None:
    """Stop the replay child (it may have ended already)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)


def seed_demo_accounts(settings: Settings, accounts_file: Path = Path(DEMO_ACCOUNTS_FILE)) -> int:
    """Make the demo city's accounts in the database at ``settings.database_url`` (verified doctors,
    patients) unless ``accounts_file`` exists, and write that file with a refresh token for each and for
    the demo's admin and dispatcher. Returns how many accounts were created (0: the file was there).

    Accounts that exist already keep their password hash; the demo's staff must exist (``tot-dispatch
    demo`` creates them first). Raises ``LookupError`` when the demo admin is missing."""
    if accounts_file.exists():
        return 0
    from loadtests.replay.runner import load_inputs  # reads the city's CSV files (a few seconds)

    options = ReplayOptions(scenario=DEMO_SCENARIO)
    inputs = load_inputs(options)
    people = [*roster.doctors(options, inputs.traces), *roster.patients(options, len(inputs.calls))]
    return asyncio.run(_seed(settings, options, people, accounts_file))


async def _seed(
    settings: Settings, options: ReplayOptions, people: list[roster.Person], accounts_file: Path
) -> int:
    tokens = TokenService(settings.secret_key, settings.access_token_ttl_s, settings.refresh_token_ttl_s)
    shared_hash = hash_password(options.password)  # one argon2 hash for all: they share the password
    state: dict[str, dict[str, Any]] = {}
    created = 0
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            admin = await user_repo.find_by_login(session, DEMO_ADMIN[0])
            if admin is None:
                raise LookupError(f"the demo admin {DEMO_ADMIN[0]} is missing")
            for email in (DEMO_ADMIN[0], DEMO_DISPATCHER[0]):
                staff = await user_repo.find_by_login(session, email)
                if staff is not None:
                    pair = tokens.issue(staff.id, Role(staff.role), version=staff.token_version)
                    state[email] = {
                        "id": str(staff.id),
                        "role": staff.role,
                        "refresh_token": pair.refresh_token,
                    }
            for person in people:
                user = await user_repo.find_by_login(session, person.email)
                if user is None:
                    user, profile = await add_account(
                        session,
                        role=Role(person.role),
                        full_name=person.name,
                        password_hash=shared_hash,
                        email=person.email,
                        licence_number=person.licence or None,
                        specialties=[options.specialty] if person.role == "doctor" else [],
                    )
                    if profile is not None:
                        await doctor_repo.set_verified(session, profile, True, admin.id)
                    created += 1
                profile = await doctor_repo.get_profile(session, user.id)
                pair = tokens.issue(user.id, Role(user.role), version=user.token_version)
                state[person.email] = {
                    "id": str(user.id),
                    "role": person.role,
                    "refresh_token": pair.refresh_token,
                    # A doctor left unverified is verified by the replay's admin, as when it registers.
                    "verified": profile is not None and profile.verified,
                }
    finally:
        await engine.dispose()
    write_state(accounts_file, state)
    return created
