"""The reconcile queue: one entry per key, earliest due time wins, never two workers per key."""

from __future__ import annotations

import asyncio
import time

from slipway.handlers.queue import WorkQueue


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_a_key_added_many_times_is_processed_once() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for _ in range(50):
            queue.add("a")
        queue.add("b")
        got = [await queue.get(), await queue.get()]
        assert len(queue) == 0
        return got

    assert sorted(run(scenario())) == ["a", "b"]  # type: ignore[arg-type]


def test_the_earliest_due_time_wins_and_keys_come_in_time_order() -> None:
    async def scenario() -> tuple[list[str], float]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("late", 0.3)
        queue.add("soon", 5.0)
        queue.add("soon", 0.1)  # earlier: replaces the 5 s wait
        queue.add("late", 9.0)  # later: ignored
        start = time.monotonic()
        order = [await queue.get(), await queue.get()]
        return order, time.monotonic() - start

    order, waited = run(scenario())  # type: ignore[misc]
    assert order == ["soon", "late"]
    assert 0.25 <= waited < 2.0


def test_a_key_added_while_running_runs_again_after_done_not_concurrently() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        assert await queue.get() == "a"
        queue.add("a")  # an event arrives while "a" is being processed
        try:
            await asyncio.wait_for(queue.get(), 0.2)
            raise AssertionError("a running key was handed out twice")
        except TimeoutError:
            pass
        queue.done("a")
        assert await asyncio.wait_for(queue.get(), 1.0) == "a"

    run(scenario())


def test_a_key_nobody_adds_again_is_forgotten() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("deleted")
        assert await queue.get() == "deleted"
        queue.done("deleted")
        assert len(queue) == 0 and queue.due_in("deleted") is None

    run(scenario())


def test_a_later_add_wakes_a_waiting_consumer() -> None:
    async def scenario() -> float:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("far", 60.0)
        start = time.monotonic()
        asyncio.get_running_loop().call_later(0.1, queue.add, "near")
        assert await asyncio.wait_for(queue.get(), 5.0) == "near"
        return time.monotonic() - start

    assert run(scenario()) < 2.0  # type: ignore[operator]
