"""A patient's emergency while the call changes under it (found by the replay of a real city).

On SQLite ``FOR UPDATE`` does nothing, so a status change committed between the SOS's read of the call
and its write (the doctor's ``en_route``, sent the moment the patient raises the alarm on assignment)
wins the call's version check. The alert was stored and delivered already; the request must still
succeed and the call still become an emergency, not answer 500 (the patient would raise it again).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from models.calls import Call, CallEvent
from models.db import make_engine, make_sessionmaker
from models.repositories import calls as call_repo
from tests.conftest import app_client_for, make_settings
from tests.helpers import as_cli, bearer, new_call, register

PLACE = (37.7749, -122.4194)


async def _escalated_call(database_url: str, patient_id: str) -> uuid.UUID:
    """A call nobody is dispatching any more (escalated), so only the SOS touches it."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            call = new_call(patient_id, *PLACE, status="escalated", address="Race street 1")
            session.add(call)
        return call.id
    finally:
        await engine.dispose()


async def _another_writer_changes(database_url: str, call_id: uuid.UUID) -> None:
    """Commit a change of the call from another connection (it bumps the version, as every change does)."""
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.update(Call).where(Call.id == call_id).values(version=Call.version + 1))
    finally:
        await engine.dispose()


async def test_an_emergency_raised_while_the_call_changes_still_makes_it_an_emergency(
    sqlite_database_url: str, monkeypatch: Any
) -> None:
    async with app_client_for(make_settings(sqlite_database_url)) as client:
        patient = await register(client)
        # Written as another process would (tests/helpers.py as_cli), beside the app's one connection.
        call_id = await as_cli(_escalated_call(sqlite_database_url, patient["user"]["id"]))
        read_call = call_repo.get_call
        raced: list[uuid.UUID] = []

        async def read_then_lose_the_race(
            session: Any, some_id: uuid.UUID, *, for_update: bool = False
        ) -> Any:
            call = await read_call(session, some_id, for_update=for_update)
            if for_update and some_id == call_id and not raced:
                raced.append(some_id)  # once: the retry must then succeed
                await _another_writer_changes(sqlite_database_url, call_id)
            return call

        monkeypatch.setattr(call_repo, "get_call", read_then_lose_the_race)
        raised = await client.post(
            "/v1/sos",
            json={"kind": "emergency", "call": str(call_id)},
            headers=bearer(patient["tokens"]["access_token"]),
        )
        assert raised.status_code == 201, raised.text
        assert raced == [call_id]  # the race did happen
        engine = make_engine(sqlite_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                call = await read_call(session, call_id)
                assert call is not None and call.urgency == "emergency"
                assert call.version == 3  # the other writer's change, then the emergency's
                reasons = await session.scalars(
                    sa.select(CallEvent.reason).where(CallEvent.call_id == call_id)
                )
                assert list(reasons) == ["patient raised an emergency"]
        finally:
            await engine.dispose()
