"""Regressions for the hardening issue (11): each test failed before its fix.

The misbehaving client is played by hand over a memory stream (:class:`RawClient`), so the test
sees exactly which frames the server sends and when it hangs up; autojump clock throughout.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from wsproto.events import TextMessage

from mythos_rt.core.commands import movement
from mythos_rt.runtime import hub as hub_module
from mythos_rt.runtime.gate import handle_stream
from tests.runtime.harness import Client, running
from tests.runtime.test_review_regressions import OP_CLOSE, OP_PING, OP_TEXT, RawClient, raw_player
from tests.runtime.test_slow_clients import RawClient as SlowReader
from tests.runtime.test_slow_clients import open_lockstep

OP_CONTINUATION = 0x0
FIN, RSV1 = 0x80, 0x40


async def send_frame(client: RawClient, first_byte: int, payload: bytes) -> None:
    """One masked client frame with a hand-made first byte (FIN, RSV bits, opcode)."""
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    await client.stream.send_all(bytes([first_byte]) + length + mask + masked)


def command_frame(token: str, command: str, *args: str) -> bytes:
    data = {"command": command, "args": list(args)}
    return json.dumps({"type": "game_command", "data": data, "csrfToken": token}).encode()


# --- 1. protocol violations are answered with a close frame carrying the RFC's code ----------

VIOLATIONS: dict[str, tuple[int, bytes, int]] = {
    "text that is not UTF-8": (FIN | OP_TEXT, b"\xff\xfe bad", 1007),
    "a reserved bit set": (FIN | RSV1 | OP_TEXT, b"hello", 1002),
    "a reserved opcode": (FIN | 0x3, b"hello", 1002),
    "a continuation with nothing to continue": (FIN | OP_CONTINUATION, b"hello", 1002),
    "a close with an invalid code": (FIN | OP_CLOSE, struct.pack("!H", 999), 1002),
    "a ping without FIN (control frames cannot be fragmented)": (OP_PING, b"", 1002),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_a_protocol_violation_gets_a_close_frame_with_its_rfc_code(
    tmp_path: Path, autojump_clock: trio.abc.Clock, case: str
) -> None:
    first_byte, payload, code = VIOLATIONS[case]
    async with running(tmp_path) as h:
        bystander = await h.connect("Wilmarth")
        client = await raw_player(h, "Armitage")
        await send_frame(client, first_byte, payload)
        closed = await client.server_close()
        assert closed is not None, "TCP was dropped without a close frame"
        assert closed[0] == code
        await client.until_eof()
        # Nobody else is touched, and nothing is counted as a server failure.
        await bystander.until_pong()
        assert h.app.metrics.value("connection_errors") == 0


# --- 2. nothing a client sends after the server asked to close is acted upon -----------------


async def test_frames_after_a_requested_close_are_not_processed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # No heartbeat pings: the hand-made client below reads no frame but text and close.
    async with running(tmp_path, ping_interval_s=1000.0) as h:
        listener = await h.connect("Wilmarth")
        token = h.token("Armitage", ttl_s=100)
        # A client that stops reading: the server's writes (the token warning, then the 4401
        # close frame) stay stuck in send_all, so the close is requested but not yet sent.
        slow = SlowReader(open_lockstep(h))
        await slow.handshake(f"/v1/api/ws?token={token}")
        await slow.until_welcome()
        await listener.until_pong()
        await trio.sleep(101)  # past exp: close 4401 requested
        frame = command_frame(token, "say", "after the close").decode()
        await slow.stream.send_all(slow.ws.send(TextMessage(data=frame)))
        await trio.testing.wait_all_tasks_blocked()
        heard = await listener.until_pong()
        assert not any("after the close" in json.dumps(f) for f in heard)
        assert h.app.metrics.value("frames_after_close") == 1


# --- 7. a connection cancelled from outside says goodbye without waiting for a reply ----------


async def test_a_cancelled_connection_sends_its_close_and_hangs_up_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    close_timeout_s = 5.0
    async with running(tmp_path, close_timeout_s=close_timeout_s) as h:
        client_stream, server_stream = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as connections:
            connections.start_soon(handle_stream, h.app.gate, server_stream)
            client = RawClient(client_stream)
            assert await client.upgrade(f"/v1/api/ws?token={h.token('Armitage')}") == 101
            await trio.testing.wait_all_tasks_blocked()
            cancelled_at = trio.current_time()
            connections.cancel_scope.cancel()
        # The handler finished at once: it did not wait CLOSE_TIMEOUT_S for a reply that the
        # cancelled reader could never have taken.
        assert trio.current_time() - cancelled_at < close_timeout_s / 10
        assert await client.server_close() == (1001, "Server shutting down")
        await client.until_eof()


async def tcp_pair(buffer_bytes: int) -> tuple[trio.SocketStream, trio.SocketStream]:
    """A real loopback TCP connection with small kernel buffers (client, server)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
    return client, server


