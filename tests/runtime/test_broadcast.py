"""The broadcaster writes straight into TCP sockets (runtime/broadcast.py); real loopback TCP
with small kernel buffers, because only the kernel decides how much of a frame it takes (and,
below, the outbox and the broadcaster with a stand-in kernel that takes a set number of bytes).

What must hold however the kernel splits the writes: every frame arrives whole and in order,
a control frame (the pong to a client's ping) never lands inside a data frame, and a reader
that stalls is still closed 1013 "Client too slow" after the frames it already has.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from mythos_rt.runtime.broadcast import MIN_INTERVAL_S, Broadcaster
from mythos_rt.runtime.connection import Connection
from mythos_rt.runtime.gate import handle_stream
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.wsio import Outbox, _MessageSink
from tests.runtime.harness import Harness, running
from tests.runtime.test_hardening import tcp_pair

LIMITS = {"chat_limit_say": 1000, "command_rate_limit": 1000, "frame_rate_limit": 1000}
LINE = "x" * 490  # about 700 bytes a frame: a 4 KiB buffer fills in the middle of one


class WireReader:
    """A WebSocket client over a real TCP stream that reads only when told to, and keeps every
    event in order (wsproto raises on a frame with another frame's bytes inside it)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self._text = ""
        self.texts: list[dict[str, Any]] = []

    async def handshake(self, target: str) -> None:
        await self.stream.send_all(self.ws.send(Request(host="localhost", target=target)))
        while not any(isinstance(event, AcceptConnection) for event in self.events):
            await self._read_once()

    async def send_ping(self, payload: bytes) -> None:
        await self.stream.send_all(self.ws.send(Ping(payload)))

    async def _read_once(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.ws.receive_data(bytes(data) if data else None)
        for event in self.ws.events():
            self.events.append(event)
            if isinstance(event, TextMessage):
                self._text += event.data
                if event.message_finished:
                    self.texts.append(json.loads(self._text))
                    self._text = ""
        return bool(data)

    async def read_until(self, done: Any) -> None:
        with trio.fail_after(30):  # real clock: generous for a loaded machine
            while not done(self):
                if not await self._read_once():
                    return

    def said(self) -> list[str]:
        return [
            str(frame["data"]["message"])
            for frame in self.texts
            if frame["event_type"] == "chat_message"
        ]


@asynccontextmanager
async def open_reader(h: Harness, nursery: trio.Nursery, name: str) -> AsyncIterator[WireReader]:
    client_stream, server_stream = await tcp_pair(4096)
    async with client_stream:
        nursery.start_soon(handle_stream, h.app.gate, server_stream)
        reader = WireReader(client_stream)
        await reader.handshake(f"/v1/api/ws?token={h.token(name)}")
        await reader.read_until(lambda r: any(f["event_type"] == "welcome" for f in r.texts))
        yield reader


def queued_for(h: Harness, name: str) -> int:
    player_id = h.players[name].player_id
    return sum(s.outbox.queued_bytes for s in h.app.hub._sockets.get(player_id, {}).values())


async def test_frames_written_straight_to_a_full_socket_arrive_whole_and_in_order(
    tmp_path: Path,
) -> None:
    lines = 400  # about 280 KiB for a reader that reads nothing until the end
    async with running(tmp_path, ping_interval_s=1000.0, **LIMITS) as h:
        speaker = await h.connect("Wilmarth")
        async with (
            trio.open_nursery() as connections,
            open_reader(h, connections, "Armitage") as reader,
        ):
            for index in range(lines // 2):
                await speaker.command("say", f"{index:03d} {LINE}")
            await speaker.until_pong()
            assert queued_for(h, "Armitage") > 0, "the kernel buffer never filled"
            # A ping while a frame may be half on the wire: its pong must wait for that frame.
            await reader.send_ping(b"between frames?")
            for index in range(lines // 2, lines):
                await speaker.command("say", f"{index:03d} {LINE}")
            await speaker.until_pong()
            await reader.read_until(lambda r: len(r.said()) == lines)
            connections.cancel_scope.cancel()
    expected = [f"Wilmarth says: {index:03d} {LINE}" for index in range(lines)]
    assert reader.said() == expected
    pongs = [event for event in reader.events if isinstance(event, Pong)]
    assert [pong.payload for pong in pongs] == [b"between frames?"]


async def test_a_reader_that_stalls_on_real_tcp_is_closed_1013_after_whole_frames(
    tmp_path: Path,
) -> None:
    lines = 60
    async with running(tmp_path, ping_interval_s=1000.0, outbox_max_bytes=8192, **LIMITS) as h:
        speaker = await h.connect("Wilmarth")
        async with (
            trio.open_nursery() as connections,
            open_reader(h, connections, "Armitage") as reader,
        ):
            # The first line is read, then the reader stalls: its welcome burst went out less
            # than a broadcaster interval ago, and without this every line could be held (and
            # the outbox overflow) before the first write.
            await speaker.command("say", f"{0:03d} {LINE}")
            await reader.read_until(lambda r: len(r.said()) == 1)
            for index in range(1, lines):
                await speaker.command("say", f"{index:03d} {LINE}")
            heard = await speaker.until_pong()
            await reader.read_until(
                lambda r: any(isinstance(event, CloseConnection) for event in r.events)
            )
            connections.cancel_scope.cancel()
    closes = [event for event in reader.events if isinstance(event, CloseConnection)]
    assert [(close.code, close.reason) for close in closes] == [(1013, "Client too slow")]
    said = reader.said()
    assert 0 < len(said) < lines
    # What did arrive is the start of the conversation, whole and in order.
    assert said == [f"Wilmarth says: {index:03d} {LINE}" for index in range(len(said))]
    # The speaker was answered every line; the stalled reader held nobody up.
    answers = [frame for frame in heard if frame["event_type"] == "command_response"]
    assert len(answers) == lines


# --- the outbox's half of the contract, with a kernel that takes a set number of bytes ---------


class TakesSome:
    """A socket whose kernel buffer has room for ``room`` more bytes."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.wire = bytearray()
        self.writes: list[tuple[float, bytes]] = []  # (trio time, bytes) of every send

    def write_nowait(self, data: bytes) -> int | None:
        taken = data[: self.room]
        self.room -= len(taken)
        self.wire += taken
        self.writes.append((trio.current_time(), taken))
        return len(taken)


class Rounds:
    """A flusher that flushes only when the test says so."""

    def __init__(self) -> None:
        self.due: list[Outbox] = []

    def schedule(self, outbox: Outbox) -> None:
        self.due.append(outbox)

    def flush(self) -> int:
        due, self.due = self.due, []
        return sum(outbox.flush(trio.current_time()) for outbox in due)


def outbox_on(room: int, max_bytes: int = 1 << 20) -> tuple[Outbox, Rounds, TakesSome]:
    rounds, kernel = Rounds(), TakesSome(room)
    outbox = Outbox(max_bytes, rounds)
    outbox.attach(kernel)
    return outbox, rounds, kernel


async def test_frames_of_one_round_go_out_in_one_write_without_the_sender() -> None:
    outbox, rounds, kernel = outbox_on(room=1000)
    outbox.put(b"one")
    outbox.put(b"two")
    assert rounds.flush() == 6
    assert kernel.wire == b"onetwo" and outbox.queued_bytes == 0 and not outbox.mid_frame


async def test_the_rest_of_a_partly_written_frame_leaves_first_and_holds_other_writes() -> None:
    outbox, rounds, kernel = outbox_on(room=4)
    outbox.put(b"first-frame")
    assert rounds.flush() == 4
    assert outbox.mid_frame
    outbox.put(b"second")  # the sender's turn now: the flusher keeps off
    assert rounds.flush() == 0
    control_sent = trio.Event()

    async def control_frame() -> None:
        await outbox.wait_whole()
        control_sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(control_frame)
        await trio.testing.wait_all_tasks_blocked()
        assert not control_sent.is_set()  # a pong now would land inside "first-frame"
        data, close, _ = await outbox.next_batch()
        assert (kernel.wire + data, close) == (b"first-frame" + b"second", None)
    assert control_sent.is_set()


async def test_an_overflow_keeps_the_rest_of_a_partly_written_frame() -> None:
    outbox, rounds, kernel = outbox_on(room=4, max_bytes=16)
    outbox.put(b"first-frame")
    rounds.flush()
    assert not outbox.put(b"x" * 16)  # over the bound: 1013, the queue dropped...
    data, close, _ = await outbox.next_batch()
    assert kernel.wire + data == b"first-frame"  # ...but not the frame the peer is inside
    assert close is not None and (close.code, close.reason) == (1013, "Client too slow")


async def test_a_line_after_a_quiet_spell_goes_at_once_and_a_busy_rooms_lines_share_a_send(
    autojump_clock: trio.abc.Clock,
) -> None:
    metrics = Metrics()
    lag = metrics.histogram("fanout_lag_seconds")
    broadcaster = Broadcaster(metrics.counter("bytes_sent"), lag)
    kernel = TakesSome(room=1 << 20)
    outbox = Outbox(1 << 20, broadcaster)
    outbox.attach(kernel)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(broadcaster.serve)
        await trio.sleep(1)
        said_at = trio.current_time()
        outbox.put(b"first")
        await trio.testing.wait_all_tasks_blocked()
        outbox.put(b"second")  # right behind it: waits for the interval...
        await trio.sleep(MIN_INTERVAL_S / 2)
        outbox.put(b"third")  # ...and this one joins it
        await trio.sleep(MIN_INTERVAL_S)
        nursery.cancel_scope.cancel()
    assert kernel.writes == [(said_at, b"first"), (said_at + MIN_INTERVAL_S, b"secondthird")]
    assert metrics.value("bytes_sent") == len(b"firstsecondthird")


async def test_a_command_s_frames_leave_in_its_own_task_and_only_busy_sockets_wait(
    autojump_clock: trio.abc.Clock,
) -> None:
    metrics = Metrics()
    lag = metrics.histogram("fanout_lag_seconds")
    broadcaster = Broadcaster(metrics.counter("bytes_sent"), lag)  # its task is not running
    busy, quiet = TakesSome(room=1 << 20), TakesSome(room=1 << 20)
    busy_box, quiet_box = Outbox(1 << 20, broadcaster), Outbox(1 << 20, broadcaster)
    busy_box.attach(busy)
    quiet_box.attach(quiet)
    busy_box.put(b"line 1")
    broadcaster.flush()  # what the receive loop does after each frame
    assert busy.writes == [(trio.current_time(), b"line 1")]  # no round waited for
    busy_box.put(b"line 2")
    quiet_box.put(b"pong")
    broadcaster.flush()
    # The busy socket waits for its interval; the other one is not held up by it.
    assert (len(busy.writes), quiet.writes) == (1, [(trio.current_time(), b"pong")])
    await trio.sleep(MIN_INTERVAL_S)
    broadcaster.flush()
    assert busy.writes[1] == (trio.current_time(), b"line 2")


# --- an idle socket holds two tasks (issue 12: memory per idle socket) -------------------------


def task_count() -> int:
    """Every task of this trio run."""
    count, todo = 0, [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


async def test_an_idle_socket_holds_its_reader_and_its_timer_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The receive path runs in trio-websocket's reader and the sender only while it has work:
    an admitted, idle socket costs two tasks (it cost five, about 10 KiB more per socket)."""
    senders: list[str] = []  # the player of every sender started
    start_sender = Connection._start_sender

    def counted(connection: Connection) -> None:
        senders.append(connection._socket.player_id)
        start_sender(connection)

    monkeypatch.setattr(Connection, "_start_sender", counted)
    listeners = ("Armitage", "Rice", "Morgan", "Peaslee", "Dyer")
    sockets = len(listeners)
    names = ("Wilmarth", *listeners)
    async with running(tmp_path, names, ping_interval_s=1000.0, **LIMITS) as h:
        speaker = await h.connect("Wilmarth")
        async with trio.open_nursery() as connections:
            await trio.testing.wait_all_tasks_blocked()
            before = task_count()
            async with contextlib.AsyncExitStack() as readers:
                for name in listeners:
                    await readers.enter_async_context(open_reader(h, connections, name))
                await trio.testing.wait_all_tasks_blocked()
                assert task_count() - before == 2 * sockets
                # A line to all of them is written straight into their sockets: no sender starts
                # for them (the speaker's test stream is not TCP: its sender writes its replies).
                listening = {h.players[name].player_id for name in listeners}
                started = [pid for pid in senders if pid in listening]
                await speaker.command("say", "is anyone there?")
                await speaker.until_pong()
                await trio.testing.wait_all_tasks_blocked()
                assert [pid for pid in senders if pid in listening] == started
                assert task_count() - before == 2 * sockets
                connections.cancel_scope.cancel()


# --- the sender started on demand --------------------------------------------------------------


async def test_a_sender_starts_only_when_the_kernel_is_full_and_ends_when_it_is_done() -> None:
    outbox, rounds, kernel = outbox_on(room=4)
    started: list[str] = []
    outbox.start_sender_on_demand(lambda: started.append("sender"), lambda: None)
    outbox.put(b"ab")
    assert rounds.flush() == 2 and started == []  # the kernel took it: no sender
    outbox.put(b"cdefgh")
    rounds.flush()  # the kernel takes "cd" only
    assert kernel.wire == b"abcd" and started == ["sender"]
    outbox.put(b"ij")  # the sender's turn: it will take this too, nobody else starts
    assert started == ["sender"] and rounds.due == []
    batch = await outbox.take_batch()
    assert batch is not None and batch[0] == b"efghij"
    assert await outbox.take_batch() is None  # nothing left: that sender ends...
    outbox.put(b"kl")  # ...and the flusher writes again (the kernel is still full here)
    assert rounds.flush() == 0
    assert started == ["sender", "sender"]


async def test_frames_queued_before_the_connection_took_over_are_written_then() -> None:
    rounds, kernel = Rounds(), TakesSome(100)
    outbox = Outbox(1 << 20, rounds)
    outbox.put(b"welcome")  # the connect burst is queued by the hub's admission...
    assert rounds.due == []  # ...before the connection attaches the socket
    outbox.attach(kernel)
    outbox.start_sender_on_demand(lambda: None, lambda: None)
    assert rounds.flush() == len(b"welcome") and kernel.wire == b"welcome"


async def test_a_close_requested_before_the_connection_took_over_starts_its_sender_then(
) -> None:
    outbox, _rounds, _kernel = outbox_on(room=100)
    outbox.close(4001, "Connection cleaned up")  # e.g. a kick while the player was admitted
    started: list[str] = []
    outbox.start_sender_on_demand(lambda: started.append("sender"), lambda: None)
    assert started == ["sender"]  # the close is the sender's to perform
    # (The timer arms the close watchdog for it on its first pass: tested with a real clock in
    # test_review_regressions.py.)


async def test_a_close_requested_later_is_told_to_the_connection_and_started() -> None:
    outbox, _rounds, _kernel = outbox_on(room=100)
    started: list[str] = []
    heard: list[str] = []
    outbox.start_sender_on_demand(lambda: started.append("sender"), lambda: heard.append("close"))
    outbox.close(1013, "Client too slow")
    assert heard == ["close"] and started == ["sender"]
    outbox.stop_sender_on_demand()  # the connection is over: nothing more is started or told
    outbox.nudge()
    assert heard == ["close"] and started == ["sender"]


# --- the reader hands messages to the connection (wsio._MessageSink) ---------------------------


async def test_a_message_before_the_connection_takes_over_waits_for_it_in_order() -> None:
    sink = _MessageSink()
    taken: list[str | bytes] = []
    ended: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.send, "first")  # the reader, between accept and admission
        await trio.testing.wait_all_tasks_blocked()
        assert taken == []
        sink.attach(taken.append, lambda: ended.append("end"))
    await sink.send("second")  # once attached: handed over at once, in the reader's task
    assert taken == ["first", "second"] and ended == []


async def test_after_either_side_closes_messages_are_dropped_and_the_end_is_told_once() -> None:
    sink = _MessageSink()
    taken: list[str | bytes] = []
    ended: list[str] = []
    sink.attach(taken.append, lambda: ended.append("end"))
    async with sink:  # the reader holds the channel open while it runs...
        await sink.send("hello")
    assert ended == ["end"]  # ...and its end is the connection's cue
    await sink.aclose()
    await sink.send("too late")
    assert taken == ["hello"] and ended == ["end"]


async def test_a_connection_that_attaches_after_the_peer_left_hears_the_end_at_once() -> None:
    sink = _MessageSink()
    await sink.aclose()  # the peer closed while the player was being admitted
    ended: list[str] = []
    sink.attach(lambda message: None, lambda: ended.append("end"))
    assert ended == ["end"]


class Faulty:
    """A socket whose write raises (a fault of ours, not the peer's)."""

    def write_nowait(self, data: bytes) -> int | None:
        raise RuntimeError("a bug in one socket's write")


async def test_a_fault_writing_one_socket_costs_nobody_else_their_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    lag = metrics.histogram("fanout_lag_seconds")
    broadcaster = Broadcaster(metrics.counter("bytes_sent"), lag)
    faulty, healthy = Outbox(1 << 20, broadcaster), Outbox(1 << 20, broadcaster)
    kernel = TakesSome(room=1 << 20)
    faulty.attach(Faulty())
    healthy.attach(kernel)
    faulty.put(b"to the broken one")
    healthy.put(b"to everyone else")
    broadcaster.flush()  # raises nothing: the reader or broadcaster that flushes goes on
    assert kernel.wire == b"to everyone else"
    assert "writing to a socket failed" in caplog.text
