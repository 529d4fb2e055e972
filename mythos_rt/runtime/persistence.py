"""Room saves, coalesced: the hub records the latest room per player without waiting; one task
writes what is pending in one worker-thread call.  Bounded by the number of players, because a
newer room for the same player replaces the older one before it is written."""

from __future__ import annotations

import logging

import trio

from mythos_rt.runtime.store import AsyncStore, Store

log = logging.getLogger(__name__)


class RoomSaver:
    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self._pending: dict[str, str] = {}
        self._wakeup = trio.Event()

    def save(self, player_id: str, room_id: str) -> None:
        self._pending[player_id] = room_id
        self._wakeup.set()

    async def serve(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            await self._store.call(_save_rooms, self._store.store, batch)
        except Exception:
            log.exception("saving %d rooms failed; will retry with the next change", len(batch))
            for player_id, room_id in batch.items():
                self._pending.setdefault(player_id, room_id)


def _save_rooms(store: Store, batch: dict[str, str]) -> None:
    for player_id, room_id in batch.items():
        store.save_room(player_id, room_id)
