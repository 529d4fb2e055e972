"""Playing the game end to end (PROTOCOL.md sections 3, 5, 9, 12, 13; issue 3 "must show").

A conversation across rooms and subzones on every channel, one player on two sockets, a linkdead
player resuming, and a slow reader in a crowded room.  Every negative check ("X did not get it")
is proven with a marker: a ``ping`` sent after the action is applied, whose ``pong`` must arrive
after anything the action produced for that socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import struct
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import (
    FRAME_TIMEOUT_S,
    Frame,
    ServerProcess,
    StartServer,
    raw_upgrade,
    read_burst,
    recv_frame,
    send_command,
    wrapped,
    ws_connect,
)

QUAD = "earth_arkhamcity_campus_quad"  # start room: zone arkham, subzone miskatonic_university
LIBRARY = "earth_arkhamcity_campus_library_hall"  # north of the quad, same subzone
FRENCH_HILL = "earth_arkhamcity_frenchhill_west_street"  # west of the quad, subzone french_hill
RESTRICTED = "earth_arkhamcity_campus_library_restricted"  # up from the library
# No ward (its end refreshes room_occupants), room for the many steps of a scenario, and every
# occupant list in the round of its change: these scenarios read each command's frames up to a
# pong, and a list paced by OCCUPANTS_INTERVAL_S could arrive after it, in the next step's frames
# (the pacing has its own tests, on the mock clock, in tests/runtime/test_game.py).
CALM = (
    *("--ward-s", "0", "--command-rate-limit", "1000", "--frame-rate-limit", "1000"),
    *("--occupants-interval-s", "0"),
)
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CHAT_KEYS = {
    "sender_id",
    "player_name",
    "channel",
    "message",
    "message_id",
    "timestamp",
    "original_content",
}


# --- a player's view of its socket ----------------------------------------------------------


@dataclass
class Player:
    """One socket of a named player; checks that its sequence numbers strictly increase."""

    name: str
    ws: ClientConnection
    token: str
    player_id: str
    label: str = ""  # tells a player's sockets apart in observe()'s result
    last_seq: int = 0

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    async def recv(self, timeout_s: float = FRAME_TIMEOUT_S) -> Frame:
        frame = await recv_frame(self.ws, timeout_s)
        seq = frame.get("sequence_number")
        if seq is not None:
            assert seq > self.last_seq, f"{self.name}: {seq} after {self.last_seq}"
            self.last_seq = seq
        return frame

    async def until(
        self, event_type: str, timeout_s: float = FRAME_TIMEOUT_S
    ) -> tuple[list[Frame], Frame]:
        """Frames before the first event of this type, and that event."""
        skipped: list[Frame] = []
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await self.recv(timeout_s)
                if frame.get("event_type") == event_type:
                    return skipped, frame
                skipped.append(frame)

    async def through(self, event_type: str) -> list[Frame]:
        """Frames up to and including the first event of this type: for an occupant list,
        which may wait for the room's occupant interval, where a pong would come first."""
        skipped, frame = await self.until(event_type)
        return [*skipped, frame]

    async def settle(self) -> list[Frame]:
        """Everything queued for this socket so far: the frames that arrive before a pong."""
        await self.ws.send(wrapped({"type": "ping"}, self.token))
        frames, _ = await self.until("pong")
        return frames

    async def command(self, command: str, *args: str) -> None:
        await send_command(self.ws, self.token, command, *args)

    async def burst(self) -> list[Frame]:
        frames = await read_burst(self.ws)
        for frame in frames:
            assert frame["sequence_number"] > self.last_seq, frames
            self.last_seq = frame["sequence_number"]
        return frames


async def join(
    stack: contextlib.AsyncExitStack,
    server: ServerProcess,
    name: str,
    label: str = "",
    **query: str,
) -> Player:
    """Connect ``name`` and read its connect burst."""
    token = server.token(name)
    ws = await stack.enter_async_context(ws_connect(server.url(token=token, **query)))
    player = Player(name, ws, token, server.player_id(name), label)
    await player.burst()
    return player


