"""Contract of Presence, run against MemoryPresence and RedisPresence.

Expiry is driven by a manual clock shared by every instance under test. "Two processes" are two
instances over two Redis clients; in memory they are two callers of the one instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from realtime.keys import PRESENCE_KEY_SLACK_MS, Keys
from realtime.presence import MAX_INFO_BYTES, Member, Presence
from realtime.presence_memory import MemoryPresence
from realtime.presence_redis import RedisPresence
from tests.clock import ManualClock
from tests.conftest import redis_test_url

TTL_MS = 60_000

PresenceFactory = Callable[[], Presence]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make(backend: str, keys: Keys, clock: ManualClock) -> AsyncIterator[PresenceFactory]:
    """Build an instance of the backend under test: for Redis each call is a process with its own
    client; for memory every call returns the same instance."""
    shared = MemoryPresence(ttl_ms=TTL_MS, clock=clock)
    clients: list[aioredis.Redis] = []

    def factory() -> Presence:
        if backend == "memory":
            return shared
        client = aioredis.Redis.from_url(redis_test_url())
        clients.append(client)
        return RedisPresence(client, keys, ttl_ms=TTL_MS, clock=clock)

    yield factory
    for client in clients:
        await client.aclose()


async def test_join_members_count_leave(make: PresenceFactory, clock: ManualClock) -> None:
    presence = make()
    assert await presence.join("call:c1", "conn-patient", {"user": "p1", "role": "patient"})
    assert await presence.join("call:c1", "conn-doctor", {"user": "d1", "role": "doctor"})
    assert await presence.join("call:c2", "conn-other", {"user": "p2", "role": "patient"})

    members = await presence.members("call:c1")

    assert members == {
        "conn-patient": Member("conn-patient", {"user": "p1", "role": "patient"}, clock.now + TTL_MS),
        "conn-doctor": Member("conn-doctor", {"user": "d1", "role": "doctor"}, clock.now + TTL_MS),
    }
    assert await presence.count("call:c1") == 2
    assert await presence.leave("call:c1", "conn-patient")
    assert not await presence.leave("call:c1", "conn-patient")
    assert set(await presence.members("call:c1")) == {"conn-doctor"}
    assert await presence.count("call:c1") == 1
    assert await presence.members("call:empty") == {}
    assert await presence.count("call:empty") == 0


async def test_rejoin_replaces_info_and_expiry(make: PresenceFactory, clock: ManualClock) -> None:
    presence = make()
    await presence.join("doctor:d1", "conn-1", {"app": "1.0"})
    clock.advance(10_000)

    assert not await presence.join("doctor:d1", "conn-1", {"app": "1.1"})

    assert await presence.members("doctor:d1") == {
        "conn-1": Member("conn-1", {"app": "1.1"}, clock.now + TTL_MS)
    }


async def test_info_is_copied(make: PresenceFactory) -> None:
    presence = make()
    tags = ["cardio"]
    info = {"user": "d1", "tags": tags}
    await presence.join("dispatch", "conn-1", info)
    tags.append("changed-by-caller")
    info["user"] = "changed-by-caller"

    first = await presence.members("dispatch")
    first["conn-1"].info["user"] = "changed-by-reader"

    assert (await presence.members("dispatch"))["conn-1"].info == {"user": "d1", "tags": ["cardio"]}


async def test_entries_of_a_dead_process_expire(make: PresenceFactory, clock: ManualClock) -> None:
    alive, dead = make(), make()
    await alive.join("dispatch", "conn-alive", {"user": "disp-1"})
    await dead.join("dispatch", "conn-dead", {"user": "disp-2"})

    clock.advance(TTL_MS * 6 // 10)
    assert await alive.touch("dispatch", ["conn-alive"]) == frozenset()  # the heartbeat
    # the dead process never touches again
    clock.advance(TTL_MS * 6 // 10)

    assert set(await alive.members("dispatch")) == {"conn-alive"}
    assert await alive.count("dispatch") == 1
    assert await dead.count("dispatch") == 1  # every process sees the same presence


async def test_an_entry_is_gone_exactly_at_its_expiry(make: PresenceFactory, clock: ManualClock) -> None:
    presence = make()
    await presence.join("call:c1", "conn-1", {})

    clock.advance(TTL_MS - 1)
    assert await presence.count("call:c1") == 1
    clock.advance(1)
    assert await presence.count("call:c1") == 0
    assert await presence.members("call:c1") == {}
    assert not await presence.leave("call:c1", "conn-1")


async def test_touch_reports_absent_clients_and_does_not_resurrect(
    make: PresenceFactory, clock: ManualClock
) -> None:
    presence = make()
    await presence.join("call:c1", "conn-1", {"n": 1})
    await presence.join("call:c1", "conn-2", {"n": 2})
    clock.advance(TTL_MS // 2)
    await presence.touch("call:c1", ["conn-2"])
    clock.advance(TTL_MS // 2)  # conn-1 expired now, conn-2 not

    missing = await presence.touch("call:c1", ["conn-1", "conn-2", "never-joined"])

    assert missing == frozenset({"conn-1", "never-joined"})
    assert set(await presence.members("call:c1")) == {"conn-2"}
    assert await presence.touch("call:c1", []) == frozenset()
    # The caller re-joins what touch reported, with the info it holds.
    assert await presence.join("call:c1", "conn-1", {"n": 1})
    assert await presence.count("call:c1") == 2


async def test_invalid_input_is_refused(make: PresenceFactory) -> None:
    presence = make()
    with pytest.raises(ValueError):
        await presence.join("call:{c1}", "conn-1", {})
    with pytest.raises(ValueError):
        await presence.join("call:c1", "", {})
    with pytest.raises(ValueError):
        await presence.join("call:c1", "conn-1", {"blob": "x" * MAX_INFO_BYTES})
    with pytest.raises(TypeError):
        await presence.join("call:c1", "conn-1", {"bad": object()})
    with pytest.raises(TypeError):
        await presence.join("call:c1", "conn-1", ["not", "a", "mapping"])  # type: ignore[arg-type]
    assert await presence.count("call:c1") == 0


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_redis_keys_carry_a_ttl_and_share_a_slot(
    make: PresenceFactory, keys: Keys, redis_client: aioredis.Redis
) -> None:
    presence = make()
    await presence.join("call:c1", "conn-1", {})

    names = [keys.presence_info("call:c1"), keys.presence_expiry("call:c1")]
    for name in names:
        assert 0 < await redis_client.pttl(name) <= TTL_MS + PRESENCE_KEY_SLACK_MS
    assert len({key_slot(n.encode()) for n in names}) == 1
