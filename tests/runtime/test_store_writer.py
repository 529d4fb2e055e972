"""The store writer keeps every promise: nothing submitted is lost or written twice, whoever is
cancelled and whatever the database does (issue "Storage that keeps every promise").

Everything runs on the autojump clock.  ``SlowStore`` makes each store call take 1 s of mock
time and then run in the Trio thread, so a cancellation lands before a call runs (as with
``trio.to_thread.run_sync`` before its thread starts) and the times below are exact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import pytest
import trio
import trio.testing

from mythos_rt.core.effects import NOT_SAVED
from mythos_rt.core.writes import SaveRoom, SetMute, Write
from mythos_rt.runtime import persistence
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.persistence import StoreWriter
from mythos_rt.runtime.store import Store, TransientStoreError
from mythos_rt.runtime.store.sqlite import SqliteBackend
from tests.runtime.harness import Client, InlineStore, SlowStore, running
from tests.runtime.store_fakes import RecordingBackend, write
from tests.runtime.test_social_runtime import connect_all, result

P = ParamSpec("P")
T = TypeVar("T")
DISK_ERROR = TransientStoreError("Database error: disk I/O error")


def recording_writer(backend: RecordingBackend) -> StoreWriter:
    return StoreWriter(SlowStore(backend), Metrics())  # type: ignore[arg-type]


def mythos_log(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("mythos_rt") and r.levelno == level
    ]


# --- cancellation: a reader, then the writer itself, cancelled at each checkpoint ------------


class CancelAtStep(trio.abc.Instrument):
    """Cancels ``scope`` just before step number ``step`` (0: the first) of the task named
    ``name``.  The Cancelled then lands at the checkpoint that ends that step, so running with
    ``step`` = 0, 1, 2, ... visits each of the task's checkpoints in turn."""

    def __init__(self, name: str, scope: trio.CancelScope, step: int) -> None:
        self.name, self.scope, self.step = name, scope, step
        self.steps = 0  # the task's steps so far
        self.fired = False  # reached step ``step``, and cancelled there
        self.task: trio.lowlevel.Task | None = None

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if task.name == self.name:
            self.task = task

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            if self.steps == self.step:
                self.fired = True
                self.scope.cancel()
            self.steps += 1


async def cancelled_at_step(
    name: str, step: int, run: Callable[[trio.CancelScope, str], Awaitable[None]]
) -> CancelAtStep:
    """``run(scope, name)`` with the task ``name`` it starts cancelled before its step ``step``."""
    instrument = CancelAtStep(name, trio.CancelScope(), step)
    trio.lowlevel.add_instrument(instrument)
    try:
        with trio.fail_after(600):
            await run(instrument.scope, name)
    finally:
        trio.lowlevel.remove_instrument(instrument)
    return instrument


async def sweep(name: str, run: Callable[[trio.CancelScope, str], Awaitable[None]]) -> int:
    """Run with the task cancelled before step 0, 1, 2, ... until a run ends before the step
    is reached; returns how many runs were cancelled.  ``run`` checks its outcome every time.

    (Trio may wake tasks in either order, so one run can take a step more or less than
    another: counting steps in a first run and replaying that count could miss the last.)"""
    step = 0
    while (await cancelled_at_step(name, step, run)).fired:
        step += 1
    return step