async def observe(actor: Player, everyone: list[Player]) -> dict[str, list[Frame]]:
    """After ``actor`` sent something: what each player received because of it.

    The actor's ``command_response`` proves the hub applied the command (its reply and its events
    are queued in one synchronous step); each player's pong then follows all of it.
    """
    before, response = await actor.until("command_response")
    seen = {p.label: await p.settle() for p in everyone}
    seen[actor.label] = [*before, response, *seen[actor.label]]
    return seen


async def act(
    actor: Player, everyone: list[Player], command: str, *args: str
) -> dict[str, list[Frame]]:
    await actor.command(command, *args)
    return await observe(actor, everyone)


def types(frames: list[Frame]) -> list[str]:
    return [str(f.get("event_type") or f.get("type") or "?") for f in frames]


def result_of(frames: list[Frame]) -> str:
    (response,) = [f for f in frames if f.get("event_type") == "command_response"]
    text: str = response["data"]["result"]
    return text


def assert_chat(
    frame: Frame,
    sender: Player,
    channel: str,
    message: str,
    original: str,
    *,
    room_id: str | None = None,
    target: Player | None = None,
) -> None:
    """A chat_message exactly as section 9 shapes it."""
    assert frame["event_type"] == "chat_message", frame
    assert frame["player_id"] == sender.player_id
    assert frame.get("room_id") == room_id
    data = frame["data"]
    keys = CHAT_KEYS | ({"target_id", "target_name"} if target is not None else set())
    assert set(data) == keys, data
    assert data["sender_id"] == sender.player_id
    assert data["player_name"] == sender.name
    assert data["channel"] == channel
    assert data["message"] == message
    assert data["original_content"] == original
    assert TIMESTAMP.match(data["timestamp"]) and data["message_id"], data
    if target is not None:
        assert (data["target_id"], data["target_name"]) == (target.player_id, target.name)


def occupants(frame: Frame) -> list[str]:
    assert frame["event_type"] == "room_occupants", frame
    names: list[str] = frame["data"]["occupants"]
    assert frame["data"]["players"] == names and frame["data"]["count"] == len(names)
    return sorted(names)


# --- a conversation across rooms and subzones -----------------------------------------------