async def test_a_write_cancelled_midway_through_a_frame_is_followed_by_nothing(
    tmp_path: Path,
) -> None:
    """Real clock and a real TCP socket: only the kernel can stop a write inside a frame."""
    lines = 120
    limits = {"chat_limit_say": 1000, "command_rate_limit": 1000, "frame_rate_limit": 1000}
    received = bytearray()

    async def read_all(stream: trio.SocketStream) -> None:
        async with stream:
            while chunk := await stream.receive_some(65536):
                received.extend(chunk)

    async with running(tmp_path, ping_interval_s=1000.0, **limits) as h:
        speaker = await h.connect("Wilmarth")
        client_stream, server_stream = await tcp_pair(4096)
        async with trio.open_nursery() as reading, trio.open_nursery() as connections:
            connections.start_soon(handle_stream, h.app.gate, server_stream)
            slow = SlowReader(client_stream)
            await slow.handshake(f"/v1/api/ws?token={h.token('Armitage')}")
            await slow.until_welcome()
            for index in range(lines):  # about 80 KiB of frames for a reader that reads none
                await speaker.command("say", f"{index:03d}" + "x" * 490)
            await speaker.until_pong()
            await trio.testing.wait_all_tasks_blocked()
            connections.cancel_scope.cancel()
            # The client reads again while the server winds the connection down.
            reading.start_soon(read_all, client_stream)
    assert received.count(b'"chat_message"') < lines, "the write was never blocked"
    # No close frame after the unfinished one: it would be read as that frame's payload.
    assert b"Server shutting down" not in received


# --- 4. shutdown teardown does work proportional to what it tears down ----------------------


