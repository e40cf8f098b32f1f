"""The one error-code catalogue (realtime/errors.py): documented, no silent fallback, one code per
refusal on REST and on the socket."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dispatch.errors import DispatchError
from realtime.errors import HTTP_STATUS, ErrorCode, Refusal
from realtime.messages import FrameError
from server.errors import ApiError

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _api_table() -> dict[str, set[str]]:
    """docs/api.md's error table: code -> the statuses its rows give."""
    rows: dict[str, set[str]] = {}
    for line in (DOCS / "api.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and (cells[0].isdigit() or cells[0] == "any other"):
            for code in re.findall(r"`([a-z_]+)`", cells[1]):
                rows.setdefault(code, set()).add(cells[0])
    return rows


def _socket_table() -> set[str]:
    """docs/protocol.md's error-frame table: the codes its rows name."""
    text = (DOCS / "protocol.md").read_text()
    return {
        code
        for line in text.splitlines()
        if line.startswith("| `")
        for code in re.findall(r"`([a-z_]+)`", line.split("|")[1])
    }


def test_every_rest_code_is_documented_with_its_status() -> None:
    table = _api_table()
    for code, status in HTTP_STATUS.items():
        assert str(status) in table.get(code.value, set()), f"docs/api.md: no {status} row for {code.value}"
    assert "any other" in table["http_error"]


def test_every_code_is_documented_somewhere() -> None:
    documented = set(_api_table()) | _socket_table()
    missing = [c.value for c in ErrorCode if c.value not in documented]
    assert not missing, f"codes in realtime/errors.py that no docs table names: {missing}"


def test_every_socket_code_of_a_refusal_is_in_the_protocol_table() -> None:
    socket = _socket_table()
    for code in HTTP_STATUS:
        if code.on_socket().value in socket:
            continue
        # REST-only codes never reach a socket op: the account and zone routes have no socket op.
        assert code in {
            ErrorCode.INVALID_JSON,
            ErrorCode.BAD_REQUEST,
            ErrorCode.PAYLOAD_TOO_LARGE,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            ErrorCode.METHOD_NOT_ALLOWED,
            ErrorCode.INVALID_CREDENTIALS,
            ErrorCode.ROLE_NOT_ALLOWED,
            ErrorCode.ACCOUNT_DISABLED,
            ErrorCode.PHONE_UNCONFIRMED,  # login and phone confirmation are REST only
            ErrorCode.WRONG_CODE,
            ErrorCode.ACCOUNT_EXISTS,
            ErrorCode.LICENCE_EXISTS,
            ErrorCode.CLINIC_EXISTS,
            ErrorCode.NOT_COMPLETED,
            ErrorCode.ALREADY_RATED,
            ErrorCode.TOO_MANY_CELLS,
            ErrorCode.UNKNOWN_ZONE,
            ErrorCode.TOKEN_EXPIRED,
            ErrorCode.TOKEN_REVOKED,
            ErrorCode.TOKEN_INVALID,
            ErrorCode.AUTH_REQUIRED,
            ErrorCode.TOO_MANY_ATTEMPTS,  # login and registration only
            ErrorCode.LINK_EXPIRED,  # share links are REST only (docs/api.md, "Share links")
            ErrorCode.SLOT_TAKEN,  # planned visits are REST only (docs/planned-visits.md)
            ErrorCode.DAILY_LIMIT_REACHED,
            ErrorCode.SERVICE_EXISTS,
        }, f"{code.value} can be refused on REST but docs/protocol.md does not list it"


def test_a_code_outside_the_catalogue_cannot_be_raised() -> None:
    with pytest.raises(ValueError):
        DispatchError("no_such_code", "x")
    with pytest.raises(ValueError, match="socket-only"):
        DispatchError(ErrorCode.BAD_FRAME, "x")
    with pytest.raises(ValueError, match="answers 404"):
        ApiError(ErrorCode.NOT_FOUND, "x", http_status=410)
    with pytest.raises(ValueError):
        ApiError(ErrorCode.HTTP_ERROR, "x")


def test_status_and_body_come_from_the_catalogue() -> None:
    err = DispatchError(ErrorCode.INVALID_TRANSITION, "no", status="completed")
    assert isinstance(err, Refusal)
    assert err.http_status == 409
    assert err.body() == {"error": {"code": "invalid_transition", "message": "no", "status": "completed"}}
    assert ApiError(ErrorCode.HTTP_ERROR, "teapot", http_status=418).http_status == 418


@pytest.mark.parametrize("code", list(HTTP_STATUS))
def test_socket_frame_keeps_the_code(code: ErrorCode) -> None:
    frame = FrameError.from_refusal(DispatchError(code, "m", field="f"))
    expected = ErrorCode.INVALID_FIELD if code is ErrorCode.INVALID_INPUT else code
    assert (frame.code, frame.message, frame.field) == (expected, "m", "f")