def test_conversation_on_every_channel_across_rooms_and_subzones(
    start_server: StartServer,
) -> None:
    server = start_server(*CALM, players=["Carter", "Pickman", "Upton"])

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await join(stack, server, "Carter")
            b = await join(stack, server, "Pickman")
            c = await join(stack, server, "Upton")
            everyone = [a, b, c]
            for p in everyone:
                await p.settle()  # arrivals of the others

            # Upton walks to the library (same subzone); the quad sees him leave.
            seen = await act(c, everyone, "go", "north")
            assert types(seen["Upton"]) == ["command_response", "room_state", "room_occupants"]
            response, state, here = seen["Upton"]
            assert response["data"]["result"] == "You go north."
            assert response["data"]["room_changed"] is True
            assert response["data"]["room_id"] == LIBRARY
            assert response["data"]["room_state"]["room"]["id"] == LIBRARY
            assert state["room_id"] == LIBRARY and state["data"]["room"]["id"] == LIBRARY
            assert here["room_id"] == LIBRARY and occupants(here) == ["Upton"]
            for p in (a, b):
                assert types(seen[p.name]) == ["player_left", "room_occupants"]
                left, quad = seen[p.name]
                assert left["room_id"] == QUAD
                assert left["data"] == {
                    "player_id": c.player_id,
                    "player_name": "Upton",
                    "message": "Upton leaves the room.",
                }
                assert quad["room_id"] == QUAD and occupants(quad) == ["Carter", "Pickman"]

            # say: the room only, never the sender.
            seen = await act(a, everyone, "say", "Hello", "there")
            assert types(seen["Carter"]) == ["command_response"]
            assert result_of(seen["Carter"]) == "You say: Hello there"
            (line,) = seen["Pickman"]
            assert_chat(line, a, "say", "Carter says: Hello there", "Hello there", room_id=QUAD)
            assert seen["Upton"] == []

            # local: the whole subzone, so Upton in the library hears it.
            seen = await act(a, everyone, "local", "Meet me at the library")
            assert types(seen["Carter"]) == ["command_response"]
            assert result_of(seen["Carter"]) == "You say locally: Meet me at the library"
            for p in (b, c):
                (line,) = seen[p.name]
                text = "Carter (local): Meet me at the library"
                assert_chat(line, a, "local", text, "Meet me at the library", room_id=QUAD)

            # The legacy chat frame goes out as say.
            await b.ws.send(wrapped({"type": "chat", "data": {"message": "Old habits"}}, b.token))
            seen = await observe(b, everyone)
            assert types(seen["Pickman"]) == ["command_response"]
            assert result_of(seen["Pickman"]) == "You say: Old habits"
            (line,) = seen["Carter"]
            assert_chat(line, b, "say", "Pickman says: Old habits", "Old habits", room_id=QUAD)
            assert seen["Upton"] == []

            # emote and its alias me: the room only.
            for command, action in (("me", "waves."), ("emote", "nods slowly.")):
                seen = await act(b, everyone, command, *action.split())
                assert types(seen["Pickman"]) == ["command_response"]
                assert result_of(seen["Pickman"]) == f"Pickman {action}"
                (line,) = seen["Carter"]
                assert_chat(line, b, "emote", f"Pickman {action}", action, room_id=QUAD)
                assert seen["Upton"] == []

            # pose: the room sees it; clearing it is the poser's business only.
            seen = await act(b, everyone, "pose", "leans on the sundial")
            assert result_of(seen["Pickman"]) == "Your pose is now: leans on the sundial"
            assert types(seen["Pickman"]) == ["command_response"]
            (line,) = seen["Carter"]
            text = "Pickman leans on the sundial"
            assert_chat(line, b, "pose", text, "leans on the sundial", room_id=QUAD)
            assert seen["Upton"] == []
            seen = await act(b, everyone, "pose")
            assert result_of(seen["Pickman"]) == "Your pose has been cleared."
            assert (seen["Carter"], seen["Upton"]) == ([], [])

            # Upton walks back through the quad to French Hill (another subzone).
            seen = await act(c, everyone, "go", "south")
            assert types(seen["Upton"]) == ["command_response", "room_state", "room_occupants"]
            assert occupants(seen["Upton"][2]) == ["Carter", "Pickman", "Upton"]
            for p in (a, b):
                assert types(seen[p.name]) == ["player_entered", "room_occupants"]
                entered, quad = seen[p.name]
                assert entered["room_id"] == QUAD
                assert entered["data"] == {
                    "player_id": c.player_id,
                    "player_name": "Upton",
                    "message": "Upton enters the room.",
                }
                assert occupants(quad) == ["Carter", "Pickman", "Upton"]
            seen = await act(c, everyone, "w")
            assert result_of(seen["Upton"]) == "You go west."
            state = seen["Upton"][1]
            assert state["room_id"] == FRENCH_HILL
            assert state["data"]["room"]["subzone"] == "french_hill"
            assert occupants(seen["Upton"][2]) == ["Upton"]
            for p in (a, b):
                assert types(seen[p.name]) == ["player_left", "room_occupants"]
                assert occupants(seen[p.name][1]) == ["Carter", "Pickman"]

            # local no longer reaches Upton ...
            seen = await act(a, everyone, "l", "Where did he go?")
            assert result_of(seen["Carter"]) == "You say locally: Where did he go?"
            (line,) = seen["Pickman"]
            text = "Carter (local): Where did he go?"
            assert_chat(line, a, "local", text, "Where did he go?", room_id=QUAD)
            assert seen["Upton"] == []

            # ... and Upton's local and say reach nobody in the quad.
            for command, echo in (("local", "You say locally: "), ("say", "You say: ")):
                seen = await act(c, everyone, command, "Anyone?")
                assert types(seen["Upton"]) == ["command_response"]
                assert result_of(seen["Upton"]) == echo + "Anyone?"
                assert (seen["Carter"], seen["Pickman"]) == ([], [])

            # global reaches everyone but the sender, wherever they are.
            for sender, command in ((a, "global"), (c, "g")):
                seen = await act(sender, everyone, command, "All", "hands!")
                assert types(seen[sender.name]) == ["command_response"]
                assert result_of(seen[sender.name]) == "You say (global): All hands!"
                for p in everyone:
                    if p is not sender:
                        (line,) = seen[p.name]
                        text = f"{sender.name} (global): All hands!"
                        assert_chat(line, sender, "global", text, "All hands!")

            # whisper across subzones, then reply.
            seen = await act(a, everyone, "whisper", "Upton", "psst,", "up", "here")
            assert types(seen["Carter"]) == ["command_response"]
            assert result_of(seen["Carter"]) == "You whisper to Upton: psst, up here"
            (line,) = seen["Upton"]
            text = "Carter whispers to you: psst, up here"
            assert_chat(line, a, "whisper", text, "psst, up here", target=c)
            assert seen["Pickman"] == []
            seen = await act(c, everyone, "reply", "On my way")
            assert types(seen["Upton"]) == ["command_response"]
            assert result_of(seen["Upton"]) == "You whisper to Carter: On my way"
            (line,) = seen["Carter"]
            assert_chat(
                line, c, "whisper", "Upton whispers to you: On my way", "On my way", target=a
            )
            assert seen["Pickman"] == []

    asyncio.run(scenario())


