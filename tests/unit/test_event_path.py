"""One path for every domain event: dispatch/ and server/ publish only through ``EventPublisher``
(``dispatch/publisher.py``) and name events only by ``EventType`` (``realtime/event_types.py``).

The walk is static (AST), so it also covers code no test reaches. What it fails on, outside
``dispatch/publisher.py``:

- a call of ``.publish_many(...)`` on anything (the publisher's batch is ``publish_all``);
- a call of ``.publish(...)`` or ``.publish_ephemeral(...)`` whose receiver is not named ``publisher``
  (``self.publisher.publish``, ``services.publisher.publish`` pass; ``self.broker.publish``,
  ``engine.broker.publish`` fail): the next issue turns the publisher into the outbox writer, and an
  event that bypasses it would bypass the outbox;
- a string literal equal to an ``EventType`` value. Excluded: string statements (docstrings, attribute
  docstrings: they describe, they publish nothing) and the op name of ``register_op(...)`` (ops are
  client requests; ``chat.read`` and ``doctor.status`` are both an op and an event).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import orjson
import pytest

from dispatch.events import CALL_UNASSIGNED
from dispatch.publisher import Event, EventPublisher, as_publisher
from realtime.broker import Outgoing, Publication, encode_ephemeral, encode_event
from realtime.broker_memory import MemoryBroker
from realtime.event_types import EventType

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("dispatch", "server")
THE_DOOR = "dispatch/publisher.py"
PUBLISH_METHODS = frozenset({"publish", "publish_ephemeral"})
FORBIDDEN_METHODS = frozenset({"publish_many"})
OP_REGISTRATION = "register_op"

EVENT_NAMES = frozenset(e.value for e in EventType)


def _modules() -> list[Path]:
    return sorted(p for top in SCANNED for p in (ROOT / top).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _receiver(node: ast.expr) -> str:
    """The last name of a call's receiver: ``self.publisher`` -> ``publisher``, ``b`` -> ``b``, a
    call's result or anything else -> ``""``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def violations(source: str) -> list[str]:
    """What in ``source`` (one module of dispatch/ or server/) bypasses the event path, as
    ``"<line>: <what>"`` strings."""
    tree = ast.parse(source)
    found: list[str] = []
    described: set[int] = set()  # ids of string constants that are statements (docstrings) or op names
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            described.add(id(node.value))
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == OP_REGISTRATION and node.args:
                described.add(id(node.args[0]))
            if isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_METHODS:
                found.append(f"{node.lineno}: .{func.attr}() (use EventPublisher.publish_all)")
            elif (
                isinstance(func, ast.Attribute)
                and func.attr in PUBLISH_METHODS
                and _receiver(func.value) != "publisher"
            ):
                found.append(f"{node.lineno}: .{func.attr}() on something that is not the publisher")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in EVENT_NAMES
            and id(node) not in described
        ):
            member = EventType(node.value).name
            found.append(f"{node.lineno}: literal {node.value!r} (use EventType.{member})")
    return sorted(found, key=lambda f: int(f.split(":", 1)[0]))


def test_dispatch_and_server_publish_only_through_the_publisher() -> None:
    modules = {_rel(p): p for p in _modules()}
    bad = {
        rel: found
        for rel, path in modules.items()
        if rel != THE_DOOR and (found := violations(path.read_text()))
    }
    assert not bad, f"events that bypass dispatch/publisher.py or EventType: {bad}"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("await self.broker.publish(ch, EventType.CHAT_READ, d)", "not the publisher"),
        ("await engine.broker.publish_ephemeral(ch, t, d)", "not the publisher"),
        ("await self.publisher.publish_many([])", "publish_all"),
        ("await make().publish(ch, t, d)", "not the publisher"),
        ('await self.publisher.publish(ch, "call.status", d)', "EventType.CALL_STATUS"),
        ('X = {"sos.raised": 1}', "EventType.SOS_RAISED"),
    ],
)
def test_the_walk_catches(snippet: str, expected: str) -> None:
    source = f"async def f(self):\n    {snippet}\n"
    found = violations(source)
    assert len(found) == 1 and expected in found[0], found


