"""The real command line and a real server process: demo, migrate, users create, serve."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e.process import cli, run_server

SECRET = "e2e-secret-key-" + "z" * 32


def test_demo_migrates_the_embedded_database_and_serves(tmp_path: Path) -> None:
    env = {"TOT_SECRET_KEY": ""}  # the demo generates one and says so
    with run_server(["demo", "--no-replay"], env, tmp_path) as server:
        health = httpx.get(f"{server.url}/v1/health").json()
        assert health["status"] == "ok"
        assert health["database"]["kind"] == "sqlite"
        assert health["engine"]["kind"] == "memory"
        login = httpx.post(
            f"{server.url}/v1/auth/login",
            json={"login": "dispatcher@demo.tot", "password": "demo-dispatcher-pass"},
        )
        assert login.status_code == 200
        assert login.json()["user"]["role"] == "dispatcher"
        # The demo doctor is verified (the doctor app can go on shift at once); the demo patient exists.
        doctor = httpx.post(
            f"{server.url}/v1/auth/login", json={"login": "doctor@demo.tot", "password": "demo-doctor-pass"}
        ).json()["user"]
        assert doctor["role"] == "doctor" and doctor["doctor"]["verified"] is True
        patient = httpx.post(
            f"{server.url}/v1/auth/login", json={"login": "patient@demo.tot", "password": "demo-patient-pass"}
        )
        assert patient.status_code == 200
    assert (tmp_path / "tot.db").exists()  # the default SQLite file in the working directory
    terminal = server.output()
    assert "random key" in terminal
    # The terminal shows where to go and as whom; the server's log goes to the file it names.
    assert f"{server.url}/console  (sign in as dispatcher@demo.tot)" in terminal
    assert f"{server.url}/app  (sign in as patient@demo.tot)" in terminal
    assert f"{server.url}/doctor  (sign in as doctor@demo.tot)" in terminal
    assert "login dispatcher@demo.tot" in terminal and "password demo-dispatcher-pass" in terminal
    log = tmp_path / "tot-demo.log"
    assert f"Server log: {log}" in terminal
    assert " INFO " in log.read_text() and " INFO " not in terminal


def test_migrate_create_admin_and_serve_on_postgres(tmp_path: Path) -> None:
    url = asyncio.run(create_pg_database("tot_e2e"))
    try:
        # The standard-library loop here; every other server process of the suite runs uvloop.
        env = {
            "TOT_DATABASE_URL": url,
            "TOT_SECRET_KEY": SECRET,
            "TOT_LOG_FORMAT": "json",
            "TOT_EVENT_LOOP": "asyncio",
        }
        migrated = cli(["migrate"], env, tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        created = cli(
            [
                "users",
                "create",
                "--role",
                "admin",
                "--email",
                "root@example.org",
                "--name",
                "Root",
                "--password",
                "admin-password",
            ],
            env,
            tmp_path,
        )
        assert created.returncode == 0, created.stderr
        assert created.stdout.startswith("created admin ")
        duplicate = cli(
            [
                "users",
                "create",
                "--role",
                "admin",
                "--email",
                "root@example.org",
                "--name",
                "R",
                "--password",
                "admin-password",
            ],
            env,
            tmp_path,
        )
        assert duplicate.returncode == 2
        assert "already exists" in duplicate.stderr
        with run_server(["serve"], env, tmp_path) as server:
            health = httpx.get(f"{server.url}/v1/health").json()
            assert health["database"]["kind"] == "postgresql"
            login = httpx.post(
                f"{server.url}/v1/auth/login",
                json={"login": "root@example.org", "password": "admin-password"},
            )
            assert login.status_code == 200
            token = login.json()["tokens"]["access_token"]
            doctors = httpx.get(f"{server.url}/v1/doctors", headers={"Authorization": f"Bearer {token}"})
            assert doctors.status_code == 200
            httpx.get(f"{server.url}/v1/me")  # a refused request is logged as a JSON line
        lines = [line for line in server.output().splitlines() if line.startswith("{")]
        assert any('"code": "auth_required"' in line for line in lines)
    finally:
        asyncio.run(drop_pg_database(url))


def test_bad_settings_stop_start_up_with_one_line(tmp_path: Path) -> None:
    for env, setting in (
        ({"TOT_ENGINE_URL": "memcached://x", "TOT_SECRET_KEY": SECRET}, "TOT_ENGINE_URL"),
        ({"TOT_SECRET_KEY": ""}, "TOT_SECRET_KEY"),
        ({"TOT_DATABASE_URL": "oracle://x", "TOT_SECRET_KEY": SECRET}, "TOT_DATABASE_URL"),
    ):
        result = cli(["serve"], env, tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"tot-dispatch: {setting}: "), result.stderr