# --- one player, two sockets ----------------------------------------------------------------


def test_a_player_with_two_sockets_gets_everything_on_both(start_server: StartServer) -> None:
    server = start_server(*CALM, players=["Carter", "Pickman", "Upton"])

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            first = await join(stack, server, "Carter")
            second = await join(stack, server, "Carter", label="Carter#2")
            b = await join(stack, server, "Pickman")
            c = await join(stack, server, "Upton")
            await c.command("go", "north")  # out of the room: only global and whisper reach him
            await c.until("command_response")
            everyone = [first, second, b, c]
            for p in everyone:
                await p.settle()

            heard: list[Frame] = []
            for sender, command, args in (
                (b, "say", ("Two", "windows?")),
                (c, "whisper", ("Carter", "Psst.")),
                (c, "global", ("Hear", "ye.")),
                (b, "me", ("squints.",)),
            ):
                seen = await act(sender, everyone, command, *args)
                (on_first,) = seen["Carter"]
                (on_second,) = seen["Carter#2"]
                assert on_first == on_second  # the same event, the same sequence number
                heard.append(on_first)

            say, whisper, shout, emote = heard
            assert_chat(say, b, "say", "Pickman says: Two windows?", "Two windows?", room_id=QUAD)
            text = "Upton whispers to you: Psst."
            assert_chat(whisper, c, "whisper", text, "Psst.", target=first)
            assert_chat(shout, c, "global", "Upton (global): Hear ye.", "Hear ye.")
            assert_chat(emote, b, "emote", "Pickman squints.", "squints.", room_id=QUAD)

            # A command from either socket is answered on both.
            await second.command("whoami")
            for p in (first, second):
                _, response = await p.until("command_response")
                assert response["data"]["result"].startswith("You are Carter")

    asyncio.run(scenario())


# --- linkdead and resume ----------------------------------------------------------------------


def abort(ws: ClientConnection) -> None:
    """Drop the TCP connection without a close frame: SO_LINGER (1, 0) makes it a reset."""
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


