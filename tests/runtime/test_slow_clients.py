"""Slow sockets (PROTOCOL.md section 13): a socket whose peer stops reading overflows its bounded
outbox and is closed 1013 "Client too slow", may resume, and never delays anyone else.

The slow peer is a hand-made wsproto client over ``trio.testing.lockstep_stream_pair()``: the
server's ``send_all`` only completes when the client reads, so a client that stops reading
really does stall the server's writes (a ``memory_stream_pair`` buffers without bound).  The
fast clients are ordinary harness clients.  All times are on the autojump mock clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from trio_websocket import ConnectionClosed
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Request, TextMessage

from mythos_rt.runtime.gate import handle_stream
from tests.runtime.harness import Client, Harness, running

Frame = dict[str, Any]
FAST = tuple(f"Fast{i}" for i in range(10))
SLOW_SETTINGS: dict[str, Any] = {
    "outbox_max_bytes": 4096,
    "grace_s": 30.0,
    # One speaker says every line at one instant: lift the per-player limits out of the way.
    "command_rate_limit": 1000,
    "chat_limit_say": 1000,
}
LINES = [f"line {i:02d} " + "o" * 120 for i in range(30)]  # ~30 x 700 bytes >> 4096


@attrs.define
class RawClient:
    """A WebSocket client that reads only when told to."""

    stream: trio.abc.Stream
    ws: WSConnection = attrs.field(factory=lambda: WSConnection(ConnectionType.CLIENT))
    texts: list[str] = attrs.field(factory=list)
    _partial: str = ""

    async def handshake(self, target: str) -> None:
        await self.stream.send_all(self.ws.send(Request(host="localhost", target=target)))
        for event in await self._receive():
            assert isinstance(event, AcceptConnection), event
            return
        raise AssertionError("no handshake response")

    async def _receive(self) -> list[Event]:
        events: list[Event] = []
        while not events:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(bytes(data) if data else None)
            events = list(self.ws.events())
            if not data:
                return events
        return events

    async def read(self) -> list[Frame | CloseConnection]:
        """Read once from the wire; complete text messages (parsed) and a close, if any."""
        out: list[Frame | CloseConnection] = []
        for event in await self._receive():
            if isinstance(event, TextMessage):
                self._partial += event.data
                if event.message_finished:
                    self.texts.append(self._partial)
                    out.append(json.loads(self._partial))
                    self._partial = ""
            elif isinstance(event, CloseConnection):
                out.append(event)
            else:
                raise AssertionError(f"unexpected {event}")
        return out

    async def until_welcome(self) -> list[Frame]:
        frames: list[Frame] = []
        while not frames or frames[-1].get("event_type") != "welcome":
            for item in await self.read():
                assert isinstance(item, dict), item
                frames.append(item)
        return frames

    async def until_close(self) -> tuple[list[Frame], CloseConnection]:
        """Read everything up to the server's close frame, and answer it."""
        frames: list[Frame] = []
        while True:
            for item in await self.read():
                if isinstance(item, CloseConnection):
                    await self.stream.send_all(self.ws.send(item.response()))
                    return frames, item
                frames.append(item)


def open_lockstep(h: Harness) -> trio.abc.Stream:
    """Like ``Harness.open_stream``, but the server's writes block until the client reads."""
    client_stream, server_stream = trio.testing.lockstep_stream_pair()
    h.nursery.start_soon(handle_stream, h.app.gate, server_stream)
    return client_stream


async def connect_slow(h: Harness, name: str, *, read_burst: bool = True) -> RawClient:
    slow = RawClient(open_lockstep(h))
    await slow.handshake(f"/v1/api/ws?token={h.token(name)}")
    if read_burst:
        await slow.until_welcome()
    return slow


async def raw_event(client: Client, event_type: str) -> tuple[str, Frame]:
    """The next event of this type, with its exact text."""
    while True:
        text = await client.ws.get_message()
        assert isinstance(text, str)
        frame: Frame = json.loads(text)
        if frame.get("event_type") == event_type:
            return text, frame


