"""Debian's nginx as a child process in front of a test's server processes, with the repository's own
configuration (``deploy/nginx/tot.conf``): its upstream ``server`` lines and its ``listen`` line are
replaced by the test's ports, everything else is used as is. scripts/test installs nginx
(scripts/lib.sh, ``ensure_nginx``); ``TOT_TEST_NGINX`` names another binary."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.process import CHECKOUT, free_port

CONFIG = CHECKOUT / "deploy" / "nginx" / "tot.conf"
STARTUP_TIMEOUT_S = 10.0


def nginx_binary() -> str:
    """The nginx to run; raises ``RuntimeError`` naming the install step when there is none."""
    found = os.environ.get("TOT_TEST_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).is_file():
        raise RuntimeError("nginx is not installed: scripts/test installs it (apt-get install nginx-light)")
    return found


def site_config(upstream_ports: Sequence[int], port: int) -> str:
    """``deploy/nginx/tot.conf`` with its upstream servers on ``upstream_ports`` (127.0.0.1) and its
    ``listen`` on 127.0.0.1:``port``. Raises ``AssertionError`` when the file no longer has the lines
    replaced here (the test would otherwise run a configuration of its own)."""
    text = CONFIG.read_text()
    server_line = re.compile(r"^(\s*)server server-\d+:8000( [^;]*)?;\n", re.MULTILINE)
    lines = server_line.findall(text)
    assert len(lines) == 2, "deploy/nginx/tot.conf: expected the upstream lines server server-N:8000"
    indent, options = lines[0]
    ours = "".join(f"{indent}server 127.0.0.1:{p}{options};\n" for p in upstream_ports)
    text = server_line.sub("", text, count=1)
    text = server_line.sub(ours, text, count=1)
    assert re.search(r"^\s*listen 8000;$", text, re.MULTILINE), "deploy/nginx/tot.conf: no 'listen 8000;'"
    return re.sub(r"^(\s*)listen 8000;$", rf"\1listen 127.0.0.1:{port};", text, flags=re.MULTILINE)


def main_config(workdir: Path, site: Path) -> str:
    """A whole nginx.conf around ``site`` (an http-level include), every file under ``workdir``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must write the temp folders below
    return f"""{user}daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    include {site};
}}
"""


@dataclass
class RunningNginx:
    """nginx in front of the servers: ``url`` is what clients use."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    workdir: Path

    def error_log(self) -> str:
        return (self.workdir / "error.log").read_text(errors="replace")


@contextlib.contextmanager
def run_nginx(workdir: Path, upstream_ports: Sequence[int]) -> Iterator[RunningNginx]:
    """Start nginx on a free port in front of ``upstream_ports`` and wait until it listens; stopped
    (SIGQUIT, then SIGKILL) at the end. Raises ``RuntimeError`` with its error log when it fails."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = workdir / "tot.conf"
    site.write_text(site_config(upstream_ports, port))
    conf = workdir / "nginx.conf"
    conf.write_text(main_config(workdir, site))
    binary = nginx_binary()
    checked = subprocess.run([binary, "-t", "-c", str(conf)], capture_output=True, text=True, check=False)
    if checked.returncode != 0:
        raise RuntimeError(f"nginx -t refused the configuration:\n{checked.stderr}")
    with (workdir / "stderr.log").open("ab") as sink:
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=sink, stderr=subprocess.STDOUT)
    running = RunningNginx(process, f"http://127.0.0.1:{port}", port, workdir)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited with {process.returncode}:\n{running.error_log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen:\n{running.error_log()}")
            time.sleep(0.05)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGQUIT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
