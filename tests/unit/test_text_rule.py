"""The text rule (realtime/messages.py): control characters refused in every REST body and query field
(server/schemas.py ``Input``) and every string of a socket frame (``decode``), tab and newline kept
where the text may span lines. The lists of fields come from the route registry and
``TEXT_FIELDS``, so a new field or op is covered without touching this file."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from realtime.errors import ErrorCode
from realtime.messages import TEXT_FIELDS, FrameError, control_character, decode
from server.api import Api
from server.notify import offer_seen
from server.routes import api
from server.schemas import Input, Text
from server.ws import ops as ws_ops

REFUSED = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]
NEWLINES = ["\t", "\n", "\r\n"]


def _models() -> list[type[BaseModel]]:
    models = {m for e in api.endpoints for m in (e.body, e.query) if m is not None}
    assert models
    return sorted(models, key=lambda m: m.__name__)


def _fields() -> list[tuple[type[BaseModel], str]]:
    return [(m, f.alias or name) for m in _models() for name, f in m.model_fields.items()]


def _errors(model: type[BaseModel], data: dict[str, Any]) -> list[Any]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return exc.errors()
    return []


@pytest.mark.parametrize("char", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_every_rest_field_refuses_control_characters(char: str) -> None:
    for model, field in _fields():
        # Also in a list (``specialties``, ``zone_ids``): the raw value is walked whatever its type.
        for value in (f"a{char}b", [f"a{char}b"]):
            refused = [e for e in _errors(model, {field: value}) if e["type"] == "control_character"]
            assert [e["loc"] for e in refused] == [(field,)], (model.__name__, field, value)
            assert f"U+{ord(char):04X}" in refused[0]["msg"] and f"a{char}b" not in refused[0]["msg"]


def test_multiline_fields_keep_tab_and_newline_and_no_other_field_does() -> None:
    multiline = {(m.__name__, f) for m, f in _fields() if f in m._multiline}  # type: ignore[attr-defined]
    # The fields documented as multi-line text (docs/api.md, "Text fields").
    assert multiline == {
        ("CallIn", "symptoms"),
        ("BookingIn", "symptoms"),
        ("CancelIn", "reason"),
        ("ReasonIn", "reason"),
        ("OptionalReasonIn", "reason"),
        ("AssignIn", "reason"),
        ("MessageIn", "text"),
        ("RatingIn", "comment"),
        ("SosIn", "message"),
        ("ResolveIn", "note"),
    }
    for model, field in _fields():
        for char in NEWLINES:
            refused = [e for e in _errors(model, {field: f"a{char}b"}) if e["type"] == "control_character"]
            assert bool(refused) != ((model.__name__, field) in multiline), (model.__name__, field, char)


def test_the_document_states_the_rule() -> None:
    document = api.openapi(title="t", version="1")
    schemas = document["components"]["schemas"]
    assert schemas["MessageIn"]["properties"]["text"]["pattern"].startswith("^[^\\u0000-\\u0008\\u000b")
    assert schemas["LoginIn"]["properties"]["login"]["pattern"] == "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def test_a_route_without_the_rule_cannot_be_declared() -> None:
    class Plain(BaseModel):
        name: str

    class Ruled(Input):
        note: Text

    registry = Api()
    with pytest.raises(TypeError, match="Input"):
        registry.route("POST", "/x", summary="x", tag="x", body=Plain)
    with pytest.raises(TypeError, match="Input"):
        registry.route("GET", "/x", summary="x", tag="x", query=Plain)
    registry.route("POST", "/x", summary="x", tag="x", body=Ruled)


def test_control_character_names_the_code_point_only() -> None:
    assert control_character("plain text") is None
    assert control_character("tab\there") == "U+0009"
    assert control_character("tab\there\r\n", multiline=True) is None
    assert control_character("bell\x07", multiline=True) == "U+0007"
    assert control_character("émoji 🚑 and ‰") is None  # anything printable passes


class _Registry:
    def __init__(self) -> None:
        self.ops: set[str] = set()

    def register_op(self, op: str, *_: Any) -> None:
        self.ops.add(op)


def test_every_socket_op_lists_its_text_fields() -> None:
    registry = _Registry()
    ws_ops.register(registry)  # type: ignore[arg-type]
    offer_seen.register(registry)  # type: ignore[arg-type]
    assert registry.ops | {"location", "subscribe", "unsubscribe", "ping"} == set(TEXT_FIELDS)


def _frame(op: str, field: str, value: str) -> dict[str, Any]:
    frame: dict[str, Any] = {"op": op, "ref": 7}
    if field == "since.epoch":
        frame["since"] = {"offset": 0, "epoch": value}
    else:
        frame[field] = value
    return frame


@pytest.mark.parametrize("char", REFUSED, ids=[f"U+{ord(c):04X}" for c in REFUSED])
def test_every_socket_field_refuses_control_characters(char: str) -> None:
    for op, fields in TEXT_FIELDS.items():
        for field in fields:
            with pytest.raises(FrameError) as caught:
                decode(orjson.dumps(_frame(op, field, f"a{char}b")), frozenset(TEXT_FIELDS))
            assert caught.value.code is ErrorCode.INVALID_FIELD and caught.value.field == field, (op, field)
            assert "a" + char not in caught.value.message


def test_socket_text_keeps_newlines_only_where_it_may() -> None:
    for op, fields in TEXT_FIELDS.items():
        for field, multiline in fields.items():
            raw = orjson.dumps(_frame(op, field, "a\nb"))
            if multiline:
                decode(raw, frozenset(TEXT_FIELDS))
            else:
                with pytest.raises(FrameError):
                    decode(raw, frozenset(TEXT_FIELDS))
    # An unlisted field is single-line too: the check is every string of the frame.
    with pytest.raises(FrameError) as caught:
        decode(b'{"op":"chat.send","extra":{"deep":["x\\u0000"]}}', frozenset(TEXT_FIELDS))
    assert caught.value.field == "extra.deep.0"