def test_linkdead_player_resumes_and_gets_exactly_what_it_missed(
    start_server: StartServer,
) -> None:
    server = start_server(*CALM, players=["Carter", "Pickman", "Upton"])
    lines = ["The door is open.", "Something moves.", "Carter, answer!"]

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            b = await join(stack, server, "Pickman")
            witness = await join(stack, server, "Upton")
            async with ws_connect(server.url(token=server.token("Carter"))) as ws:
                a = Player("Carter", ws, server.token("Carter"), server.player_id("Carter"))
                await a.burst()
                for p in (a, b, witness):
                    await p.settle()
                last = a.last_seq  # the last number Carter saw (its pong's)
                abort(ws)
            _, linkdead = await b.until("room_occupants")
            assert occupants(linkdead) == ["Carter (linkdead)", "Pickman", "Upton"]
            assert await b.settle() == []
            _, linkdead = await witness.until("room_occupants")
            assert occupants(linkdead) == ["Carter (linkdead)", "Pickman", "Upton"]

            witnessed: list[Frame] = []
            for text in lines:
                seen = await act(b, [b, witness], "say", text)
                assert types(seen["Pickman"]) == ["command_response"]
                assert result_of(seen["Pickman"]) == f"You say: {text}"
                witnessed += seen["Upton"]

            url = server.url(token=server.token("Carter"), resume_from=str(last))
            async with ws_connect(url) as ws:
                a = Player("Carter", ws, server.token("Carter"), server.player_id("Carter"))
                a.last_seq = last
                resumed = [await a.recv() for _ in range(4)]
                assert await a.settle() == []  # nothing after the welcome
                # The list may wait for the room's occupant interval (the linkdead one just
                # went out): read up to it rather than up to a pong.
                back = await b.through("room_occupants")

            assert types(resumed) == ["chat_message"] * 3 + ["welcome"]
            *replayed, welcome = resumed
            for frame, text in zip(replayed, lines, strict=True):
                assert_chat(frame, b, "say", f"Pickman says: {text}", text, room_id=QUAD)
            assert replayed == witnessed  # the original events, numbers included
            assert welcome["data"] == {
                "message": "Connected to MythosMUD",
                "resumed": True,
                "replayed": 3,
            }
            assert types(back) == ["player_entered_game", "room_occupants"]
            assert back[0]["data"] == {"player_id": a.player_id, "player_name": "Carter"}
            assert occupants(back[1]) == ["Carter", "Pickman", "Upton"]

    asyncio.run(scenario())


# --- a slow reader in a crowded room ----------------------------------------------------------

CROWD = [f"P{i:02d}" for i in range(50)]  # P00 speaks, P01..P48 listen, P49 stops reading
LINES = 300
AHEAD = 30  # lines the speaker may run ahead of the slowest listener (about 33 KiB per socket)
FILLER = "Ph'nglui mglw'nafh Cthulhu R'lyeh wgah'nagl fhtagn; the stars are right again. " * 6
SLOW_ROOM = (
    "--ward-s",
    "0",
    "--outbox-max-bytes",
    "65536",
    "--close-timeout-s",
    "30",  # a requested close may take 2 x 30 s: time for the slow reader to read again
    "--ping-interval-s",
    "600",  # keep the heartbeat out of it: its pings would wait behind the blocked write
    "--chat-limit-say",
    "100000",
    "--command-rate-limit",
    "100000",
    "--frame-rate-limit",
    "100000",
)
OP_TEXT, OP_CLOSE = 0x1, 0x8


