"""Role checks, and that identity comes only from the verified token: a forged role or user id in a
body or a header changes nothing (the MVP trusted ``X-User-Role``)."""

from __future__ import annotations

import httpx

from tests.helpers import bearer, register, staff


async def test_only_staff_list_doctors(client: httpx.AsyncClient, database_url: str) -> None:
    patient = await register(client)
    doctor = await register(client, "doctor")
    dispatcher = await staff(client, database_url, "dispatcher")
    for who in (patient, doctor):
        response = await client.get("/v1/doctors", headers=bearer(who["tokens"]["access_token"]))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"
    response = await client.get(
        "/v1/doctors?verified=false&limit=200", headers=bearer(dispatcher["tokens"]["access_token"])
    )
    assert response.status_code == 200
    assert doctor["user"]["id"] in {d["id"] for d in response.json()["items"]}


async def test_only_admins_verify_doctors(client: httpx.AsyncClient, database_url: str) -> None:
    doctor = await register(client, "doctor")
    path = f"/v1/doctors/{doctor['user']['id']}/verify"
    dispatcher = await staff(client, database_url, "dispatcher")
    for token in (doctor["tokens"]["access_token"], dispatcher["tokens"]["access_token"]):
        assert (await client.post(path, json={"verified": True}, headers=bearer(token))).status_code == 403
    admin = await staff(client, database_url, "admin")
    response = await client.post(
        path, json={"verified": True}, headers=bearer(admin["tokens"]["access_token"])
    )
    assert response.status_code == 200
    assert response.json()["doctor"]["verified"] is True
    missing = await client.post(
        "/v1/doctors/00000000-0000-4000-8000-000000000000/verify",
        json={},
        headers=bearer(admin["tokens"]["access_token"]),
    )
    assert missing.status_code == 404


async def test_forged_role_and_user_headers_are_ignored(client: httpx.AsyncClient, database_url: str) -> None:
    patient = await register(client)
    doctor = await register(client, "doctor")
    admin = await staff(client, database_url, "admin")
    forged = {
        **bearer(patient["tokens"]["access_token"]),
        "X-User-Role": "admin",
        "X-User-Id": admin["user"]["id"],
        "X-Role": "admin",
    }
    response = await client.post(
        f"/v1/doctors/{doctor['user']['id']}/verify", json={"verified": True}, headers=forged
    )
    assert response.status_code == 403
    # No token at all, only headers: still unauthenticated.
    headers_only = {"X-User-Role": "admin", "X-User-Id": admin["user"]["id"]}
    assert (await client.get("/v1/doctors", headers=headers_only)).status_code == 401
    me = await client.get("/v1/me", headers=forged)
    assert me.json()["id"] == patient["user"]["id"]
    assert me.json()["role"] == "patient"
    # The doctor is still unverified.
    view = await client.get(
        f"/v1/doctors/{doctor['user']['id']}", headers=bearer(admin["tokens"]["access_token"])
    )
    assert view.json()["doctor"]["verified"] is False


async def test_forged_fields_in_bodies_change_nothing(client: httpx.AsyncClient, database_url: str) -> None:
    admin = await staff(client, database_url, "admin")
    doctor = await register(client, "doctor")
    token = doctor["tokens"]["access_token"]
    for forged in (
        {"verified": True},
        {"user_id": admin["user"]["id"]},
        {"role": "admin"},
        {"rating_avg": 5},
    ):
        response = await client.patch("/v1/doctors/me", json=forged, headers=bearer(token))
        assert response.status_code == 422, forged
        assert response.json()["error"]["field"] == next(iter(forged))
    me = (await client.get("/v1/me", headers=bearer(token))).json()
    assert me["role"] == "doctor"
    assert me["doctor"]["verified"] is False
    assert me["doctor"]["rating_avg"] is None

    # A registration that smuggles an id or a verified flag is refused whole: no account appears.
    body = {
        "email": "smuggle-" + doctor["user"]["id"][:8] + "@example.org",
        "password": "correct-horse-battery",
    }
    for extra in ({"id": admin["user"]["id"]}, {"verified": True}, {"is_active": False}):
        response = await client.post("/v1/auth/register", json={**body, "full_name": "S", **extra})
        assert response.status_code == 422
    login = await client.post("/v1/auth/login", json={"login": body["email"], "password": body["password"]})
    assert login.status_code == 401
    # Login cannot pick a role either.
    response = await client.post(
        "/v1/auth/login", json={"login": body["email"], "password": "x" * 9, "role": "admin"}
    )
    assert response.status_code == 422


async def test_doctor_updates_own_profile_and_new_licence_unverifies(
    client: httpx.AsyncClient, database_url: str
) -> None:
    admin = await staff(client, database_url, "admin")
    doctor = await register(client, "doctor")
    doctor_id = doctor["user"]["id"]
    token = doctor["tokens"]["access_token"]
    await client.post(
        f"/v1/doctors/{doctor_id}/verify", json={}, headers=bearer(admin["tokens"]["access_token"])
    )
    response = await client.patch(
        "/v1/doctors/me", json={"specialties": ["surgeon", "therapist"]}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.json()["doctor"] == {
        **response.json()["doctor"],
        "specialties": ["surgeon", "therapist"],
        "verified": True,
    }
    response = await client.patch(
        "/v1/doctors/me", json={"licence_number": "NEW-" + doctor_id[:8]}, headers=bearer(token)
    )
    assert response.json()["doctor"]["verified"] is False
    patient = await register(client)
    assert (
        await client.patch("/v1/doctors/me", json={}, headers=bearer(patient["tokens"]["access_token"]))
    ).status_code == 403
    # A patient sees the doctor but not their contact details.
    seen = (
        await client.get(f"/v1/doctors/{doctor_id}", headers=bearer(patient["tokens"]["access_token"]))
    ).json()
    assert seen["full_name"] and seen["email"] is None and seen["phone"] is None


async def test_clinics_are_created_by_admins_only(client: httpx.AsyncClient, database_url: str) -> None:
    admin = await staff(client, database_url, "admin")
    patient = await register(client)
    name = "Clinic " + patient["user"]["id"][:8]
    refused = await client.post(
        "/v1/clinics", json={"name": name}, headers=bearer(patient["tokens"]["access_token"])
    )
    assert refused.status_code == 403
    created = await client.post(
        "/v1/clinics", json={"name": name}, headers=bearer(admin["tokens"]["access_token"])
    )
    assert created.status_code == 201
    again = await client.post(
        "/v1/clinics", json={"name": name}, headers=bearer(admin["tokens"]["access_token"])
    )
    assert again.status_code == 409
    doctor = await register(client, "doctor", clinic_id=created.json()["id"])
    assert doctor["user"]["doctor"]["clinic_id"] == created.json()["id"]
