"""The OpenAPI document is true to the server: schemathesis (property-based, generated from the
document) against real server processes of both deployments, signed in as each role.

Passes when the server answers no 5xx, and every answer conforms to the document: a documented status,
content type, headers and body schema; undocumented methods get 405 with an ``Allow`` that lists exactly
the documented ones. Select it with ``-m schemathesis``.

Bounded on purpose (about a minute and a half on two shared cores, both deployments): the coverage
phase (boundary and wrong-type values of every parameter, deterministic) runs once per deployment,
with the admin, who reaches the most operations; the random phase runs for every role with
:data:`MAX_EXAMPLES` cases per operation. Each run prints its seed: ``schemathesis run ... --seed N``
replays it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.deployments import DEPLOYMENTS, ROLES, Deployment, deployment

pytestmark = [pytest.mark.schemathesis]

MAX_EXAMPLES = 8
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "unsupported_method",
        "allow_header_conformance",
    ]
)
RUN_TIMEOUT_S = 120


@pytest.fixture(scope="module", params=DEPLOYMENTS)
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    with deployment(request.param, tmp_path_factory.mktemp(f"schemathesis-{request.param}")) as running:
        yield running


@pytest.mark.timeout(300)
@pytest.mark.parametrize("role", ROLES)
def test_the_server_answers_as_its_document_says(deployed: Deployment, role: str) -> None:
    phases = "examples,coverage,fuzzing" if role == "admin" else "examples,fuzzing"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{deployed.server.url}/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {deployed.tokens[role]}",
        "--phases",
        phases,
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--warnings",
        "off",
        # The console's and the apps' pages answer 503 by design where the map library was not
        # installed (as here); they are HTML pages for people, not part of the API (the apps'
        # service workers and manifests stay in).
        "--exclude-path",
        "/console",
        "--exclude-path",
        "/app",
        "--exclude-path",
        "/doctor",
        # Logging out revokes the run's own token: every later case would be a (documented) 401 and
        # test nothing. tests/e2e/test_revocation.py covers it.
        "--exclude-path",
        "/v1/auth/logout",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        cwd=deployed.server.log.parent,
    )
    assert result.returncode == 0, (
        f"{deployed.kind} as {role}:\n{result.stdout[-12000:]}\n{result.stderr[-3000:]}"
    )
    assert "generated" in result.stdout and " passed" in result.stdout, result.stdout
    assert deployed.server.process.poll() is None and "Traceback" not in deployed.server.output()