async def say_all(speaker: Client, lines: list[str]) -> None:
    """Say every line; the hub answers each at once, whatever the slow socket is doing."""
    for line in lines:
        with trio.fail_after(1.0):
            await speaker.command("say", line)
            response = await speaker.next_event("command_response")
        assert response["data"]["result"] == f"You say: {line}"


async def heard_in_order(client: Client, lines: list[str]) -> list[str]:
    """Every line, in order, none missing; returns the raw texts."""
    texts, numbers = [], []
    for line in lines:
        text, frame = await raw_event(client, "chat_message")
        assert frame["data"]["original_content"] == line
        texts.append(text)
        numbers.append(frame["sequence_number"])
    assert numbers == sorted(set(numbers))
    return texts


async def wait_linkdead(watcher: Client, name: str) -> None:
    while (
        f"{name} (linkdead)" not in (await watcher.next_event("room_occupants"))["data"]["players"]
    ):
        pass


@attrs.define
class Overflowed:
    speaker: Client
    fast: list[Client]
    fast_texts: list[str]  # every line as each fast client got it (all identical)
    read_by_slow: list[Frame]  # what the slow client read before the close frame
    close: CloseConnection
    last_seen: int  # the last sequence number the slow client read


async def overflow_the_slow_socket(h: Harness) -> Overflowed:
    """Fast clients and a slow one in a room; a speaker says LINES; the slow one reads late."""
    speaker = await h.connect("Armitage")
    fast = [await h.connect(name) for name in FAST]
    slow = await connect_slow(h, "Slow")
    last_seen = json.loads(slow.texts[-1])["sequence_number"]  # its welcome
    for client in (speaker, *fast):
        await client.until_pong()

    await say_all(speaker, LINES)  # the slow client reads nothing meanwhile
    # The fast sockets got every line in order, and the very same bytes.
    texts = [await heard_in_order(client, LINES) for client in fast]
    assert all(t == texts[0] for t in texts)

    # Reading now: what was already on its way, then the close frame; the rest was dropped.
    frames, close = await slow.until_close()
    if frames:
        last_seen = frames[-1]["sequence_number"]
    return Overflowed(speaker, fast, texts[0], frames, close, last_seen)


async def test_slow_socket_is_closed_1013_and_fast_ones_miss_nothing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, ("Armitage", "Slow", *FAST), **SLOW_SETTINGS) as h:
        started = trio.current_time()
        run = await overflow_the_slow_socket(h)
        assert (run.close.code, run.close.reason) == (1013, "Client too slow")
        got = [frame["data"]["original_content"] for frame in run.read_by_slow]
        assert got == LINES[: len(got)] and len(got) < len(LINES)

        await wait_linkdead(run.fast[0], "Slow")  # its only socket is gone: disconnect grace
        presence = h.app.hub.presences.get(h.players["Slow"].player_id)
        assert presence is not None and presence.linkdead
        assert trio.current_time() - started < 5.0  # no heartbeat or idle timeout involved


async def test_after_1013_the_slow_player_resumes_and_gets_what_it_missed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Default replay bound (1,000 events, 1 MiB): the ~17 KB it missed is well within it.
    async with running(tmp_path, ("Armitage", "Slow", *FAST), **SLOW_SETTINGS) as h:
        run = await overflow_the_slow_socket(h)
        assert run.close.code == 1013
        await wait_linkdead(run.fast[0], "Slow")

        back = await h.connect("Slow", query=f"&resume_from={run.last_seen}", read_burst=False)
        replayed: list[str] = []
        try:
            while True:
                text = await back.ws.get_message()
                assert isinstance(text, str)
                welcome = json.loads(text)
                if welcome["event_type"] == "welcome":
                    break
                replayed.append(text)
        except ConnectionClosed as exc:
            raise AssertionError(f"the resumed socket was closed: {exc.reason}") from None
        assert replayed == run.fast_texts[len(run.read_by_slow) :]  # same numbers and bytes
        assert welcome["data"] == {
            "message": "Connected to MythosMUD",
            "resumed": True,
            "replayed": len(LINES) - len(run.read_by_slow),
        }
        entered = await run.fast[0].next_event("player_entered_game")
        assert entered["data"]["player_name"] == "Slow"


