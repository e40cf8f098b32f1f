"""The OpenAPI document says what the server does (issue 17): ids are UUIDs, enums are enums, every
error status is documented with the error body, and a 405 names the allowed methods in ``Allow``.
tests/e2e/test_schemathesis.py checks the same against generated requests; these are the fast cases."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.helpers import bearer, register


async def _document(client: httpx.AsyncClient) -> dict[str, Any]:
    data: dict[str, Any] = (await client.get("/v1/openapi.json")).json()
    return data


async def test_path_ids_are_uuids_and_a_bad_one_is_a_documented_422(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    get_call = document["paths"]["/v1/calls/{call_id}"]["get"]
    assert get_call["parameters"][0]["schema"] == {"type": "string", "format": "uuid"}
    assert {"404", "422"} <= set(get_call["responses"])
    zones = document["paths"]["/v1/doctors/{doctor_id}/zones"]["get"]["parameters"][0]["schema"]
    assert {"const": "me"} in zones["anyOf"]
    patient = await register(client)
    response = await client.get("/v1/calls/not-a-uuid", headers=bearer(patient["tokens"]["access_token"]))
    assert (response.status_code, response.json()["error"]["field"]) == (422, "call_id")


async def test_the_status_filter_is_an_enum(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    (status,) = [p for p in document["paths"]["/v1/calls"]["get"]["parameters"] if p["name"] == "status"]
    assert (status["style"], status["explode"], status["schema"]["type"]) == ("form", False, "array")
    enum = document["components"]["schemas"][status["schema"]["items"]["$ref"].split("/")[-1]]["enum"]
    assert "offered" in enum and "completed" in enum
    token = (await register(client))["tokens"]["access_token"]
    ok = await client.get("/v1/calls", params={"status": "offered,completed"}, headers=bearer(token))
    assert ok.status_code == 200
    bad = await client.get("/v1/calls", params={"status": "offered,nope"}, headers=bearer(token))
    assert (bad.status_code, bad.json()["error"]["field"]) == (422, "status.1")


async def test_every_error_status_is_documented_with_the_error_body(client: httpx.AsyncClient) -> None:
    document = await _document(client)
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            expected = {"500", "503"}
            if "requestBody" in op:
                expected |= {"400", "413", "415", "422"}
            if "security" in op:
                expected.add("401")
            assert expected <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and status not in ("503",):
                    assert response["content"]["application/json"]["schema"] == error_body, (method, path)


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/calls")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["Allow"] == "GET, HEAD, POST"
    # /v1/doctors/me is its own resource, not /v1/doctors/{doctor_id} given "me".
    response = await client.delete("/v1/doctors/me")
    assert response.headers["Allow"] == "GET, HEAD, PATCH"
    response = await client.put(f"/v1/calls/{uuid.uuid4()}")
    assert response.headers["Allow"] == "GET, HEAD"