class Submitter:
    """Submits writes and remembers them: what the backend must hold in the end."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.submitted: list[Write] = []

    def __call__(self, name: str) -> Write:
        self.submitted.append(write(name))
        self.writer.submit(self.submitted[-1])
        return self.submitted[-1]

    async def others(self, count: int, every_s: float) -> None:
        """Other players' writes, arriving while the test's task runs."""
        for index in range(count):
            self(f"other-{index}")
            await trio.sleep(every_s)


async def test_a_reader_cancelled_at_any_checkpoint_loses_and_repeats_no_write(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A handshake submits a write, reads after it, submits another and reads again, while
    other writes arrive.  Cancelled at each of its checkpoints in turn: every write submitted
    lands exactly once, in order, and each read that happened saw the writes before it."""

    async def run(scope: trio.CancelScope, name: str) -> None:
        backend = RecordingBackend()
        writer = recording_writer(backend)
        submit = Submitter(writer)

        async def handshake() -> None:
            with scope:
                hello = submit("hello")
                await writer.read_after_writes(backend.read, "read-1")
                assert backend.landed(hello) < backend.index("read-1")
                bye = submit("bye")
                await writer.read_after_writes(backend.read, "read-2")
                assert backend.landed(bye) < backend.index("read-2")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.serve)
            submit("before")  # under way when the handshake starts
            async with trio.open_nursery() as tasks:
                tasks.start_soon(submit.others, 4, 0.4)
                tasks.start_soon(handshake, name=name)
            await writer.wait_durable()
            nursery.cancel_scope.cancel()
        assert backend.committed() == submit.submitted
        assert writer.durable_through == len(submit.submitted)

    assert await sweep("handshake", run) >= 4


async def test_the_writer_cancelled_at_any_checkpoint_then_restarted_loses_and_repeats_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Batches, a poisoned write (the one-at-a-time path) and later writes; the writer task is
    cancelled at each of its checkpoints in turn (every one is before a store call runs), then
    started again.  Every write lands exactly once, in order; the poisoned one is set aside
    once."""
    poison = write("poison")

    async def run(scope: trio.CancelScope, name: str) -> None:
        backend = RecordingBackend(poisoned={poison})
        writer = recording_writer(backend)
        submit = Submitter(writer)

        async def first_writer() -> None:
            with scope:
                await writer.serve()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_writer, name=name)
            for label in ("A", "B", "C"):
                submit(label)
            await trio.sleep(0.5)  # A, B and C are under way
            for label in ("D", "poison", "E"):
                submit(label)
            await submit.others(3, 1.0)
            with trio.move_on_after(20):  # done by then, unless the writer was cancelled
                await writer.wait_durable()
            scope.cancel()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.serve)
            await writer.wait_durable()
            nursery.cancel_scope.cancel()
        assert backend.committed() == [w for w in submit.submitted if w != poison]
        assert [entry.write for entry in writer.set_aside] == [poison]

    assert await sweep("writer", run) >= 6


async def test_the_writer_cancelled_waiting_for_a_worker_thread_loses_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The real Store: the writer has taken the batch off its queue and waits for the worker
    thread's limiter when it is cancelled.  Nothing was written; started again, it writes the
    batch once, with what came later."""
    backend = RecordingBackend()
    store = Store(backend)  # type: ignore[arg-type]
    writer = StoreWriter(store, Metrics())
    busy = object()
    await store._limiter.acquire_on_behalf_of(busy)  # the one worker thread is taken
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        writer.submit(write("A"))
        writer.submit(write("B"))
        await trio.testing.wait_all_tasks_blocked()
        assert store._limiter.statistics().tasks_waiting == 1  # the writer, holding A and B
        nursery.cancel_scope.cancel()
    store._limiter.release_on_behalf_of(busy)
    assert backend.calls == []
    writer.submit(write("C"))
    async with trio.open_nursery() as nursery:  # no deadline here: the thread takes real time
        nursery.start_soon(writer.serve)
        await writer.wait_durable()
        nursery.cancel_scope.cancel()
    assert backend.batches() == [(write("A"), write("B"), write("C"))]


# --- a poisoned write is set aside; the rest land ------------------------------------------