def test_the_walk_lets_pass() -> None:
    source = '''
"""Publishes ``call.status``."""
X = 1
"""``chat.read`` on ``call:<id>``."""
async def f(self, services, gateway):
    """``doctor.position``"""
    await self.publisher.publish(ch, EventType.CHAT_READ, d)
    await services.publisher.publish_ephemeral(ch, EventType.DOCTOR_POSITION, d)
    await publisher.publish_all([])
    gateway.register_op("doctor.status", handler, roles)
    log.info("call.status: %s", x)
'''
    assert violations(source) == []


def test_every_event_type_is_documented() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text() + (ROOT / "docs" / "api.md").read_text()
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", text))
    assert not EVENT_NAMES - documented, f"undocumented event types: {sorted(EVENT_NAMES - documented)}"


def test_a_member_encodes_as_its_plain_string() -> None:
    """``EventType`` members change no byte of a frame (orjson writes the string; the encoders agree)."""
    for member in EventType:
        assert isinstance(member, str) and member == member.value
        assert orjson.dumps(member) == orjson.dumps(member.value)
        data = {"kind": member, "n": 1}
        assert encode_event("call:7", member, data, 4096) == encode_event("call:7", member.value, data, 4096)
        assert encode_ephemeral("call:7", member, data, 4096) == encode_ephemeral(
            "call:7", member.value, data, 4096
        )
    assert CALL_UNASSIGNED == "call.unassigned" and hash(CALL_UNASSIGNED) == hash("call.unassigned")


class _Recorder:
    """A broker stand-in recording what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, object]] = []

    async def publish(self, channel: str, event_type: str, data: object) -> None:
        self.calls.append(("publish", channel, event_type, data))

    async def publish_many(self, events: list[Outgoing]) -> None:
        self.calls.extend(("publish_many", e.channel, e.type, e.data) for e in events)

    async def publish_ephemeral(self, channel: str, event_type: str, data: object) -> None:
        self.calls.append(("publish_ephemeral", channel, event_type, data))


async def test_the_broker_gets_plain_strings() -> None:
    broker = _Recorder()
    publisher = EventPublisher(broker)  # type: ignore[arg-type]
    await publisher.publish("call:1", EventType.CHAT_MESSAGE, {"a": 1})
    await publisher.publish_all([Event("doctor:2", EventType.SOS_NEARBY, {"b": 2})])
    await publisher.publish_ephemeral("call:1", EventType.DOCTOR_POSITION, {"c": 3})
    await publisher.publish_doctor("2", EventType.OFFER_EXPIRED, {"d": 4})
    await publisher.publish_dispatch(EventType.CALL_CREATED, {"e": 5})
    assert broker.calls == [
        ("publish", "call:1", "chat.message", {"a": 1}),
        ("publish_many", "doctor:2", "sos.nearby", {"b": 2}),
        ("publish_ephemeral", "call:1", "doctor.position", {"c": 3}),
        ("publish", "doctor:2", "offer.expired", {"d": 4}),
        ("publish", "dispatch", "call.created", {"e": 5}),
    ]
    assert all(type(t) is str for _, _, t, _ in broker.calls)


async def test_frames_are_the_bytes_of_the_literal_path() -> None:
    """The same event through the publisher and through the broker with a literal: the same frame."""
    direct, door = MemoryBroker(clock=lambda: 1), MemoryBroker(clock=lambda: 1)
    publisher = as_publisher(door)
    data = {"call": "c1", "status": "searching", "from": None, "eta_s": 12, "deadline": 1732200000123}
    pairs: list[tuple[Publication, Publication]] = [
        (
            await direct.publish("call:c1", "call.status", data),
            await publisher.publish("call:c1", EventType.CALL_STATUS, data),
        ),
        (
            await direct.publish_ephemeral("call:c1", "doctor.position", data),
            await publisher.publish_ephemeral("call:c1", EventType.DOCTOR_POSITION, data),
        ),
    ]
    (batched,) = await publisher.publish_all([Event("dispatch", EventType.CALL_STATUS, data)])
    (literal,) = await direct.publish_many([Outgoing("dispatch", "call.status", data)])
    pairs.append((literal, batched))
    for a, b in pairs:
        assert a.frame.replace(a.epoch.encode(), b"E") == b.frame.replace(b.epoch.encode(), b"E")
        assert type(b.type) is str
    await direct.aclose()
    await door.aclose()
