"""Control characters in every text input, on real server processes of both deployments (SQLite;
PostgreSQL, which cannot store U+0000 and answered 500 before): REST answers 422 ``invalid_input``
naming the field, the socket an ``error`` frame ``invalid_field`` naming it; nothing is committed and
the value never reaches the log.

The fields are read from the server's own OpenAPI document and from ``TEXT_FIELDS`` (the socket's
registry), so a new route, field or op is walked without editing this test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from realtime.messages import TEXT_FIELDS
from tests.e2e.deployments import DEPLOYMENTS, Deployment, deployment

# NUL (PostgreSQL's 500 before), ESC (terminal escapes in logs), DEL, and a C1 control (NEL).
CHARS = ("\x00", "\x1b", "\x7f", "\x85")
CANARY = f"canary{uuid.uuid4().hex[:12]}"
# Roles tried in turn until one passes the route's role check (the body is read after it).
ROLE_ORDER = ("admin", "patient", "doctor", "dispatcher")


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with deployment(request.param, tmp_path_factory.mktemp(f"input-{request.param}")) as running:
        yield running


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return document["components"]["schemas"][ref.split("/")[-1]] if ref else schema


def _takes_text(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Whether a value of ``schema`` can be (or hold) a string."""
    schema = _resolve(document, schema)
    if schema.get("type") == "string":
        return True
    if isinstance(schema.get("items"), dict) and _takes_text(document, schema["items"]):
        return True
    return any(_takes_text(document, sub) for sub in schema.get("anyOf", ()))


def text_inputs(document: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(method, path, "body" | "query", field)`` for every text field of every operation."""
    found = []
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            for param in op.get("parameters", ()):
                if param["in"] == "query" and _takes_text(document, param["schema"]):
                    found.append((method.upper(), path, "query", param["name"]))
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:
                for name, prop in _resolve(document, body["schema"])["properties"].items():
                    if _takes_text(document, prop):
                        found.append((method.upper(), path, "body", name))
    return found


def _url(deployed: Deployment, path: str) -> str:
    # Any id: the body and the query are read before the id is looked up.
    filled = path
    while "{" in filled:
        start = filled.index("{")
        filled = filled[:start] + str(uuid.uuid4()) + filled[filled.index("}", start) + 1 :]
    return deployed.server.url + filled


def _send(deployed: Deployment, client: httpx.Client, target: tuple[str, str, str, str], value: str) -> Any:
    method, path, where, field = target
    for role in ROLE_ORDER:
        response = client.request(
            method,
            _url(deployed, path),
            headers={"Authorization": f"Bearer {deployed.tokens[role]}"},
            json={field: value} if where == "body" else ({} if method != "GET" else None),
            params={field: value} if where == "query" else None,
        )
        if response.status_code not in (401, 403):
            return response
    raise AssertionError(f"no role may call {method} {path}")


def test_rest_refuses_control_characters_in_every_text_field(deployed: Deployment) -> None:
    before = deployed.row_counts()
    with httpx.Client(timeout=10) as client:
        document = client.get(f"{deployed.server.url}/v1/openapi.json").json()
        targets = text_inputs(document)
        # The walk reaches the fields the issue names: login, registration, call, chat, cancel reason.
        assert {
            ("POST", "/v1/auth/login", "body", "login"),
            ("POST", "/v1/auth/register", "body", "full_name"),
            ("POST", "/v1/calls", "body", "address"),
            ("POST", "/v1/calls", "body", "symptoms"),
            ("POST", "/v1/calls/{call_id}/messages", "body", "text"),
            ("POST", "/v1/calls/{call_id}/cancel", "body", "reason"),
            ("GET", "/v1/zones", "query", "bbox"),
        } <= set(targets)
        failures = []
        for target in targets:
            for char in CHARS:
                response = _send(deployed, client, target, f"{CANARY}{char}tail")
                error = response.json().get("error", {}) if response.content else {}
                expected = (422, "invalid_input", target[3])
                if (response.status_code, error.get("code"), error.get("field")) != expected:
                    failures.append((target, f"U+{ord(char):04X}", response.status_code, response.text[:200]))
                assert CANARY not in response.text  # the value is not echoed either
        # The one text header: Idempotency-Key (a tab inside; NUL cannot cross HTTP/1.1 at all).
        response = client.post(
            f"{deployed.server.url}/v1/calls",
            headers={"Authorization": f"Bearer {deployed.tokens['patient']}", "Idempotency-Key": "a\tb"},
            json={
                "address": "Test street 1",
                "lat": 55.75,
                "lon": 37.61,
                "urgency": "urgent",
                "specialty": "therapist",
            },
        )
        assert (response.status_code, response.json()["error"]["field"]) == (422, "Idempotency-Key")
    assert not failures, failures
    assert deployed.row_counts() == before
    log = deployed.server.output()
    assert "request refused" in log and "field=" in log  # refusals are logged, by field name
    assert CANARY not in log and "\x00" not in log and "Traceback" not in log


def test_socket_refuses_control_characters_in_every_frame_field(deployed: Deployment) -> None:
    before = deployed.row_counts()
    url = deployed.server.url.replace("http://", "ws://") + f"/v1/ws?token={deployed.tokens['doctor']}"

    async def walk() -> list[Any]:
        failures = []
        async with connect(url, compression=None) as ws:
            ref = 0
            for op, fields in TEXT_FIELDS.items():
                for field in fields:
                    for char in CHARS:
                        ref += 1
                        value = f"{CANARY}{char}tail"
                        frame: dict[str, Any] = {"op": op, "ref": ref}
                        if field == "since.epoch":
                            frame["since"] = {"offset": 0, "epoch": value}
                        else:
                            frame[field] = value
                        await ws.send(orjson.dumps(frame).decode())
                        while True:
                            answer = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                            if answer.get("op") == "error" and answer.get("ref") in (ref, None):
                                break
                        got = (answer.get("code"), answer.get("field"))
                        if got != ("invalid_field", field) or CANARY in str(answer):
                            failures.append((op, field, f"U+{ord(char):04X}", answer))
        return failures

    failures = asyncio.run(walk())
    assert not failures, failures
    assert deployed.row_counts() == before
    log = deployed.server.output()
    assert "frame refused" in log
    assert CANARY not in log and "\x00" not in log and "Traceback" not in log