def masked_close(code: int) -> bytes:
    """A client close frame (clients must mask) echoing ``code``."""
    payload, mask = struct.pack("!H", code), os.urandom(4)
    return (
        bytes([0x80 | OP_CLOSE, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def read_frames_until_eof(sock: socket.socket, deadline_s: float) -> tuple[list[Any], str]:
    """Every server frame as ``(opcode, payload)`` until EOF, and how the stream ended.

    Server frames are unmasked: byte 0 is FIN|opcode, byte 1 the length (126: 2-byte length
    follows, 127: 8-byte length).  A close frame is answered with a close frame, as a client must.
    """
    sock.settimeout(deadline_s)
    buffer, frames, ended = b"", [], "eof"
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            ended = "reset"
            chunk = b""
        buffer += chunk
        while True:  # parse every complete frame in the buffer
            if len(buffer) < 2:
                break
            opcode, size, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            assert buffer[1] & 0x80 == 0, "server frames are never masked"
            if size == 126:
                if len(buffer) < 4:
                    break
                (size,), offset = struct.unpack("!H", buffer[2:4]), 4
            elif size == 127:
                if len(buffer) < 10:
                    break
                (size,), offset = struct.unpack("!Q", buffer[2:10]), 10
            if len(buffer) < offset + size:
                break
            frames.append((opcode, buffer[offset : offset + size]))
            buffer = buffer[offset + size :]
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", frames[-1][1][:2])[0] if size >= 2 else 1000
                with contextlib.suppress(OSError):
                    sock.sendall(masked_close(code))
        if not chunk:
            assert buffer == b"", f"{len(buffer)} bytes of a partial frame before {ended}"
            return frames, ended


def test_slow_reader_in_a_50_player_room_is_closed_1013_and_delays_nobody(
    start_server: StartServer,
) -> None:
    server = start_server(*SLOW_ROOM, players=CROWD)
    lines = [(f"{i:03d} " + FILLER)[:400].strip() for i in range(LINES)]

    async def scenario() -> tuple[list[Any], str]:
        async with contextlib.AsyncExitStack() as stack:
            speaker = await join(stack, server, CROWD[0])
            listeners = [await join(stack, server, name) for name in CROWD[1:49]]
            slow_target = f"/v1/api/ws?token={server.token(CROWD[49])}"
            slow = await asyncio.to_thread(raw_upgrade, server.ws_port, slow_target)
            stack.callback(slow.close)
            for p in [speaker, *listeners]:
                await p.settle()  # the arrivals, the slow reader's included

            progress = {p.label: 0 for p in [speaker, *listeners]}
            moved = asyncio.Condition()

            async def advanced(label: str, count: int) -> None:
                async with moved:
                    progress[label] = count
                    moved.notify_all()

            async def listen(p: Player) -> list[str]:
                heard: list[str] = []
                while len(heard) < LINES:
                    frame = await p.recv()
                    if frame.get("event_type") == "chat_message":
                        assert frame["player_id"] == speaker.player_id
                        heard.append(frame["data"]["original_content"])
                        await advanced(p.label, len(heard))
                return heard

            async def hear_echoes() -> list[str]:
                echoes: list[str] = []
                while len(echoes) < LINES:
                    _, response = await speaker.until("command_response")
                    echoes.append(response["data"]["result"])
                    await advanced(speaker.label, len(echoes))
                return echoes

            async def speak() -> None:
                for i, text in enumerate(lines):
                    async with moved:
                        while min(progress.values()) < i - AHEAD:
                            await moved.wait()
                    await speaker.command("say", text)

            async with asyncio.timeout(120):
                _, echoes, *heard = await asyncio.gather(
                    speak(), hear_echoes(), *(listen(p) for p in listeners)
                )
            assert echoes == [f"You say: {text}" for text in lines]
            for p, got in zip(listeners, heard, strict=True):
                assert got == lines, f"{p.name} missed or reordered lines"

            # Only now does the slow reader read again: what was kept for it, then the close.
            return await asyncio.to_thread(read_frames_until_eof, slow, 90.0)

    frames, ended = asyncio.run(scenario())
    assert frames, "the slow reader got nothing at all"
    events = [json.loads(payload) for opcode, payload in frames if opcode == OP_TEXT]
    assert types(events[:4]) == ["game_state", "room_update", "room_occupants", "welcome"]
    said = [e["data"]["original_content"] for e in events if e["event_type"] == "chat_message"]
    assert said == lines[: len(said)], "the slow reader's lines are a prefix, in order"
    assert len(said) < LINES, "the slow reader must have overflowed"
    opcode, payload = frames[-1]
    assert opcode == OP_CLOSE, f"no close frame before {ended}; last opcode {opcode}"
    code, reason = struct.unpack("!H", payload[:2])[0], payload[2:].decode()
    assert (code, reason) == (1013, "Client too slow")
    assert ended == "eof"
