"""Small helpers shared by tests: unique accounts, logins and auth headers, call rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import h3
import httpx
from shapely.geometry import Point

from models.calls import Call
from server.accounts import NewAccount, create_account

_T = TypeVar("_T")

PASSWORD = "correct-horse-battery"


def unique_email(tag: str = "user") -> str:
    """An email no other test uses."""
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.org"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


async def register(client: httpx.AsyncClient, role: str = "patient", **fields: Any) -> dict[str, Any]:
    """Register through the API; returns the response body (asserts 201)."""
    body: dict[str, Any] = {
        "email": unique_email(role),
        "password": PASSWORD,
        "full_name": f"Test {role}",
        "role": role,
    }
    if role == "doctor":
        body.update(licence_number=f"LIC-{uuid.uuid4().hex[:10]}", specialties=["therapist"])
    body.update(fields)
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def staff(client: httpx.AsyncClient, database_url: str, role: str) -> dict[str, Any]:
    """Create a staff account the way operators do (the CLI's code path) and log in; returns the body."""
    email = unique_email(role)
    new = NewAccount(role=role, email=email, password=PASSWORD, full_name=f"Test {role}")
    await as_cli(create_account(database_url, new))  # as the CLI does, in a "process" of its own
    response = await client.post("/v1/auth/login", json={"login": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def new_call(
    patient_id: str,
    lat: float,
    lon: float,
    *,
    status: str,
    address: str = "Test street 1",
    doctor_id: str | None = None,
    **fields: Any,
) -> Call:
    """An urgent therapist call row at (``lat``, ``lon``) WGS84 degrees, in ``status``, made by the
    patient, for tests that need a call in a given state without driving the offer loop; ``fields``
    set any other column. Not added to a session."""
    return Call(
        patient_id=uuid.UUID(patient_id),
        created_by=uuid.UUID(patient_id),
        doctor_id=None if doctor_id is None else uuid.UUID(doctor_id),
        address=address,
        location=Point(lon, lat),
        lat=lat,
        lon=lon,
        h3_cell=h3.latlng_to_cell(lat, lon, 9),
        urgency="urgent",
        specialty="therapist",
        status=status,
        **fields,
    )


async def as_cli(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` (a CLI step that opens an engine of its own: a zone import, an account created)
    on a worker thread with an event loop of its own, as the CLI's own process would, and return its
    result (its exception raised here). Its SQLite connection then waits for the app's locks off the
    app's thread (see tests/conftest.py services_of)."""
    return await asyncio.to_thread(asyncio.run, work)
