"""A small world for planned-visit tests through the REST API: a clinic with its admin and a service,
verified doctors with schedules, patients; on a fresh database of either dialect, with the app's clock
a :class:`~tests.clock.ManualClock` (the slots' notice and horizon read it)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.clock import ManualClock
from tests.helpers import bearer, register, staff

MOSCOW = (55.7558, 37.6173)
YEKATERINBURG = (56.8389, 60.6057)
BERLIN = (52.5200, 13.4050)


def ms(value: dt.datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(value.timestamp() * 1000)


@dataclass
class PlannedWorld:
    """The app's client, its database URL and clock, and the clinic's people (tokens by role)."""

    client: httpx.AsyncClient
    database_url: str
    clock: ManualClock
    admin: dict[str, Any] = field(default_factory=dict)
    clinic_admin: dict[str, Any] = field(default_factory=dict)
    clinic_id: str = ""

    def at(self, when: dt.datetime) -> None:
        """Set the app's clock to ``when`` (aware)."""
        self.clock.set(ms(when))

    async def setup(self) -> None:
        """The admin, a clinic and its clinic admin."""
        self.admin = await staff(self.client, self.database_url, "admin")
        self.clinic_admin = await staff(self.client, self.database_url, "clinic_admin")
        self.clinic_id = await self.new_clinic(self.clinic_admin)

    async def new_clinic(self, admin_of: dict[str, Any]) -> str:
        """A new clinic with ``admin_of`` (a clinic_admin's login body) as its admin; its id."""
        response = await self.client.post(
            "/v1/clinics", json={"name": f"Clinic {uuid.uuid4().hex[:8]}"}, headers=self.auth(self.admin)
        )
        assert response.status_code == 201, response.text
        clinic_id: str = response.json()["id"]
        response = await self.client.put(
            f"/v1/clinics/{clinic_id}/admins/{admin_of['user']['id']}", headers=self.auth(self.admin)
        )
        assert response.status_code == 200, response.text
        return clinic_id

    @staticmethod
    def auth(who: dict[str, Any]) -> dict[str, str]:
        """The bearer header of a login or registration body."""
        return bearer(who["tokens"]["access_token"])

    async def service(
        self,
        duration: int = 40,
        before: int = 10,
        after: int = 10,
        specialty: str = "therapist",
        **extra: Any,
    ) -> str:
        """A new service of the clinic (made by its admin); its id."""
        body = {
            "name": f"Visit {uuid.uuid4().hex[:8]}",
            "specialty": specialty,
            "duration_min": duration,
            "price": "2500.00",
            "currency": "RUB",
            "buffer_before_min": before,
            "buffer_after_min": after,
            **extra,
        }
        response = await self.client.post(
            f"/v1/clinics/{self.clinic_id}/services", json=body, headers=self.auth(self.clinic_admin)
        )
        assert response.status_code == 201, response.text
        service_id: str = response.json()["id"]
        return service_id

    async def doctor(self, *, verified: bool = True, clinic_id: str | None = None) -> dict[str, Any]:
        """A doctor of the clinic (or ``clinic_id``), verified by the admin unless told otherwise."""
        doctor = await register(self.client, "doctor", clinic_id=clinic_id or self.clinic_id)
        if verified:
            response = await self.client.post(
                f"/v1/doctors/{doctor['user']['id']}/verify",
                json={"verified": True},
                headers=self.auth(self.admin),
            )
            assert response.status_code == 200, response.text
        return doctor

    async def put_schedule(
        self, doctor: dict[str, Any], by: dict[str, Any] | None = None, **body: Any
    ) -> httpx.Response:
        """PUT the doctor's schedule (by their clinic's admin unless ``by``)."""
        return await self.client.put(
            f"/v1/doctors/{doctor['user']['id']}/schedule",
            json=body,
            headers=self.auth(by or self.clinic_admin),
        )

    async def schedule(self, doctor: dict[str, Any], **body: Any) -> None:
        """Set the schedule; asserts 200."""
        response = await self.put_schedule(doctor, **body)
        assert response.status_code == 200, response.text

    async def slots(
        self, service_id: str, place: tuple[float, float], first: str, last: str | None = None
    ) -> dict[str, Any]:
        """GET /v1/slots (asserts 200)."""
        response = await self.client.get(
            "/v1/slots",
            params={
                "service_id": service_id,
                "lat": place[0],
                "lon": place[1],
                "from": first,
                "to": last or first,
            },
            headers=self.auth(self.admin),
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def book(
        self,
        patient: dict[str, Any],
        service_id: str,
        doctor: dict[str, Any],
        start: str,
        place: tuple[float, float],
        key: str | None = None,
    ) -> httpx.Response:
        """POST /v1/bookings."""
        body = {
            "service_id": service_id,
            "slot": {"doctor_id": doctor["user"]["id"], "start": start},
            "address": "Test street 1",
            "lat": place[0],
            "lon": place[1],
        }
        headers = {**self.auth(patient), **({"Idempotency-Key": key} if key else {})}
        return await self.client.post("/v1/bookings", json=body, headers=headers)
