"""Accounts and tokens over REST, on SQLite and on PostgreSQL: register, login, refresh, expiry."""

from __future__ import annotations

import time
import uuid

import httpx
import jwt

from models.enums import Role
from server.auth.tokens import TokenService
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import PASSWORD, bearer, register, unique_email


def _error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    error: dict[str, str] = body["error"]
    return error


async def test_register_patient_and_use_the_token(client: httpx.AsyncClient) -> None:
    email = unique_email("pat")
    response = await client.post(
        "/v1/auth/register", json={"email": email.upper(), "password": PASSWORD, "full_name": "Anna"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["user"]["role"] == "patient"
    assert body["user"]["email"] == email  # stored lower-cased
    assert body["tokens"]["token_type"] == "Bearer"
    uuid.UUID(body["user"]["id"])  # UUID ids, never integers

    me = await client.get("/v1/me", headers=bearer(body["tokens"]["access_token"]))
    assert me.status_code == 200
    assert me.json()["id"] == body["user"]["id"]


async def test_register_doctor_starts_unverified(client: httpx.AsyncClient) -> None:
    body = await register(client, "doctor", specialties=["therapist", "pediatrician"])
    doctor = body["user"]["doctor"]
    assert doctor["verified"] is False
    assert doctor["specialties"] == ["pediatrician", "therapist"]
    assert doctor["rating_count"] == 0


async def test_doctor_registration_needs_licence_and_specialty(client: httpx.AsyncClient) -> None:
    base = {"email": unique_email(), "password": PASSWORD, "full_name": "Doc", "role": "doctor"}
    err = _error(await client.post("/v1/auth/register", json=base), 422, "invalid_input")
    assert err["field"] == "licence_number"
    err = _error(
        await client.post(
            "/v1/auth/register", json={**base, "licence_number": "LIC-1", "specialties": ["Bad Code"]}
        ),
        422,
        "invalid_input",
    )
    assert err["field"] == "specialties.0"


async def test_registering_a_staff_role_is_refused(client: httpx.AsyncClient) -> None:
    for role in ("admin", "dispatcher", "clinic_admin"):
        body = {"email": unique_email(), "password": PASSWORD, "full_name": "X", "role": role}
        err = _error(await client.post("/v1/auth/register", json=body), 403, "role_not_allowed")
        assert err["field"] == "role"
        login = await client.post("/v1/auth/login", json={"login": body["email"], "password": PASSWORD})
        _error(login, 401, "invalid_credentials")  # and no account was created
    body = {"email": unique_email(), "password": PASSWORD, "full_name": "X", "role": "superuser"}
    _error(await client.post("/v1/auth/register", json=body), 422, "invalid_input")


async def test_a_taken_email_or_phone_is_answered_like_a_new_account(client: httpx.AsyncClient) -> None:
    """Registration does not tell a stranger which emails exist (docs/api.md): a taken email or phone
    gets the same 201 and shape as a new account, the account is not touched, and the tokens handed out
    belong to no account (refused on first use)."""
    email, phone = unique_email(), f"+7999{uuid.uuid4().int % 10**7:07d}"
    owner = await register(client, email=email, phone=phone)
    for fields in ({"email": email.upper()}, {"phone": phone}):
        answer = await client.post(
            "/v1/auth/register", json={**fields, "password": "another-password", "full_name": "B"}
        )
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert set(body) == set(owner) and set(body["user"]) == set(owner["user"])
        assert body["user"]["id"] != owner["user"]["id"]
        me = await client.get("/v1/me", headers=bearer(body["tokens"]["access_token"]))
        assert me.status_code == 401, me.text
    # The owner's account is untouched: the first password still works, the second does not.
    good = await client.post("/v1/auth/login", json={"login": email, "password": PASSWORD})
    assert good.status_code == 200 and good.json()["user"]["full_name"] == owner["user"]["full_name"]
    bad = await client.post("/v1/auth/login", json={"login": email, "password": "another-password"})
    _error(bad, 401, "invalid_credentials")


async def test_invalid_input_names_the_field(client: httpx.AsyncClient) -> None:
    cases = [
        ({"email": "not-an-email", "password": PASSWORD, "full_name": "A"}, "email"),
        ({"email": unique_email(), "password": "short", "full_name": "A"}, "password"),
        ({"phone": "+7 000 000", "password": PASSWORD, "full_name": "A"}, "phone"),
        ({"phone": "not a phone", "password": PASSWORD, "full_name": "A"}, "phone"),
        ({"email": unique_email(), "password": PASSWORD}, "full_name"),
    ]
    for body, field in cases:
        err = _error(await client.post("/v1/auth/register", json=body), 422, "invalid_input")
        assert err["field"] == field, err
    _error(
        await client.post("/v1/auth/register", json={"password": PASSWORD, "full_name": "A"}),
        422,
        "invalid_input",
    )
    bad_json = await client.post(
        "/v1/auth/register", content=b"{nope", headers={"content-type": "application/json"}
    )
    _error(bad_json, 400, "invalid_json")
    form = await client.post("/v1/auth/register", content=b"a=b", headers={"content-type": "text/plain"})
    _error(form, 415, "unsupported_media_type")


async def test_login_by_email_or_phone_and_wrong_password(client: httpx.AsyncClient) -> None:
    email, phone = unique_email(), f"+7999{uuid.uuid4().int % 10**7:07d}"
    created = await register(client, email=email, phone=phone)
    for login in (email, email.upper(), phone):
        response = await client.post("/v1/auth/login", json={"login": login, "password": PASSWORD})
        assert response.status_code == 200, response.text
        assert response.json()["user"]["id"] == created["user"]["id"]
    wrong = await client.post("/v1/auth/login", json={"login": email, "password": PASSWORD + "x"})
    unknown = await client.post("/v1/auth/login", json={"login": unique_email(), "password": PASSWORD})
    assert (
        _error(wrong, 401, "invalid_credentials")["message"]
        == _error(unknown, 401, "invalid_credentials")["message"]
    )


async def test_refresh_issues_a_working_pair(client: httpx.AsyncClient) -> None:
    tokens = (await register(client))["tokens"]
    response = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200
    fresh = response.json()
    assert (await client.get("/v1/me", headers=bearer(fresh["access_token"]))).status_code == 200
    # An access token is not a refresh token, and vice versa.
    _error(
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["access_token"]}),
        401,
        "token_invalid",
    )
    _error(await client.get("/v1/me", headers=bearer(tokens["refresh_token"])), 401, "token_invalid")
    _error(await client.post("/v1/auth/refresh", json={"refresh_token": "x" * 40}), 401, "token_invalid")