async def test_a_poisoned_write_is_set_aside_while_the_writes_behind_it_land(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = SqliteBackend.open(tmp_path / "store.db")
    try:
        muter, *targets = backend.add_players(
            ["Muter", *(f"Target{i}" for i in range(100))], room_id="room"
        )
        metrics = Metrics()
        writer = StoreWriter(InlineStore(backend), metrics)
        committed: dict[str, bool] = {}
        # The target is no player: the foreign key refuses this write, every time.
        poison = SetMute(muter.player_id, "no-such-player", None)
        writer.submit(poison, lambda ok: committed.setdefault("poison", ok))
        for target in targets:
            mute = SetMute(muter.player_id, target.player_id, None)
            writer.submit(mute, lambda ok, t=target.name: committed.setdefault(t, ok))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.serve)
            with trio.fail_after(60):
                await writer.wait_durable()
            nursery.cancel_scope.cancel()
        stored = backend.load_mutes(muter.player_id, time.time()).personal
    finally:
        backend.close()

    assert set(stored) == {target.player_id for target in targets}
    assert committed == {"poison": False, **{target.name: True for target in targets}}
    [aside] = writer.set_aside
    assert aside.write == poison and "FOREIGN KEY" in aside.error
    assert metrics.value("store_writes_set_aside") == 1
    [logged] = mythos_log(caplog, logging.ERROR)
    assert "set aside" in logged and "no-such-player" in logged
    assert writer.healthy


# --- a transient failure: retried with backoff, overdue confirmations withdrawn --------------


