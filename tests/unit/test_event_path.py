"""One path for every domain event: dispatch/ and server/ stage events through ``EventPublisher``
(``dispatch/publisher.py``, the transactional outbox writer) and name events only by ``EventType``
(``realtime/event_types.py``).

The walk is static (AST), so it also covers code no test reaches. What it fails on, outside
``dispatch/publisher.py``:

- a call of ``.publish(...)`` or ``.publish_many(...)`` on anything: a domain event is staged in the
  transaction of its change (``async with publisher.transaction() as tx: tx.stage(...)``), never
  published directly, or a crash between the commit and the publish would lose it;
- a call of ``.publish_ephemeral(...)`` whose receiver is not named ``publisher`` (positions: live only,
  still through the door);
- a call of ``.publish_rows(...)`` or ``.publish_committed(...)`` (the publisher's own publishing of
  outbox rows) outside ``dispatch/outbox_relay.py``;
- a string literal equal to an ``EventType`` value. Excluded: string statements (docstrings, attribute
  docstrings: they describe, they publish nothing) and the op name of ``register_op(...)`` (ops are
  client requests; ``chat.read`` and ``doctor.status`` are both an op and an event).
"""

from __future__ import annotations

import ast
import re
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.events import CALL_UNASSIGNED
from dispatch.publisher import Event, EventPublisher
from models.db import make_engine, make_sessionmaker
from realtime.broker import Outgoing, Publication, encode_ephemeral, encode_event
from realtime.broker_memory import MemoryBroker
from realtime.event_types import EventType

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("dispatch", "server")
THE_DOOR = "dispatch/publisher.py"
THE_RELAY = "dispatch/outbox_relay.py"
PUBLISH_METHODS = frozenset({"publish_ephemeral"})
FORBIDDEN_METHODS = frozenset({"publish", "publish_many"})
ROW_METHODS = frozenset({"publish_rows", "publish_committed"})
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


def violations(source: str, *, relay: bool = False) -> list[str]:
    """What in ``source`` (one module of dispatch/ or server/) bypasses the event path, as
    ``"<line>: <what>"`` strings. ``relay``: the module is the outbox relay (it publishes rows)."""
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
                found.append(f"{node.lineno}: .{func.attr}() (stage it: publisher.transaction(), tx.stage)")
            elif isinstance(func, ast.Attribute) and func.attr in ROW_METHODS and not relay:
                found.append(f"{node.lineno}: .{func.attr}() outside the relay (stage it instead)")
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
        if rel != THE_DOOR and (found := violations(path.read_text(), relay=rel == THE_RELAY))
    }
    assert not bad, f"events that bypass dispatch/publisher.py or EventType: {bad}"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("await self.broker.publish(ch, EventType.CHAT_READ, d)", "stage it"),
        ("await self.publisher.publish(ch, EventType.CHAT_READ, d)", "stage it"),
        ("await engine.broker.publish_ephemeral(ch, t, d)", "not the publisher"),
        ("await self.publisher.publish_many([])", "stage it"),
        ("await make().publish_ephemeral(ch, t, d)", "not the publisher"),
        ("await self.publisher.publish_rows(rows)", "outside the relay"),
        ("await publisher.publish_committed(staged)", "outside the relay"),
        ('tx.stage(ch, "call.status", d)', "EventType.CALL_STATUS"),
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
    async with self.publisher.transaction() as tx:
        tx.stage(ch, EventType.CHAT_READ, d)
        tx.doctor(doctor_id, EventType.OFFER_EXPIRED, d)
    await services.publisher.publish_ephemeral(ch, EventType.DOCTOR_POSITION, d)
    gateway.register_op("doctor.status", handler, roles)
    log.info("call.status: %s", x)
'''
    assert violations(source) == []
    assert violations("async def f(self):\n    await self.publisher.publish_rows(rows)\n", relay=True) == []


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
        self.calls: list[tuple[str, str, str, object, str | None]] = []

    async def publish_many(self, events: list[Outgoing]) -> None:
        self.calls.extend(("publish_many", e.channel, e.type, e.data, e.key) for e in events)

    async def publish_ephemeral(self, channel: str, event_type: str, data: object) -> None:
        self.calls.append(("publish_ephemeral", channel, event_type, data, None))


@pytest.fixture
async def sessions(sqlite_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    db = make_engine(sqlite_database_url)
    yield make_sessionmaker(db)
    await db.dispose()


async def test_the_broker_gets_plain_strings_and_keys(sessions: async_sessionmaker[AsyncSession]) -> None:
    broker = _Recorder()
    publisher = EventPublisher(broker, sessions)  # type: ignore[arg-type]
    async with publisher.transaction() as tx:
        tx.stage("call:1", EventType.CHAT_MESSAGE, {"a": 1})
        tx.stage_all([Event("doctor:2", EventType.SOS_NEARBY, {"b": 2})])
        tx.doctor("2", EventType.OFFER_EXPIRED, {"d": 4})
        tx.dispatch(EventType.CALL_CREATED, {"e": 5})
    await publisher.publish_ephemeral("call:1", EventType.DOCTOR_POSITION, {"c": 3})
    ids = [row.id for row, _ in tx.rows]
    keys = [f"outbox:{row.id}:{row.created_ms}" for row, _ in tx.rows]
    assert broker.calls == [
        ("publish_many", "call:1", "chat.message", {"a": 1}, keys[0]),
        ("publish_many", "doctor:2", "sos.nearby", {"b": 2}, keys[1]),
        ("publish_many", "doctor:2", "offer.expired", {"d": 4}, keys[2]),
        ("publish_many", "dispatch", "call.created", {"e": 5}, keys[3]),
        ("publish_ephemeral", "call:1", "doctor.position", {"c": 3}, None),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert all(type(t) is str for _, _, t, _, _ in broker.calls)
    await publisher.aclose()


async def test_frames_are_the_bytes_of_the_literal_path(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The same event staged through the publisher, relayed from its stored row, and published through
    the broker with a literal: the same frame."""
    direct, door = MemoryBroker(clock=lambda: 1), MemoryBroker(clock=lambda: 1)
    publisher = EventPublisher(door, sessions)
    data = {"call": "c1", "status": "searching", "from": None, "eta_s": 12, "deadline": 1732200000123}
    await door.subscribe("call:c1")
    async with publisher.transaction() as tx:
        tx.stage("call:c1", EventType.CALL_STATUS, data)
    ((row, _),) = tx.rows
    staged = await door.receive()
    elsewhere = MemoryBroker(clock=lambda: 1)  # as a relay in another process would publish it
    (relayed,) = await EventPublisher(elsewhere, sessions).publish_rows([row])
    literal = await direct.publish("call:c1", "call.status", data)
    pairs = [(literal, staged), (literal, relayed)]
    pairs.append(
        (
            await direct.publish_ephemeral("call:c1", "doctor.position", data),
            await publisher.publish_ephemeral("call:c1", EventType.DOCTOR_POSITION, data),
        )
    )
    for a, b in pairs:
        assert isinstance(b, Publication)
        assert a.frame.replace(a.epoch.encode(), b"E") == b.frame.replace(b.epoch.encode(), b"E")
        assert type(b.type) is str
    await publisher.aclose()
    await direct.aclose()
    await door.aclose()
    await elsewhere.aclose()
