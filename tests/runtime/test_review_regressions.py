"""Regression tests for the defects fixed after review (commit "Review fixes: close handshakes
complete instead of being cut; store writes stay ordered and are retried; ...").

Each test failed before that commit.  Closing handshakes are played by a raw client over a memory
stream (the upgrade and the frames by hand), so the test sees exactly when the server hangs up.
Everything runs on the autojump clock: times are exact, and nothing waits on real time.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
import trio
import trio.testing

from mythos_rt.core.writes import SaveRoom, Write
from mythos_rt.runtime import persistence
from mythos_rt.runtime.gate import handle_stream
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.persistence import StoreWriter
from mythos_rt.runtime.server import drain
from mythos_rt.runtime.store import Store, TransientStoreError
from mythos_rt.runtime.timers import Timers
from tests.runtime.harness import Client, Harness, SlowStore, running, upgrade_request
from tests.runtime.store_fakes import RecordingBackend, write

P = ParamSpec("P")
T = TypeVar("T")
Frame = dict[str, Any]
EXACT = 1e-6  # the autojump clock lands on deadlines; allow only float rounding
OP_CLOSE, OP_PING, OP_PONG, OP_TEXT = 0x8, 0x9, 0xA, 0x1
SUPERSEDED = (4000, "New game session established")
IDLE = (4001, "Connection cleaned up")
TOKEN_EXPIRED = (4401, "Token expired")


# --- a raw WebSocket client ------------------------------------------------------------------


class RawClient:
    """A client that does the upgrade and the frames by hand, and answers nothing on its own."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.texts: list[str] = []
        self.eof = False

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    async def upgrade(self, target: str, headers: tuple[tuple[str, str], ...] = ()) -> int:
        """Send the upgrade request; the response's status (0: hung up before answering)."""
        await self.stream.send_all(upgrade_request(target, headers))
        while b"\r\n\r\n" not in self.buffer:
            if not await self._fill():
                return 0
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        self.buffer = bytearray(rest)
        return int(head.split(b" ", 2)[1])

    async def _take(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not await self._fill():
                return None
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def frame(self) -> tuple[int, bytes] | None:
        """The next (unmasked, unfragmented) server frame: opcode and payload; None at EOF."""
        header = await self._take(2)
        if header is None:
            return None
        opcode, size = header[0] & 0x0F, header[1] & 0x7F
        assert header[1] & 0x80 == 0, "server frames are not masked"
        if size == 126:
            extended = await self._take(2)
            assert extended is not None
            (size,) = struct.unpack("!H", extended)
        elif size == 127:
            extended = await self._take(8)
            assert extended is not None
            (size,) = struct.unpack("!Q", extended)
        payload = await self._take(size)
        assert payload is not None, "EOF inside a frame"
        return opcode, payload

    async def server_close(self) -> tuple[int, str] | None:
        """Read frames (keeping the texts) until the server's close frame; None at EOF."""
        while (frame := await self.frame()) is not None:
            opcode, payload = frame
            if opcode == OP_TEXT:
                self.texts.append(payload.decode())
            elif opcode == OP_CLOSE:
                (code,) = struct.unpack("!H", payload[:2])
                return code, payload[2:].decode()
        return None

    async def until_eof(self) -> None:
        """Read (and ignore) everything until the server hangs up."""
        while await self.frame() is not None:
            pass

    async def send(self, opcode: int, payload: bytes = b"") -> None:
        """One masked client frame (FIN set); payloads here are control-sized (< 126)."""
        assert len(payload) < 126
        mask = os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        await self.stream.send_all(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    async def reply_close(self, code: int) -> None:
        await self.send(OP_CLOSE, struct.pack("!H", code))


async def raw_player(h: Harness, name: str, query: str = "") -> RawClient:
    client = RawClient(h.open_stream())
    assert await client.upgrade(f"/v1/api/ws?token={h.token(name)}{query}") == 101
    return client


def mythos_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith("mythos_rt") and record.levelno >= logging.ERROR
    ]


# --- 1. a server-initiated close waits for the client's close reply -------------------------


async def test_server_close_waits_for_the_reply_then_hangs_up_bounded(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    close_timeout_s = 3.0
    async with running(tmp_path, close_timeout_s=close_timeout_s) as h:
        # A client that never answers: the socket stays up (no reset under our close frame)
        # until the close watchdog cuts it, 2 × close_timeout_s after the close was requested.
        silent = await raw_player(h, "Armitage", "&session_id=first")
        await h.connect("Armitage", query="&session_id=second")
        assert await silent.server_close() == SUPERSEDED
        closed_at = trio.current_time()
        await silent.until_eof()
        held_s = trio.current_time() - closed_at
        assert held_s == pytest.approx(2 * close_timeout_s, abs=EXACT)

        # A client that answers the close: the server hangs up as soon as the reply lands.
        polite = await raw_player(h, "Armitage", "&session_id=third")
        await h.connect("Armitage", query="&session_id=fourth")
        assert await polite.server_close() == SUPERSEDED
        closed_at = trio.current_time()
        await polite.reply_close(SUPERSEDED[0])
        await polite.until_eof()
        assert trio.current_time() == pytest.approx(closed_at, abs=EXACT)
        assert h.app.metrics.value("connection_errors") == 0


async def test_the_timers_own_closes_are_cut_off_after_the_same_bound(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The idle close (4001) and the token's (4401) are requested by the timer itself; a client
    that never answers them is still cut off 2 × close_timeout_s later, not at the next ping."""
    close_timeout_s = 3.0
    settings = {"close_timeout_s": close_timeout_s, "ping_interval_s": 100.0}
    async with running(tmp_path, idle_timeout_s=5.0, **settings) as h:
        silent = await raw_player(h, "Armitage")
        assert await silent.server_close() == IDLE
        closed_at = trio.current_time()
        await silent.until_eof()
        assert trio.current_time() - closed_at == pytest.approx(2 * close_timeout_s, abs=EXACT)
    async with running(tmp_path / "token", idle_timeout_s=1000.0, **settings) as h:
        client = RawClient(h.open_stream())
        target = f"/v1/api/ws?token={h.token('Armitage', ttl_s=50)}"
        assert await client.upgrade(target) == 101
        assert await client.server_close() == TOKEN_EXPIRED
        closed_at = trio.current_time()
        await client.until_eof()
        assert trio.current_time() - closed_at == pytest.approx(2 * close_timeout_s, abs=EXACT)


# --- 3. a ping after our close frame does not crash the reader -------------------------------


async def test_ping_after_the_idle_close_is_not_answered_and_crashes_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path, idle_timeout_s=5.0) as h:
        client = await raw_player(h, "Armitage")
        assert await client.server_close() == IDLE
        closed_at = trio.current_time()
        await client.send(OP_PING, b"late")
        await client.reply_close(IDLE[0])
        frames: list[tuple[int, bytes]] = []
        while (frame := await client.frame()) is not None:
            frames.append(frame)
        assert frames == []  # no pong: the socket is no longer open
        assert trio.current_time() == pytest.approx(closed_at, abs=EXACT)  # the reply landed
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 0
        assert h.app.metrics.value("connection_errors") == 0
        assert mythos_errors(caplog) == []


async def test_ping_during_a_refusal_close_crashes_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The same over the gate's own closing handshake: a browser's refusal (accept, close 4400)."""
    async with running(tmp_path) as h:
        client = RawClient(h.open_stream())
        target = f"/v1/api/ws?token={h.token('Armitage')}&session_id={'x' * 200}"
        assert await client.upgrade(target, (("Origin", "http://x"),)) == 101
        assert await client.server_close() == (4400, "session_id is too long")
        await client.send(OP_PING, b"late")
        await client.reply_close(4400)
        await client.until_eof()
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 0
        assert h.app.metrics.value("connection_errors") == 0
        assert mythos_errors(caplog) == []


# --- 4. the store writer: order, read-your-writes, retries ----------------------------------


async def test_store_writes_stay_in_order_when_reads_race_the_writer(
    autojump_clock: trio.abc.Clock,
) -> None:
    """While A is being written, read2 and read3 wait for the writes submitted before them,
    B and C queue behind A.  Before the fix a read flushed the queue itself, so a read could
    take C and write it ahead of B.  Reads now only wait for the writer's "durable through"
    marker; the writer alone writes, in order.  (The sleeps only place each step on the mock
    clock; every store call takes 1 s.)"""
    backend = RecordingBackend()
    writer = StoreWriter(SlowStore(backend), Metrics())  # type: ignore[arg-type]
    a, b, c = write("A"), write("B"), write("C")

    async def read(name: str, *, submit_first: Write | None = None) -> None:
        if submit_first is not None:  # a handshake: its own write, then a read that must see it
            writer.submit(submit_first)
        await writer.read_after_writes(backend.read, name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with trio.fail_after(60):
            async with trio.open_nursery() as reads:
                reads.start_soon(lambda: read("read1", submit_first=a))  # A: t = 0 .. 1
                await trio.sleep(0.25)
                reads.start_soon(read, "read2")  # waits for A
                await trio.sleep(0.25)
                writer.submit(b)  # queued while A is under way
                await trio.sleep(0.25)
                reads.start_soon(read, "read3")  # waits for A and B
                await trio.sleep(0.05)
                writer.submit(c)
            await writer.wait_durable()
        nursery.cancel_scope.cancel()

    assert backend.batches() == [(a,), (b, c)]
    assert backend.landed(a) < backend.index("read1")
    assert backend.landed(a) < backend.index("read2")
    assert backend.landed(b) < backend.index("read3")
    # The writer did not wait for the reads: B and C landed as soon as A had.
    times = {call.writes: call.at for call in backend.calls if call.what == "apply"}
    assert times[(a,)] == pytest.approx(start + 1, abs=EXACT)
    assert times[(b, c)] == pytest.approx(start + 2, abs=EXACT)


async def test_failed_store_write_is_retried_in_order_with_its_rooms(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RecordingBackend(failures=[TransientStoreError("disk I/O error")] * 2)
    metrics = Metrics()
    writer = StoreWriter(SlowStore(backend), metrics)  # type: ignore[arg-type]
    a, b, c = write("A"), write("B"), write("C")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.serve)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        writer.save_room("p1", "room-1")
        writer.submit(a)
        writer.submit(b)
        await trio.sleep(1.02)  # the first attempt failed at t = 1; the writer is backing off
        assert backend.committed() == [] and metrics.value("store_write_errors") == 1
        assert not writer.healthy
        writer.submit(c)
        writer.save_room("p2", "room-2")
        with trio.fail_after(60):
            await writer.wait_durable()
        nursery.cancel_scope.cancel()

    first, second = [call.writes for call in backend.calls if call.error is not None]
    assert first == (SaveRoom("p1", "room-1"), a, b)
    assert second == (SaveRoom("p1", "room-1"), SaveRoom("p2", "room-2"), a, b, c)
    # Retried as one batch, rooms first, the rest in the order submitted.
    assert backend.batches() == [(SaveRoom("p1", "room-1"), SaveRoom("p2", "room-2"), a, b, c)]
    assert writer.healthy and metrics.value("store_write_errors") == 2
    # Each attempt takes 1 s; the pause after a failure starts at RETRY_FIRST_S and doubles.
    [landed] = [call.at for call in backend.calls if call.error is None]
    pauses_s = persistence.RETRY_FIRST_S * (1 + 2)
    assert landed == pytest.approx(start + 3 + pauses_s, abs=EXACT)
    failures = [r for r in mythos_errors(caplog) if "store write failed" in r.getMessage()]
    assert len(failures) == 1


# --- 5. read-your-writes for the room --------------------------------------------------------


async def walk_north(client: Client) -> str:
    await client.command("north")
    while True:
        frame = await client.next()
        if frame.get("event_type") == "command_response":
            assert frame["data"]["result"] == "You go north.", frame
            room_id: str = frame["data"]["room_id"]
            return room_id


async def test_reconnect_at_once_after_a_move_comes_back_in_the_new_room(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        start_room = armitage.received[0]["data"]["room"]["id"]
        player_id = h.players["Armitage"].player_id
        h.app.store_writer._store = SlowStore(h.store)  # the room save is still under way...
        north = await walk_north(armitage)
        assert north != start_room
        await armitage.command("quit")
        assert await armitage.closed() == (1000, "Goodbye")
        record = h.store.get_player(player_id)
        assert record is not None and record.room_id == start_room  # ...not written yet
        again = await h.connect("Armitage")  # the handshake reads after the pending writes
        state = again.received[0]
        assert state["event_type"] == "game_state"
        assert state["data"]["room"]["id"] == north
        assert state["data"]["player"]["room_id"] == north


# --- 6. the drain --------------------------------------------------------------------------


class GatedSlowStore(SlowStore):
    """SlowStore that says when a call starts."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.called = trio.Event()

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        self.called.set()
        return await super().call(fn, *args, **kwargs)


async def test_handshake_waiting_on_the_store_when_the_drain_starts_is_not_admitted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        slow = GatedSlowStore(h.store)
        h.app.store_writer._store = slow
        outcome: list[tuple[int, tuple[int, str] | None, list[str]]] = []

        async def late_client() -> None:
            client = RawClient(h.open_stream())
            status = await client.upgrade(f"/v1/api/ws?token={h.token('Armitage')}")
            close = await client.server_close() if status == 101 else None
            outcome.append((status, close, client.texts))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(late_client)
            with trio.fail_after(60):
                await slow.called.wait()  # the handshake is reading the player from the store
            started = trio.current_time()
            await drain(h.app)
            drained_s = trio.current_time() - started
        [(status, close, texts)] = outcome
        assert texts == [], "a connect burst went out during the drain"
        # Abandoned before the upgrade (hang-up), refused 503, or accepted then closed.
        assert status in (0, 503, 101), status
        if status == 0:
            assert h.app.metrics.value("handshakes_abandoned") == 1
        if status == 101:
            assert close in ((1001, "Server shutting down"), (4503, "Server is shutting down"))
        assert h.app.metrics.value("sockets_admitted") == 0
        assert h.app.gate.tracker.active == 0
        assert drained_s <= h.app.settings.close_timeout_s


class PausingStream(trio.abc.Stream):
    """The server's end of a memory stream whose first write (the 101) waits for ``release``."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writing = trio.Event()
        self.release = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self.writing.is_set():
            self.writing.set()
            await self.release.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_handshake_accepted_as_the_drain_starts_is_closed_1001(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        paused = PausingStream(server_stream)
        h.nursery.start_soon(handle_stream, h.app.gate, paused)
        client = RawClient(client_stream)
        outcome: list[tuple[int, tuple[int, str] | None, list[str]]] = []

        async def late_client() -> None:
            status = await client.upgrade(f"/v1/api/ws?token={h.token('Armitage')}")
            close = await client.server_close()
            if close is not None:
                await client.reply_close(close[0])
            outcome.append((status, close, client.texts))

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(late_client)
                await paused.writing.wait()  # authenticated; the 101 is on its way out
                nursery.start_soon(drain, h.app)
                await trio.testing.wait_all_tasks_blocked()  # the drain has begun
                assert h.app.gate.draining
                paused.release.set()
        assert outcome == [(101, (1001, "Server shutting down"), [])]
        assert h.app.metrics.value("sockets_admitted") == 0
        assert h.app.gate.tracker.active == 0


async def test_half_open_connection_does_not_hold_the_drain(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        stream = h.open_stream()  # TCP is up, the upgrade request never comes
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 1
        started = trio.current_time()
        await drain(h.app)
        drained_s = trio.current_time() - started
        assert drained_s <= h.app.settings.close_timeout_s < h.app.settings.handshake_timeout_s
        assert h.app.gate.tracker.active == 0
        assert await stream.receive_some(1) == b""  # hung up on


# --- 8. timers contain a failing callback --------------------------------------------------


def test_a_failing_timer_is_logged_and_the_next_one_still_fires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    timers = Timers()
    fired: list[tuple[str, float]] = []

    def explode(now: float) -> None:
        raise RuntimeError("boom")

    timers.schedule("bad", 1.0, explode)
    timers.schedule("same-time", 1.0, lambda now: fired.append(("same-time", now)))
    timers.schedule("later", 2.0, lambda now: fired.append(("later", now)))
    timers.fire_due(5.0)
    assert fired == [("same-time", 5.0), ("later", 5.0)]
    assert not timers.pending("bad") and not timers.pending("later")
    errors = mythos_errors(caplog)
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert "bad" in errors[0].getMessage()
    # The timers still work afterwards.
    timers.schedule("again", 6.0, lambda now: fired.append(("again", now)))
    timers.fire_due(6.0)
    assert fired[-1] == ("again", 6.0)
