"""Client frame decoding: every bad input is a FrameError with a code, never another exception."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.errors import ErrorCode
from realtime.messages import FrameError, Generic, Location, Ping, StreamSince, Subscribe, Unsubscribe, decode

OPS = frozenset({"offer.accept"})


def test_location_decodes_with_optional_fields() -> None:
    msg = decode(
        b'{"op":"location","lat":55.75,"lon":37.62,"acc":6,"ts":1732200000123,"heading":90,"ref":"r1"}', OPS
    )
    assert msg == Location(
        lat=55.75, lon=37.62, acc=6.0, ts=1732200000123, heading=90.0, speed=None, ref="r1"
    )


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        (b"not json", ErrorCode.BAD_FRAME, None),
        (b"[1,2]", ErrorCode.BAD_FRAME, None),
        (b'{"op":"teleport"}', ErrorCode.UNKNOWN_OP, "op"),
        (b'{"op":7}', ErrorCode.INVALID_FIELD, "op"),
        (b'{"lat":1}', ErrorCode.INVALID_FIELD, "op"),
        (b'{"op":"location","lat":91,"lon":0,"acc":1,"ts":1}', ErrorCode.INVALID_FIELD, "lat"),
        (b'{"op":"location","lat":0,"lon":-180.5,"acc":1,"ts":1}', ErrorCode.INVALID_FIELD, "lon"),
        (b'{"op":"location","lat":0,"lon":0,"acc":-1,"ts":1}', ErrorCode.INVALID_FIELD, "acc"),
        (b'{"op":"location","lat":0,"lon":0,"acc":1,"ts":"now"}', ErrorCode.INVALID_FIELD, "ts"),
        (b'{"op":"location","lat":true,"lon":0,"acc":1,"ts":1}', ErrorCode.INVALID_FIELD, "lat"),
        (b'{"op":"location","lat":0,"lon":0,"acc":1,"ts":1,"speed":1e9}', ErrorCode.INVALID_FIELD, "speed"),
        (b'{"op":"subscribe"}', ErrorCode.INVALID_FIELD, "ch"),
        (
            b'{"op":"subscribe","ch":"sos","since":{"offset":-1,"epoch":"a"}}',
            ErrorCode.INVALID_FIELD,
            "since.offset",
        ),
        (b'{"op":"subscribe","ch":"sos","since":{"offset":1}}', ErrorCode.INVALID_FIELD, "since.epoch"),
        (b'{"op":"ping","ref":{"a":1}}', ErrorCode.INVALID_FIELD, "ref"),
        (b'{"op":"ping","ref":"' + b"x" * 65 + b'"}', ErrorCode.INVALID_FIELD, "ref"),
    ],
)
def test_refusals_have_codes_and_fields(frame: bytes, code: ErrorCode, field: str | None) -> None:
    with pytest.raises(FrameError) as raised:
        decode(frame, OPS)
    assert raised.value.code is code
    assert raised.value.field == field


def test_ref_is_echoed_on_errors_and_other_ops() -> None:
    with pytest.raises(FrameError) as raised:
        decode(b'{"op":"location","ref":"c-9"}', OPS)
    assert raised.value.ref == "c-9"
    assert decode(b'{"op":"subscribe","ch":"sos","since":{"offset":3,"epoch":"ab"}}', OPS) == Subscribe(
        ch="sos", since=StreamSince(3, "ab"), ref=None
    )
    assert decode(b'{"op":"unsubscribe","ch":"x","ref":5}', OPS) == Unsubscribe(ch="x", ref=5)
    assert decode(b'{"op":"ping"}', OPS) == Ping(ref=None)
    generic = decode(b'{"op":"offer.accept","offer":"o1","ref":"c"}', OPS)
    assert isinstance(generic, Generic) and generic.op == "offer.accept" and generic.fields["offer"] == "o1"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["op", "lat", "lon", "acc", "ts", "ch", "since", "ref", "heading", "speed"]),
        json_values,
    ),
    st.sampled_from(["location", "subscribe", "unsubscribe", "ping", "offer.accept", "x"]),
)
def test_any_object_decodes_or_is_refused_with_a_code(fields: dict[str, object], op: str) -> None:
    frame = orjson.dumps({"op": op, **{k: v for k, v in fields.items() if k != "op"}})
    try:
        decode(frame, OPS)
    except FrameError as exc:
        assert isinstance(exc.code, ErrorCode)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused(raw: bytes) -> None:
    try:
        decode(raw, OPS)
    except FrameError as exc:
        assert exc.code in (ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_OP, ErrorCode.INVALID_FIELD)
