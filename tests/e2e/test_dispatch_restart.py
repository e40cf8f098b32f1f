"""Dispatch across a restart of a memory-engine server (whose deadline entries die with it): open
calls are re-armed from the database, a call committed but never started is dispatched, and a
planned call is not started before its time."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import uuid

import pytest

from models.db import make_engine, make_sessionmaker
from models.enums import Role
from models.repositories import calls as call_repo
from tests.e2e.dispatch_world import CENTRE, city, offset
from tests.e2e.process import run_server
from tests.helpers import new_call


async def _orphan_call(database_url: str, patient_id: str, lat: float, lon: float) -> str:
    """A call committed as a process would, that died before starting its dispatch."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            now = dt.datetime.now(dt.UTC)
            call = new_call(
                patient_id,
                lat,
                lon,
                status="created",
                address="Orphan street 1",
                id=uuid.uuid4(),  # the event below needs it before the flush
                created_at=now,
                updated_at=now,
            )
            session.add(call)
            call_repo.add_event(
                session, call, None, "created", actor_id=call.patient_id, actor_role="patient", at=now
            )
        return str(call.id)
    finally:
        await engine.dispose()


def test_open_calls_are_rearmed_after_a_restart(tmp_path_factory: pytest.TempPathFactory) -> None:
    cwd = tmp_path_factory.mktemp("restart")
    with city(cwd, doctors=1, patients=1) as c:
        patient, doctor_person = c.of_role(Role.PATIENT)[0], c.of_role(Role.DOCTOR)[0]
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).isoformat()
        planned = asyncio.run(c.create_call(patient, *CENTRE, "planned", scheduled_at=later)).json()["id"]
        server = c.servers[0]
        server.process.send_signal(signal.SIGINT)
        server.process.wait(timeout=15)
        orphan = asyncio.run(_orphan_call(c.database_url, patient.id, *CENTRE))

        async def after_restart() -> None:
            with run_server(["serve"], c.env, c.cwd) as again:
                c.servers[0] = again
                # Picked up from the database at start-up: no doctor is online yet, so it escalates.
                orphaned = await c.wait_status(orphan, {"escalated"}, timeout=20)
                history = (await c.http("GET", f"/v1/calls/{orphan}/events", c.dispatcher)).json()["items"]
                assert [e["to_status"] for e in history] == ["created", "searching", "escalated"]
                assert orphaned["status"] == "escalated"
                # A doctor comes online; a dispatcher re-launches: the call reaches them.
                doctor = c.doctor(doctor_person, *offset(*CENTRE, 300))
                await doctor.start()
                try:
                    await asyncio.sleep(0.3)
                    relaunched = await c.http("POST", f"/v1/calls/{orphan}/relaunch", c.dispatcher)
                    assert relaunched.status_code == 200
                    offer = await doctor.wait_for("offer.created", timeout=20)
                    assert offer["call"]["id"] == orphan
                    assert (await c.call(planned))["status"] == "created"  # not started three hours early
                    assert [o["call"]["id"] for o in doctor.of_type("offer.created")] == [orphan]
                finally:
                    await doctor.stop()

        asyncio.run(after_restart())
