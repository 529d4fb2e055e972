"""The store writer: the hub records writes without waiting; one task performs them in order in
a worker thread.

Rooms are coalesced (a newer room for the same player replaces the older one before it is
written), so that part is bounded by the number of players.  Other writes (mutes) are kept in
order in a bounded queue; overflow drops the write with an error log and a metric, because the
hub must never wait on the disk.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import trio

from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.store import AsyncStore, Store

log = logging.getLogger(__name__)

StoreOp = Callable[[Store], None]
P = ParamSpec("P")
T = TypeVar("T")
MAX_PENDING_OPS = 10_000
RETRY_AFTER_FAILURE_S = 1.0


class StoreWriter:
    def __init__(self, store: AsyncStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._rooms: dict[str, str] = {}
        self._ops: deque[StoreOp] = deque()
        self._wakeup = trio.Event()
        self._in_flight: trio.Event | None = None  # set when the write under way has landed

    def save_room(self, player_id: str, room_id: str) -> None:
        self._rooms[player_id] = room_id
        self._wakeup.set()

    def submit(self, op: StoreOp) -> None:
        if len(self._ops) >= MAX_PENDING_OPS:
            self._metrics.inc("store_writes_dropped")
            log.error("store writer is %d writes behind; dropping one", len(self._ops))
            return
        self._ops.append(op)
        self._wakeup.set()

    async def read_after_writes(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A store read that sees every write submitted before it (read-your-writes)."""
        await self.flush()
        return await self._store.call(fn, *args, **kwargs)

    async def serve(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            if not await self.flush():
                await trio.sleep(RETRY_AFTER_FAILURE_S)  # a failing disk is not retried hot

    async def flush(self) -> bool:
        """Write everything submitted so far, after any write already under way; False if the
        store refused (the writes stay queued, in order, for the next attempt)."""
        while self._in_flight is not None:
            await self._in_flight.wait()
        # No checkpoint from here until _in_flight is claimed: writes cannot overtake each other.
        rooms, self._rooms = self._rooms, {}
        ops, self._ops = self._ops, deque()
        if not rooms and not ops:
            return True
        self._in_flight = landed = trio.Event()
        try:
            await self._store.call(_write, self._store.store, rooms, list(ops))
        except Exception:
            self._metrics.inc("store_write_errors")
            log.exception("store write failed (%d rooms, %d other writes)", len(rooms), len(ops))
            self._requeue(rooms, ops)
            return False
        finally:
            self._in_flight = None
            landed.set()
        return True

    def _requeue(self, rooms: dict[str, str], ops: deque[StoreOp]) -> None:
        self._rooms = {**rooms, **self._rooms}  # newer rooms submitted meanwhile win
        ops.extend(self._ops)
        self._ops = ops
        self._wakeup.set()


def _write(store: Store, rooms: dict[str, str], ops: list[StoreOp]) -> None:
    if rooms:
        store.save_rooms(rooms)
    for op in ops:
        op(store)
