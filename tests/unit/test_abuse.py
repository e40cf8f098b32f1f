"""The hash gate and the auth counters of server/abuse.py on the memory storage."""

from __future__ import annotations

import asyncio

import pytest
from limits.aio.storage import MemoryStorage

from realtime.errors import ErrorCode
from server.abuse import AuthLimits, HashGate, account_key
from server.errors import Throttled
from server.settings import Settings
from server.ws.caps import SocketCaps


async def test_the_hash_gate_refuses_at_once_beyond_its_queue() -> None:
    gate = HashGate(concurrency=1, queue=1)
    release = asyncio.Event()
    entered: list[int] = []

    async def hash_once(n: int) -> None:
        async with gate.slot():
            entered.append(n)
            await release.wait()

    running = [asyncio.create_task(hash_once(n)) for n in range(2)]
    await asyncio.sleep(0)
    assert gate.inside == 2 and entered == [0]  # one runs, one waits
    with pytest.raises(Throttled) as refused:
        async with gate.slot():
            pass
    assert refused.value.code is ErrorCode.BUSY and refused.value.retry_after_s == 1
    assert refused.value.body()["error"]["message_ru"]
    with pytest.raises(Throttled):
        gate.check()  # the cheap early refusal says the same
    release.set()
    await asyncio.gather(*running)
    assert entered == [0, 1] and gate.inside == 0
    gate.check()
    async with gate.slot():  # free again
        pass


async def test_address_then_account_limits() -> None:
    settings = Settings(login_limit_address="3/minute", login_limit_account="5/minute")
    limits = AuthLimits(MemoryStorage(), settings)
    for _ in range(3):
        await limits.admit("login", "10.0.0.1", "Owner@Example.org")
    with pytest.raises(Throttled) as refused:
        await limits.admit("login", "10.0.0.1", "owner@example.org")
    assert refused.value.code is ErrorCode.TOO_MANY_ATTEMPTS and 1 <= refused.value.retry_after_s <= 60
    # The refused try did not count against the account: two more from elsewhere still pass.
    await limits.admit("login", "10.0.0.2", "owner@example.org")
    await limits.admit("login", "10.0.0.3", " OWNER@example.org ")
    with pytest.raises(Throttled):
        await limits.admit("login", "10.0.0.4", "owner@example.org")
    # Registration has its own counters; "" switches a limit off.
    await limits.admit("register", "10.0.0.1", "owner@example.org")


def test_account_keys_hide_the_login() -> None:
    assert account_key(" A@B.org ") == account_key("a@b.org")
    assert "b.org" not in account_key("a@b.org")


def test_socket_caps_per_user_and_per_address() -> None:
    caps = SocketCaps(per_user=2, per_address=3)
    assert caps.admit("u1", "10.0.0.1") and caps.admit("u1", "10.0.0.1")
    assert not caps.admit("u1", "10.0.0.2")  # the user's cap, from any address
    assert caps.admit("u2", "10.0.0.1")
    assert not caps.admit("u3", "10.0.0.1")  # the address's cap, for any user
    assert caps.refused == 2
    caps.release("u1", "10.0.0.1")
    assert caps.admit("u1", "10.0.0.2") and not caps.admit("u1", "10.0.0.3")
    assert caps.admit("u3", "10.0.0.1")  # the release freed a place of the address too
    assert caps.admit("u4", None)  # no address known (another ASGI server): only the user's cap
