"""What ``tot-dispatch demo`` prints: the browser apps the server has and their demo accounts, where the
server's log goes, and a line when the demo city's replay ends (server/cli.py runs the demo)."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import click

DEMO_PAGES = (
    ("Dispatcher console", "/console", "dispatcher"),
    ("Patient app", "/app", "patient"),
    ("Doctor app", "/doctor", "doctor"),
)
"""The browser apps the demo lists: name, path and the role of the demo account to sign in with. Only the
paths the server routes are printed."""
DEMO_LOG_FILE = Path("tot-demo.log")
"""Where the demo writes the server's log (the working directory, beside its database), so the terminal
shows the replay's progress rather than a line per socket."""


INTERRUPTED = 130
"""The replay's exit status after Ctrl+C (the demo is stopping too: nothing to say)."""
Account = tuple[str, str, str, str]
"""A demo account: role, email, password, full name."""


def demo_banner(address: str, accounts: Sequence[Account], log_file: Path | None) -> list[str]:
    """The demo's first lines: the apps the server has (:data:`DEMO_PAGES`) with the account to sign in
    with, the demo ``accounts``, the API and where the server's log goes."""
    from server.app import create_app  # noqa: F401  (importing registers every route)
    from server.routes import api

    paths = {route.path for route in api.routes()}
    logins = {role: email for role, email, _, _ in accounts}
    lines = [f"TOT Dispatch demo on {address}"]
    for name, path, role in DEMO_PAGES:
        if path in paths:
            account = f"  (sign in as {logins[role]})" if role in logins else ""
            lines.append(f"  {name + ':':<20} {address}{path}{account}")
    lines.append(f"  {'REST API:':<20} {address}/v1/openapi.json  (health: {address}/v1/health)")
    lines.append("Demo accounts:")
    for role, email, password, _ in accounts:
        lines.append(f"  {role:<11} login {email:<22} password {password}")
    if log_file is not None:
        lines.append(f"Server log: {log_file}  (errors also show here)")
    return lines


def announce_replay_end(replay: subprocess.Popen[bytes], address: str) -> None:
    """Say so when the demo city's replay ends by itself (its summary, or why it could not run, is
    printed just above)."""

    def wait() -> None:
        code = replay.wait()
        if code in (0, 1):  # done (1: an integrity check failed)
            click.echo(f"The demo city's replay is over; the server keeps serving on {address}.")
        elif code > 0 and code != INTERRUPTED:  # it could not run: its reason is printed above
            click.echo(f"The demo city's replay stopped (exit status {code}); the server keeps serving.")

    threading.Thread(target=wait, name="demo-replay-watch", daemon=True).start()
