"""Keyed one-shot timers on trio time, run by their owner's task.

Scheduling under an existing key replaces that timer; cancelled or replaced entries stay in the
heap and are skipped when they come up (cheaper than removing them).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Callable, Hashable

import trio

Callback = Callable[[float], None]
log = logging.getLogger(__name__)


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, tuple[int, Callback]] = {}
        self._counter = itertools.count()
        self._changed = trio.Event()

    def schedule(self, key: Hashable, deadline: float, callback: Callback) -> None:
        ticket = next(self._counter)
        self._live[key] = (ticket, callback)
        heapq.heappush(self._heap, (deadline, ticket, key))
        self._changed.set()

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def pending(self, key: Hashable) -> bool:
        return key in self._live

    def fire_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, ticket, key = heapq.heappop(self._heap)
            live = self._live.get(key)
            if live is not None and live[0] == ticket:
                del self._live[key]
                self._run(key, live[1], now)

    @staticmethod
    def _run(key: Hashable, callback: Callback, now: float) -> None:
        # Contained like a connection's fault: one failing timer must not take the server down.
        try:
            callback(now)
        except Exception:
            log.exception("timer %r failed", key)

    def next_deadline(self) -> float:
        while self._heap and self._is_stale(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else math.inf

    async def serve(self) -> None:
        """Fire timers as they fall due, until cancelled."""
        while True:
            with trio.move_on_at(self.next_deadline()):
                await self._changed.wait()
            self._changed = trio.Event()
            self.fire_due(trio.current_time())

    def _is_stale(self, entry: tuple[float, int, Hashable]) -> bool:
        live = self._live.get(entry[2])
        return live is None or live[0] != entry[1]