async def test_a_failing_store_is_retried_with_backoff_and_overdue_confirmations_withdrawn(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mythos_rt")
    backend, metrics = RecordingBackend(failures=[DISK_ERROR] * 4), Metrics()
    writer = StoreWriter(SlowStore(backend), metrics, ack_timeout_s=3.0)  # type: ignore[arg-type]
    outcomes: dict[str, tuple[bool, float]] = {}

    def told(name: str) -> Callable[[bool], None]:
        return lambda ok: outcomes.setdefault(name, (ok, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        writer.submit(write("early mute"), told("early mute"))  # its requester is waiting
        writer.save_room("p1", "room-1")  # nobody waits for a room save
        writer.submit(write("no one waits"))
        await trio.sleep(1.5)
        assert not writer.healthy  # readiness answers 503 now
        await trio.sleep(1.0)
        writer.submit(write("late mute"), told("late mute"))
        with trio.fail_after(60):
            await writer.wait_durable()
        nursery.cancel_scope.cancel()

    # Attempts take 1 s each; the pauses between them double from RETRY_FIRST_S.
    attempts = [call.at - start for call in backend.calls]
    first = persistence.RETRY_FIRST_S
    assert attempts == pytest.approx([1, 2 + first, 3 + 3 * first, 4 + 7 * first, 5 + 15 * first])
    # The early mute's requester had waited ack_timeout_s by the third failure: told, not kept.
    assert outcomes == {
        "early mute": (False, pytest.approx(3 + 3 * first)),
        "late mute": (True, pytest.approx(5 + 15 * first)),
    }
    assert backend.committed() == [
        SaveRoom("p1", "room-1"),
        write("no one waits"),
        write("late mute"),
    ]
    assert writer.healthy and writer.durable_through == 4
    assert metrics.value("store_writes_withdrawn") == 1
    assert mythos_log(caplog, logging.ERROR) == [
        "store write failed, retrying with backoff: Database error: disk I/O error"
    ]
    assert "store writes succeed again" in mythos_log(caplog, logging.INFO)


# --- through the hub: confirmations follow the store ---------------------------------------


class OutageStore(InlineStore):
    """The store during an outage: every call fails until ``failing`` is cleared."""

    failing = True

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        await trio.lowlevel.checkpoint()
        if self.failing:
            raise DISK_ERROR
        return fn(*args, **kwargs)

    async def ends(self, writer: StoreWriter) -> None:
        """The database is back: healthy again by the writer's next attempt (RETRY_MAX_S at
        the latest), with what it kept written."""
        self.failing = False
        await trio.sleep(persistence.RETRY_MAX_S)
        await trio.testing.wait_all_tasks_blocked()
        assert writer.healthy


async def say_and_hear(speaker: Client, listener: Client, text: str) -> str:
    """What ``listener`` hears next after ``speaker`` says ``text``."""
    await speaker.command("say", text)
    heard: str = (await listener.next_event("chat_message"))["data"]["message"]
    return heard


async def test_a_mute_during_a_store_outage_is_refused_and_works_after_recovery(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    ack_timeout_s = 3.0
    async with running(tmp_path, store_ack_timeout_s=ack_timeout_s) as h:
        armitage, wilmarth, dyer = await connect_all(h, "Armitage", "Wilmarth", "Dyer")
        writer, muter = h.app.store_writer, h.players["Wilmarth"].player_id
        outage = OutageStore(h.store)
        writer._store = outage

        await wilmarth.command("mute", "Dyer")  # the writer still looked healthy: queued
        asked = trio.current_time()
        await result(wilmarth, NOT_SAVED)
        waited_s = trio.current_time() - asked
        assert ack_timeout_s <= waited_s <= ack_timeout_s + persistence.RETRY_MAX_S
        assert not writer.healthy
        assert "mythos_rt_store_healthy 0" in h.app.metrics.render()
        await wilmarth.command("mute", "Dyer")  # known unhealthy: refused at once
        asked = trio.current_time()
        await result(wilmarth, NOT_SAVED)
        assert trio.current_time() == asked
        assert await say_and_hear(dyer, wilmarth, "still heard") == "Dyer says: still heard"
        assert h.store.load_mutes(muter, time.time()).personal == {}

        await outage.ends(writer)
        await wilmarth.command("mute", "Dyer")
        await result(wilmarth, "You have muted Dyer permanently.")
        await dyer.command("say", "muted")
        await result(dyer, "You say: muted")  # sent before the marker
        assert await say_and_hear(armitage, wilmarth, "marker") == "Armitage says: marker"
        assert set(h.store.load_mutes(muter, time.time()).personal) == {h.players["Dyer"].player_id}


async def test_a_player_created_while_the_server_runs_can_be_muted_by_name(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth = await connect_all(h, "Armitage", "Wilmarth")
        (lake,) = h.store.add_players(["Lake"], room_id=h.app.hub.world.start_room_id)
        h.players["Lake"] = lake  # only for the token below: the hub has never heard of Lake

        await wilmarth.command("mute", "Lake")
        await result(wilmarth, "You have muted Lake permanently.")
        await wilmarth.command("mute", "Nobody")
        await result(wilmarth, "Player 'Nobody' not found.")
        muter = h.players["Wilmarth"].player_id
        assert set(h.store.load_mutes(muter, time.time()).personal) == {lake.player_id}

        lake_client = await h.connect("Lake")
        await lake_client.command("say", "muted")
        await result(lake_client, "You say: muted")  # sent before the marker
        assert await say_and_hear(armitage, wilmarth, "marker") == "Armitage says: marker"


async def test_a_name_look_up_during_a_store_outage_says_try_again_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The store cannot say whether Lake exists, so "not found" would be false; and a look-up
    must not wait out the outage behind a room save that cannot land."""
    async with running(tmp_path) as h:
        (wilmarth,) = await connect_all(h, "Wilmarth")
        h.store.add_players(["Lake"], room_id=h.app.hub.world.start_room_id)
        outage = OutageStore(h.store)
        h.app.store_writer._store = outage

        await wilmarth.command("mute", "Lake")  # nothing pending, the writer looks healthy
        await result(wilmarth, NOT_SAVED)
        await wilmarth.command("north")  # a room save that waits for the store
        north = (await result(wilmarth, "You go north."))["data"]["room_id"]
        await wilmarth.command("mute", "Lake")
        asked = trio.current_time()
        await result(wilmarth, NOT_SAVED)
        assert trio.current_time() == asked

        await outage.ends(h.app.store_writer)
        record = h.store.get_player(h.players["Wilmarth"].player_id)
        assert record is not None and record.room_id == north  # the room save was kept
        await wilmarth.command("mute", "Lake")
        await result(wilmarth, "You have muted Lake permanently.")