async def test_shutdown_teardown_builds_no_occupant_lists(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each departure used to build the room's occupant list only for it to be dropped: O(room²),
    13.6 s for 4,000 players in one room on the development machine (0.24 s after)."""
    names = [f"P{i:03d}" for i in range(200)]
    async with running(tmp_path, names) as h:
        hub = h.app.hub
        for name in names:
            record = h.players[name]
            assert hub.admit(record, hub.new_socket(record.player_id, None)) is None
        built: list[str] = []
        real = hub_module.occupants_payload

        def counting(room_id: str, *args: object) -> object:
            built.append(room_id)
            return real(room_id, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(hub_module, "occupants_payload", counting)
        hub.close_all(1001, "Server shutting down")
        hub.end_all_presences()
        assert len(hub.presences) == 0
        assert built == []


# --- 3. a fault inside admission leaves no presence behind that never ends ------------------


async def test_a_fault_in_admission_closes_1011_and_the_presence_gets_its_grace(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    grace_s = 30.0
    async with running(tmp_path, grace_s=grace_s) as h:
        hub = h.app.hub
        watcher = await h.connect("Wilmarth")
        real_burst = hub._send_burst

        def broken_burst(*args: object) -> None:
            raise RuntimeError("injected fault after the presence started")

        monkeypatch.setattr(hub, "_send_burst", broken_burst)
        client = RawClient(h.open_stream())
        assert await client.upgrade(f"/v1/api/ws?token={h.token('Armitage')}") == 101
        assert await client.server_close() == (1011, "Internal error")
        monkeypatch.setattr(hub, "_send_burst", real_burst)
        armitage = h.players["Armitage"].player_id
        presence = hub.presences.get(armitage)
        assert presence is not None and presence.linkdead  # like any other lost socket
        await trio.sleep(grace_s + 1)
        assert hub.presences.get(armitage) is None  # it used to stay forever
        await watcher.until_pong()  # the others never noticed anything but the comings and goings
        again = await h.connect("Armitage")
        assert again.received[-1]["event_type"] == "welcome"


# --- 3. a rule is applied all at once or not at all ----------------------------------------


async def test_a_rule_that_raises_halfway_changes_nothing_and_the_socket_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The move rule raised after moving its player: the player stood in the new room while
    the command failed (and the socket was closed 1011)."""
    async with running(tmp_path) as h:
        hub = h.app.hub
        armitage = await h.connect("Armitage")
        watcher = await h.connect("Wilmarth")
        await watcher.command("follow", "Armitage")
        request = await armitage.next_event("follow_request")
        response = {"request_id": request["data"]["request_id"], "accept": True}
        await armitage.send({"type": "follow_response", "data": response})
        await watcher.until_pong()
        a_id, w_id = h.players["Armitage"].player_id, h.players["Wilmarth"].player_id
        start = hub.presences.get(a_id).room_id  # type: ignore[union-attr]
        exit_word = next(iter(hub.world.rooms[start].exits))
        before = (hub.presences.ids_in_room(start), dict(hub.social.following))
        calls = 0
        real = movement.room_state_payload

        def fails_on_the_follower(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:  # the leader has moved; now the follower's move breaks
                raise RuntimeError("injected fault in the middle of a rule")
            return real(*args)

        monkeypatch.setattr(movement, "room_state_payload", fails_on_the_follower)
        await armitage.command(exit_word)
        told = await armitage.next_event("command_response")
        while "You are now being followed" in told["data"]["result"]:  # from the follow above
            told = await armitage.next_event("command_response")
        assert "nothing was changed" in told["data"]["result"]
        assert hub.presences.get(a_id).room_id == start  # type: ignore[union-attr]
        assert hub.presences.get(w_id).room_id == start  # type: ignore[union-attr]
        assert (hub.presences.ids_in_room(start), dict(hub.social.following)) == before
        assert h.app.metrics.value("rule_errors") == 1
        monkeypatch.setattr(movement, "room_state_payload", real)
        # The same socket goes on playing: the move now works, follower and all.
        await armitage.command(exit_word)
        await armitage.next_event("room_state")
        assert hub.presences.get(w_id).room_id != start  # type: ignore[union-attr]


# --- 4 (and issue 12). a storm of arrivals or departures: one occupant list per room -------


async def test_a_storm_of_arrivals_and_departures_sends_each_member_one_final_list(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Every arrival and departure used to send the whole list to the whole room: O(room²)
    frames for a restart or a proxy dropping its connections (480,000 for 1,000 arrivals)."""
    names = ["Watcher", *(f"P{i:02d}" for i in range(40))]
    async with running(tmp_path, names, grace_s=0.0) as h:
        hub = h.app.hub
        watcher = await h.connect("Watcher")
        sockets = []
        for name in names[1:]:  # one scheduling round: the hub is synchronous
            record = h.players[name]
            socket = hub.new_socket(record.player_id, None)
            assert hub.admit(record, socket) is None
            sockets.append(socket)
        frames = await watcher.until_pong()
        lists = [f["data"]["occupants"] for f in frames if f["event_type"] == "room_occupants"]
        entered = [f for f in frames if f["event_type"] == "player_entered_game"]
        assert len(entered) == 40
        assert len(lists) == 1  # not 40
        assert sorted(lists[-1]) == sorted(names)

        for socket in sockets:  # they all drop at once (grace 0: they leave)
            hub.detach(socket)
        dropped = trio.current_time()
        frames = await watcher.until_pong()
        assert len([f for f in frames if f["event_type"] == "player_left_game"]) == 40
        # A list went out a moment ago: the next one waits for the room's interval to end.
        assert not [f for f in frames if f["event_type"] == "room_occupants"]
        final = await watcher.next_event("room_occupants")
        assert final["data"]["occupants"] == ["Watcher"]
        assert trio.current_time() - dropped <= h.app.settings.occupants_interval_s
        frames = await watcher.until_pong()
        assert not [f for f in frames if f["event_type"] == "room_occupants"]


async def occupant_lists_until(client: Client, final: list[str]) -> int:
    """How many occupant lists ``client`` reads until one names exactly ``final``."""
    count = 1
    while sorted((await client.next_event("room_occupants"))["data"]["occupants"]) != final:
        count += 1
    return count


async def test_a_storm_spread_over_many_rounds_sends_one_list_per_member_per_interval(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """Arrivals in separate scheduling rounds (handshakes finish one by one) each made a list
    for the whole room: O(room²) frames and bytes for 1,000 players reconnecting into one
    room.  Now each member gets one list per OCCUPANTS_INTERVAL_S, and the same final one."""
    names = sorted(f"P{i:02d}" for i in range(20))
    async with running(tmp_path, names, occupants_interval_s=0.1) as h:
        start = trio.current_time()
        clients = []
        for name in names:  # one arrival every 10 ms: 0.2 s of arrivals, 20 rounds
            clients.append(await h.connect(name))
            await trio.sleep_until(start + 0.01 * len(clients))
        counts = [await occupant_lists_until(client, names) for client in clients[:-1]]
        # Without the interval the first player alone would get 19 lists.
        assert max(counts) <= 0.2 / 0.1 + 2
        for client in clients:  # and nothing after the final list
            frames = await client.until_pong()
            assert not [f for f in frames if f["event_type"] == "room_occupants"]