async def test_expired_tokens_are_401_token_expired(client: httpx.AsyncClient) -> None:
    user = (await register(client))["user"]
    old = TokenService(TEST_SECRET_KEY, access_ttl_s=60, refresh_ttl_s=120).issue(
        uuid.UUID(user["id"]),
        Role.PATIENT,
        now=time.time() - 3600,
    )
    err = _error(await client.get("/v1/me", headers=bearer(old.access_token)), 401, "token_expired")
    assert "expired" in err["message"]
    _error(
        await client.post("/v1/auth/refresh", json={"refresh_token": old.refresh_token}), 401, "token_expired"
    )


async def test_missing_or_malformed_authorization(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/me")
    _error(response, 401, "auth_required")
    assert response.headers["www-authenticate"] == "Bearer"
    _error(await client.get("/v1/me", headers={"Authorization": "Basic abc"}), 401, "auth_required")
    _error(await client.get("/v1/me", headers=bearer("not.a.jwt")), 401, "token_invalid")


async def test_a_token_signed_with_another_key_is_refused(client: httpx.AsyncClient) -> None:
    user = (await register(client))["user"]
    forged = jwt.encode(
        {
            "sub": user["id"],
            "role": "admin",
            "typ": "access",
            "iss": "tot-dispatch",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
        },
        "another-secret-key-of-sufficient-length-0123456789",
        algorithm="HS256",
    )
    _error(await client.get("/v1/doctors", headers=bearer(forged)), 401, "token_invalid")
    unsigned = jwt.encode(
        {
            "sub": user["id"],
            "role": "admin",
            "typ": "access",
            "iss": "tot-dispatch",
            "iat": int(time.time()),
            "exp": int(time.time()) + 600,
        },
        "",
        algorithm="none",
    )
    _error(await client.get("/v1/doctors", headers=bearer(unsigned)), 401, "token_invalid")
