"""A keyed work queue with delays: what replaces one kopf timer per object.

Watch events and the decision core's "look again at" times both land here as
``add(key, delay)``. A key is held once however often it is added (the
earliest due time wins), and never handed to two workers at once: a key added
while it is being processed runs again right after. Work therefore grows with
change, not with the number of objects, and a key nobody adds again is
forgotten, so a deleted object gets no more work.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Due keys in time order; one consumer calls ``get`` and later ``done``."""

    def __init__(self) -> None:
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._running: set[K] = set()
        self._again: dict[K, float] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due) + len(self._again)

    def add(self, key: K, delay: float = 0.0) -> None:
        """Process ``key`` after ``delay`` seconds, or sooner if already due sooner."""
        due = time.monotonic() + max(delay, 0.0)
        if key in self._running:
            self._again[key] = min(due, self._again.get(key, due))
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        self._changed.set()

    def due_in(self, key: K) -> float | None:
        """Seconds until ``key`` is due (None if it is not queued)."""
        due = self._due.get(key, self._again.get(key))
        return None if due is None else due - time.monotonic()

    async def get(self) -> K:
        """The next due key; it counts as running until ``done(key)``."""
        while True:
            self._changed.clear()
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:
                    heapq.heappop(self._heap)  # superseded by an earlier add
                    continue
                wait = due - time.monotonic()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                del self._due[key]
                self._running.add(key)
                return key
            timeout = self._heap[0][0] - time.monotonic() if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    def done(self, key: K) -> None:
        """Finished with ``key``; if it was added meanwhile it is queued again."""
        self._running.discard(key)
        again = self._again.pop(key, None)
        if again is not None:
            self.add(key, again - time.monotonic())
