"""The per-connection send queue: order, coalescing, overflow, close."""

from __future__ import annotations

import asyncio

import pytest

from realtime.send_queue import SendQueue, SendQueueClosed


async def test_fifo_and_batches() -> None:
    box = SendQueue(max_frames=10)
    for i in range(5):
        assert box.push(f"f{i}")
    assert await box.get(max_batch=3) == ["f0", "f1", "f2"]
    assert await box.get() == ["f3", "f4"]
    assert len(box) == 0 and box.queued_bytes == 0


async def test_coalescing_keeps_position_and_latest_frame() -> None:
    box = SendQueue(max_frames=3)
    box.push("a")
    box.push("p1", coalesce_key="doctor:1")
    box.push("b")
    for i in range(2, 50):  # a burst of positions does not grow the queue nor overflow it
        assert box.push(f"p{i}", coalesce_key="doctor:1")
    assert await box.get() == ["a", "p49", "b"]
    assert box.coalesced == 48
    box.push("p50", coalesce_key="doctor:1")  # after delivery, the key starts a new slot
    assert await box.get() == ["p50"]


async def test_overflow_by_count_and_by_bytes() -> None:
    box = SendQueue(max_frames=2, max_bytes=10)
    assert box.push("1234")
    assert box.push("5678")
    assert not box.push("x")  # count
    await box.get()
    assert box.push("123456789")
    assert not box.push("12")  # bytes: 9 + 2 > 10
    assert not box.push("xy", coalesce_key="k")  # a new coalescing slot counts like any frame


async def test_get_waits_and_close_drains_then_raises() -> None:
    box = SendQueue()
    waiter = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    box.push("late")
    assert await waiter == ["late"]
    box.push("last")
    box.close()
    assert not box.push("refused")
    assert await box.get() == ["last"]
    with pytest.raises(SendQueueClosed):
        await box.get()


async def test_take_never_waits_and_on_ready_fires_when_the_empty_send_queue_gets_a_frame() -> None:
    ready: list[int] = []
    box = SendQueue(max_frames=10, on_ready=lambda: ready.append(len(box)))
    assert box.take() == [] and ready == []
    box.push("a")
    box.push("p1", coalesce_key="k")
    box.push("p2", coalesce_key="k")  # coalesced in place: no new frame, no new signal
    assert ready == [1]
    assert box.take(max_batch=1) == ["a"]
    box.push("b")  # not empty: no signal
    assert ready == [1]
    assert box.take() == ["p2", "b"] and len(box) == 0 and box.queued_bytes == 0
    box.push("c")  # empty again: a new signal
    assert ready == [1, 1]
    box.close()
    assert not box.push("refused") and ready == [1, 1]
    assert box.take() == ["c"] and box.take() == []
