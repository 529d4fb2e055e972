"""The store writer: the one task that writes to the store while the server runs.

Others hand it typed write records (:mod:`mythos_rt.core.writes`) without waiting.  Each
submission gets a ticket; the writer takes everything queued, commits it in one transaction and
then announces "durable through N".  A reader that must see its own writes (a handshake reading
the player's room and mutes) waits for that marker; it never performs writes itself, so a reader
that is cancelled cannot lose anything.

Failures:
- transient (locked, connection lost, read-only, disk full): the batch goes back to the head of
  the queue and is retried with exponential backoff; ``healthy`` is False meanwhile (readiness
  follows it), and confirmations that have waited longer than ``ack_timeout_s`` are withdrawn:
  their writes leave the queue and their requesters are told nothing was saved; with nothing
  left to write, the writer probes the store (``check_writable``) until it takes writes again;
- permanent (a constraint, bad data): the batch is retried one write at a time, and each write
  that still fails is set aside (kept for the operator in ``set_aside``, counted, logged once)
  while the writes behind it land.

Room positions are coalesced (a newer room for a player replaces the older one), so that part of
the queue is bounded by the number of players.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import attrs
import trio

from mythos_rt.core.writes import SaveRoom, Write
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.store import PermanentStoreError, Store, StoreError, TransientStoreError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
MAX_PENDING = 100_000  # beyond this the newest write is refused, counted and its requester told
SET_ASIDE_KEPT = 1000
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0

Done = Callable[[bool], None]  # called once: True after the commit, False if never committed


@attrs.frozen
class Pending:
    ticket: int
    write: Write
    on_done: Done | None
    submitted_at: float  # trio time


@attrs.frozen
class SetAside:
    write: Write
    error: str


class StoreWriter:
    def __init__(self, store: Store, metrics: Metrics, *, ack_timeout_s: float = 5.0) -> None:
        self._store = store
        self._metrics = metrics
        self._ack_timeout_s = ack_timeout_s
        self._rooms: dict[str, Pending] = {}  # player id -> newest room save
        self._queue: deque[Pending] = deque()
        self._submitted = 0  # the last ticket handed out
        self.durable_through = 0  # every ticket up to this one is settled (committed or not)
        self._progress = trio.Event()  # set (and replaced) whenever durable_through moves
        self._wakeup = trio.Event()
        self.healthy = True
        self.set_aside: deque[SetAside] = deque(maxlen=SET_ASIDE_KEPT)

    @property
    def store(self) -> Store:
        return self._store

    # --- what others call --------------------------------------------------------------------

    def save_room(self, player_id: str, room_id: str) -> None:
        """Coalesced: only the newest room per player is written."""
        self._merge_room(self._pending(SaveRoom(player_id, room_id), None))
        self._wakeup.set()

    def _merge_room(self, newer: Pending) -> None:
        # The newest room wins, but it keeps the oldest unwritten ticket: a reader waiting for
        # the older save must not be let through before the player's room is on disk.
        player_id = _room_owner(newer)
        older = self._rooms.get(player_id)
        if older is not None and older.ticket < newer.ticket:
            newer = attrs.evolve(newer, ticket=older.ticket)
        self._rooms[player_id] = newer

    def submit(self, write: Write, on_done: Done | None = None) -> None:
        """Queue a write; ``on_done`` hears once whether it committed."""
        if len(self._queue) >= MAX_PENDING:
            self._metrics.inc("store_writes_refused")
            log.error("store writer is %d writes behind; refusing a write", len(self._queue))
            if on_done is not None:
                on_done(False)
            return
        self._queue.append(self._pending(write, on_done))
        self._wakeup.set()

    async def wait_durable(self) -> None:
        """Until everything submitted so far is settled (needs the writer task running)."""
        target = self._submitted
        while self.durable_through < target:
            await self._progress.wait()

    async def read_after_writes(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A store read that sees every write submitted before it (read-your-writes)."""
        await self.wait_durable()
        return await self._store.call(fn, *args, **kwargs)

    # --- the writer task -----------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff_s = RETRY_FIRST_S
        while True:
            if self.healthy and not self._rooms and not self._queue:
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            if await self._attempt():
                backoff_s = RETRY_FIRST_S
                continue
            await trio.sleep(backoff_s)  # a failing database is not retried hot
            backoff_s = min(backoff_s * 2, RETRY_MAX_S)

    async def _attempt(self) -> bool:
        """Write what is queued; with nothing queued (only while unhealthy), probe the store."""
        if self._rooms or self._queue:
            return await self._write_batch()
        return await self._probe()

    async def _probe(self) -> bool:
        """Unhealthy with nothing left to write (every confirmation withdrawn): no write would
        ever try the store again, since the hub refuses confirmations while we are unhealthy
        and readiness keeps players away.  A test write says when the store is back."""
        try:
            await self._store.call(self._store.backend.check_writable)
        except StoreError:
            return False
        self._recovered()
        return True

    async def _write_batch(self) -> bool:
        """Write everything queued, in one transaction; False after a transient failure."""
        through = self._submitted
        batch = [*self._rooms.values(), *self._queue]
        self._rooms, self._queue = {}, deque()
        try:
            await self._store.call(self._store.backend.apply, [p.write for p in batch])
        except TransientStoreError as exc:
            return self._failed(batch, exc, through)
        except PermanentStoreError:
            return await self._write_one_by_one(batch, through)
        except BaseException:  # Cancelled before the thread started: nothing was written
            self._requeue(batch)
            raise
        self._recovered()
        self._metrics.inc("store_batches_committed")
        self._metrics.inc("store_writes_committed", len(batch))
        for pending in batch:
            self._notify(pending, True)
        self._advance(through)
        return True

    async def _write_one_by_one(self, batch: list[Pending], through: int) -> bool:
        """A batch held a poisoned write: each write in its own transaction finds it."""
        for index, pending in enumerate(batch):
            try:
                await self._store.call(self._store.backend.apply, [pending.write])
            except PermanentStoreError as exc:
                self._set_aside(pending.write, exc)
                self._notify(pending, False)
            except TransientStoreError as exc:
                return self._failed(batch[index:], exc, through)
            except BaseException:
                self._requeue(batch[index:])
                raise
            else:
                self._notify(pending, True)
        self._recovered()
        self._advance(through)
        return True

    def _failed(self, unwritten: list[Pending], exc: Exception, through: int) -> bool:
        if self.healthy:
            log.error("store write failed, retrying with backoff: %s", exc)
        self.healthy = False
        self._metrics.inc("store_write_errors")
        self._requeue(unwritten)
        self._withdraw_overdue()
        self._advance(through)
        return False

    def _recovered(self) -> None:
        if not self.healthy:
            log.info("store writes succeed again")
        self.healthy = True

    def _requeue(self, unwritten: list[Pending]) -> None:
        newer_rooms, self._rooms = self._rooms, {}
        for pending in unwritten:
            if isinstance(pending.write, SaveRoom):
                self._merge_room(pending)
        for pending in newer_rooms.values():  # rooms submitted meanwhile win
            self._merge_room(pending)
        others = [p for p in unwritten if not isinstance(p.write, SaveRoom)]
        self._queue = deque([*others, *self._queue])

    def _withdraw_overdue(self) -> None:
        """While the store fails, a confirmation is not kept waiting forever: a write whose
        requester has waited ``ack_timeout_s`` leaves the queue, and they are told."""
        deadline = trio.current_time() - self._ack_timeout_s
        keep: deque[Pending] = deque()
        for pending in self._queue:
            if pending.on_done is not None and pending.submitted_at <= deadline:
                self._metrics.inc("store_writes_withdrawn")
                self._notify(pending, False)
            else:
                keep.append(pending)
        self._queue = keep

    def _advance(self, through: int) -> None:
        """Move the marker up to ``through``, but never past a write still waiting."""
        waiting = [p.ticket for p in self._queue] + [p.ticket for p in self._rooms.values()]
        settled = min([through, *(ticket - 1 for ticket in waiting)])
        if settled > self.durable_through:
            self.durable_through = settled
            self._progress.set()
            self._progress = trio.Event()

    def _set_aside(self, write: Write, exc: Exception) -> None:
        self.set_aside.append(SetAside(write, str(exc)))
        self._metrics.inc("store_writes_set_aside")
        log.error("store write set aside (it can never succeed): %r: %s", write, exc)

    def _notify(self, pending: Pending, committed: bool) -> None:
        if pending.on_done is None:
            return
        try:
            pending.on_done(committed)
        except Exception:  # the writer must outlive any one confirmation
            log.exception("store confirmation callback failed")

    def _pending(self, write: Write, on_done: Done | None) -> Pending:
        self._submitted += 1
        return Pending(self._submitted, write, on_done, trio.current_time())


def _room_owner(pending: Pending) -> str:
    assert isinstance(pending.write, SaveRoom)
    return pending.write.player_id