async def test_after_1013_a_resume_beyond_the_replay_bound_gets_the_normal_burst(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    settings = {**SLOW_SETTINGS, "replay_max_bytes": SLOW_SETTINGS["outbox_max_bytes"]}
    async with running(tmp_path, ("Armitage", "Slow", *FAST), **settings) as h:
        run = await overflow_the_slow_socket(h)
        assert run.close.code == 1013
        await wait_linkdead(run.fast[0], "Slow")

        back = await h.connect("Slow", query=f"&resume_from={run.last_seen}", read_burst=False)
        burst = await back.burst()
        types = [frame["event_type"] for frame in burst]
        assert types == ["game_state", "room_update", "room_occupants", "welcome"]
        assert burst[-1]["data"] == {"message": "Connected to MythosMUD", "resumed": False}
        entered = await run.fast[0].next_event("player_entered_game")
        assert entered["data"]["player_name"] == "Slow"
        await back.send({"type": "ping"})
        assert (await back.next_event("pong"))["event_type"] == "pong"


async def test_socket_that_never_reads_is_cut_off_and_the_hub_keeps_going(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, ("Armitage", "Slow", *FAST), **SLOW_SETTINGS) as h:
        speaker = await h.connect("Armitage")
        fast = [await h.connect(name) for name in FAST]
        # Not even the connect burst is read: the server's first write already blocks.
        await connect_slow(h, "Slow", read_burst=False)
        for client in (speaker, *fast):
            await client.until_pong()

        await say_all(speaker, LINES[:3])  # stuck, but not yet over the bound
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(1.0):  # others are served while it is stuck
            await speaker.send({"type": "ping"})
            assert (await speaker.next())["event_type"] == "pong"
        await say_all(speaker, LINES[3:])  # over the bound: the socket is to be closed
        with trio.fail_after(1.0):
            await speaker.command("whoami")
            response = await speaker.next_event("command_response")
        assert response["data"]["result"].startswith("You are Armitage")
        for client in fast:
            await heard_in_order(client, LINES)

        # It never reads, so no close frame can reach it: the server lets go of it, bounded.
        with trio.fail_after(10.0):
            await wait_linkdead(fast[0], "Slow")
        presence = h.app.hub.presences.get(h.players["Slow"].player_id)
        assert presence is not None and presence.linkdead
        with trio.fail_after(1.0):
            await speaker.command("whoami")
            response = await speaker.next_event("command_response")
        assert response["data"]["result"].startswith("You are Armitage")


async def test_slow_socket_closes_alone_while_the_players_other_socket_keeps_the_presence(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, ("Armitage", "Slow", *FAST), **SLOW_SETTINGS) as h:
        speaker = await h.connect("Armitage")
        watcher = await h.connect("Fast0")
        steady = await h.connect("Slow")
        slow = await connect_slow(h, "Slow")
        for client in (speaker, watcher, steady):
            await client.until_pong()

        await say_all(speaker, LINES)
        _, close = await slow.until_close()
        assert (close.code, close.reason) == (1013, "Client too slow")
        await heard_in_order(steady, LINES)
        await trio.testing.wait_all_tasks_blocked()
        presence = h.app.hub.presences.get(h.players["Slow"].player_id)
        assert presence is not None and not presence.linkdead
        assert h.app.hub.socket_count() == 3
        seen = await watcher.until_pong()
        assert all(f.get("event_type") not in ("room_occupants", "player_left_game") for f in seen)
        await steady.command("whoami")
        assert (await steady.next_event("command_response"))["data"]["result"].startswith(
            "You are Slow"
        )
