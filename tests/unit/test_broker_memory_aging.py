"""The memory broker releases an idle channel's history once it has aged out (as Redis expires
``ch:{c}:hist`` after ``max_age_ms``), keeping only its offset and epoch until the meta TTL: a finished
call's channel must not hold its events for a day (the soak's server grew ~5 KB per call)."""

from __future__ import annotations

from realtime.broker import HistoryPolicy, StreamPosition
from realtime.broker_memory import MemoryBroker
from tests.clock import ManualClock

POLICY = HistoryPolicy(size=10, max_age_ms=60_000, meta_ttl_ms=3_600_000)


def _held(broker: MemoryBroker) -> dict[str, tuple[int, int]]:
    """Per channel: (publications held, keys held)."""
    return {c: (len(s.history), len(s.keys)) for c, s in broker._streams.items()}


async def test_an_idle_channels_history_is_released_after_max_age_but_its_offset_stays() -> None:
    clock = ManualClock()
    broker = MemoryBroker(history=POLICY, clock=clock)
    for n in range(5):
        await broker.publish("call:done", "call.status", {"n": n}, key=f"outbox:{n}:0")
    clock.advance(30_000)
    await broker.publish("call:busy", "call.status", {"n": 0})
    assert _held(broker) == {"call:done": (5, 5), "call:busy": (1, 0)}  # not aged yet
    clock.advance(30_000)  # call:done's last publication is max_age old
    await broker.publish("call:busy", "call.status", {"n": 1})
    assert _held(broker) == {"call:done": (0, 0), "call:busy": (2, 0)}
    done = await broker.position("call:done")
    assert done.offset == 5  # the offset and epoch live on until the meta TTL: no false new epoch
    assert await broker.position("call:done") == StreamPosition(offset=5, epoch=done.epoch)
    await broker.publish("call:done", "call.status", {"n": 5})
    assert (await broker.position("call:done")).offset == 6
    await broker.aclose()


async def test_a_channel_published_again_before_max_age_keeps_its_history() -> None:
    clock = ManualClock()
    broker = MemoryBroker(history=POLICY, clock=clock)
    await broker.publish("call:c", "call.status", {"n": 0})
    clock.advance(50_000)
    await broker.publish("call:c", "call.status", {"n": 1})
    clock.advance(20_000)  # 70 s after the first, 20 s after the last
    await broker.publish("call:other", "call.status", {"n": 0})
    # Not released: its last publication is younger than max_age (the older one is trimmed by the
    # channel's own next touch, as before).
    assert _held(broker)["call:c"] == (2, 0)
    await broker.aclose()
