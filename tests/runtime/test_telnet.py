"""Telnet connections in the running app: memory streams, the real hub, the autojump clock.

A telnet player is one more socket of the hub, so what a WebSocket player does reaches them
and the other way round.  Passwords are stored with tiny scrypt parameters: the check still
runs in a worker thread, and a real-size hash would let the autojump clock leap while it runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from mythos_rt.core.passwords import hash_password
from mythos_rt.core.writes import SetBan
from mythos_rt.runtime.server import drain
from mythos_rt.runtime.telnet import MAX_COMMANDS_PER_MINUTE, handle_telnet
from tests.runtime.harness import Harness, running

PASSWORD = "elder-sign-1926"
IAC, DO, WILL, SB, SE = b"\xff", b"\xfd", b"\xfb", b"\xfa", b"\xf0"
GMCP, NAWS = b"\xc9", b"\x1f"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TELNET: dict[str, Any] = {"telnet_login_timeout_s": 600.0}
T = TypeVar("T")


class TelnetClient:
    """A raw telnet client: bytes out, everything received kept for the asserts."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.data = bytearray()
        self.seen = 0  # what read_until has consumed
        self.eof = False

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def line(self, text: str) -> None:
        await self.send(text.encode() + b"\r\n")

    async def _more(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            self.eof = True
            raise EOFError(bytes(self.data[self.seen :]))
        self.data += chunk

    async def read_until(self, needle: str | bytes) -> str:
        """Everything up to and including ``needle`` (as text, colours stripped)."""
        wanted = needle.encode() if isinstance(needle, str) else needle
        while (at := self.data.find(wanted, self.seen)) < 0:
            await self._more()
        chunk = bytes(self.data[self.seen : at + len(wanted)])
        self.seen = at + len(wanted)
        return plain(chunk)

    async def closed(self) -> str:
        """Read to the end of the stream; what came after the last read_until."""
        try:
            while True:
                await self._more()
        except EOFError as eof:
            return plain(eof.args[0])

    def gmcp(self) -> list[tuple[str, Any]]:
        found = []
        for body in re.findall(rb"\xff\xfa\xc9(.*?)\xff\xf0", bytes(self.data), re.S):
            package, _, payload = body.decode().partition(" ")
            found.append((package, json.loads(payload) if payload else None))
        return found


def plain(raw: bytes) -> str:
    """Server bytes as a player reads them: no telnet commands, no colours."""
    text = re.sub(rb"\xff[\xfb-\xfe].|\xff\xfa.*?\xff\xf0", b"", raw, flags=re.S)
    return ANSI.sub("", text.decode("utf-8", errors="replace"))


def give_password(h: Harness, name: str, password: str = PASSWORD) -> None:
    cheap = hash_password(password, b"salt" * 4, n=16, r=8, p=1)
    h.store.set_password(h.players[name].player_id, cheap)


@pytest.fixture(autouse=True)
def hash_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Password checks run inline, as the harness runs store calls inline: under the autojump
    clock a task waiting on a worker thread counts as blocked, and the clock would leap past
    the login timeout while the hash runs.  The threaded path is exercised end to end."""

    async def inline(fn: Callable[[], T], **_: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn()

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)


def open_telnet(h: Harness, stream_pair: Any = None) -> TelnetClient:
    client_stream, server_stream = stream_pair or trio.testing.memory_stream_pair()
    h.nursery.start_soon(handle_telnet, h.app.gate, server_stream)
    return TelnetClient(client_stream)


async def answer_prompts(client: TelnetClient, name: str, password: str) -> None:
    await client.read_until("known? ")
    await client.line(name)
    await client.read_until("Password: ")
    await client.line(password)


async def log_in(h: Harness, name: str, *, negotiate: bytes = b"") -> TelnetClient:
    give_password(h, name)
    client = open_telnet(h)
    if negotiate:
        await client.send(negotiate)
    await answer_prompts(client, name, PASSWORD)
    await client.read_until("Type 'help' for the commands.")
    return client


async def test_a_telnet_player_plays_with_a_websocket_player(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        ws = await h.connect("Armitage")
        telnet = await log_in(h, "Wilmarth")
        arrived = await ws.next_event("player_entered_game")
        assert arrived["data"]["player_name"] == "Wilmarth"

        await telnet.line("look")
        looked = await telnet.read_until("Exits: ")
        assert "Miskatonic Quadrangle" in looked and "Also here: Armitage" in looked

        await telnet.line("say The stars are right.")
        await telnet.read_until("You say: The stars are right.")
        heard = await ws.next_event("chat_message")
        assert heard["data"]["message"] == "Wilmarth says: The stars are right."

        await ws.command("say Then we must hurry.")
        await telnet.read_until("Armitage says: Then we must hurry.")

        await telnet.line("north")
        moved = await telnet.read_until("Exits: south, up")
        assert "You go north." in moved and "Orne Library Entrance Hall" in moved
        left = await ws.next_event("player_left")
        assert left["data"]["message"] == "Wilmarth leaves the room."

        await telnet.line("south")
        await ws.next_event("player_entered")
        await telnet.line("quit")
        said = await telnet.closed()
        assert said.endswith("Goodbye! You have been disconnected from the game.\r\n")
        gone = await ws.next_event("player_left_game")
        assert gone["data"]["player_name"] == "Wilmarth"


async def test_lines_are_coloured_per_channel(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        ws = await h.connect("Armitage")
        telnet = await log_in(h, "Wilmarth")
        await ws.command("say hello")
        await ws.command("global evening all")
        await telnet.read_until("evening all")
        raw = bytes(telnet.data).decode(errors="replace")
        assert "\x1b[0;37mArmitage says: hello\x1b[0m" in raw
        assert "\x1b[1;33mArmitage (global): evening all\x1b[0m" in raw


async def test_gmcp_after_negotiation_sends_vitals_room_info_and_channel_text(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        ws = await h.connect("Armitage")
        hello = IAC + SB + GMCP + b'Core.Hello {"client":"Mudlet","version":"4.17"}' + IAC + SE
        telnet = await log_in(h, "Wilmarth", negotiate=IAC + DO + GMCP + hello)
        await ws.command("say welcome, Wilmarth")
        await telnet.read_until("welcome, Wilmarth")
        packages = dict(telnet.gmcp())
        assert packages["Char.Vitals"]["dp"] == 100
        room = packages["Room.Info"]
        assert room["id"] == h.app.hub.world.start_room_id
        assert set(room["exits"]) == {"north", "east", "west", "south"}
        assert packages["Comm.Channel.Text"] == {
            "channel": "say",
            "talker": "Armitage",
            "text": "Armitage says: welcome, Wilmarth",
        }


async def test_without_gmcp_no_gmcp_is_sent_and_supports_set_narrows_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        plain_client = await log_in(h, "Wilmarth")
        await plain_client.line("north")
        await plain_client.read_until("Exits: south, up")
        assert plain_client.gmcp() == []

        supports = IAC + SB + GMCP + b'Core.Supports.Set ["Room 1"]' + IAC + SE
        narrowed = await log_in(h, "Dyer", negotiate=IAC + DO + GMCP + supports)
        await narrowed.line("north")
        await narrowed.read_until("Exits: south, up")
        assert {package for package, _ in narrowed.gmcp()} == {"Room.Info"}


async def test_wrong_passwords_are_refused_and_throttled_like_http_logins(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, login_rate_name=4, **TELNET) as h:
        give_password(h, "Wilmarth")
        first = open_telnet(h)
        for _ in range(3):
            await answer_prompts(first, "Wilmarth", "not the password")
            await first.read_until("Wrong name or password.")
        assert "Too many tries" in await first.closed()

        second = open_telnet(h)  # the fourth failure reaches the per-name limit
        await answer_prompts(second, "Wilmarth", "still wrong")
        await second.read_until("Wrong name or password.")
        await second.line("Wilmarth")
        await second.line(PASSWORD)  # right, but too late: the name is throttled
        assert "Too many failed logins" in await second.closed()
        assert h.app.hub.presences.get(h.players["Wilmarth"].player_id) is None


async def test_a_banned_player_with_the_right_password_is_refused_at_the_prompt(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        give_password(h, "Wilmarth")
        h.store.apply([SetBan(h.players["Wilmarth"].player_id, until=None)])
        client = open_telnet(h)
        await answer_prompts(client, "Wilmarth", PASSWORD)
        assert "Player is banned." in await client.closed()
        assert h.app.hub.presences.get(h.players["Wilmarth"].player_id) is None


async def test_a_silent_client_at_the_login_prompt_is_dropped_at_the_timeout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, telnet_login_timeout_s=60.0) as h:
        client = open_telnet(h)
        await client.read_until("known? ")
        started = trio.current_time()
        assert "Login timed out." in await client.closed()
        assert 60.0 <= trio.current_time() - started < 61.0
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 0


async def test_no_command_for_the_idle_timeout_closes_like_a_websocket(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, idle_timeout_s=300.0, grace_s=30.0, **TELNET) as h:
        telnet = await log_in(h, "Wilmarth")
        last_line = trio.current_time()
        # Option chatter is not activity: only lines keep a player from idling out.
        for _ in range(2):
            await trio.sleep(100)
            await telnet.send(IAC + b"\xf1")  # NOP
        assert "*** Connection cleaned up ***" in await telnet.closed()
        assert 300.0 <= trio.current_time() - last_line < 301.0
        await trio.testing.wait_all_tasks_blocked()
        presence = h.app.hub.presences.get(h.players["Wilmarth"].player_id)
        assert presence is not None and presence.linkdead  # in its grace, as a WebSocket


async def test_the_drain_says_goodbye_and_closes_telnet_sockets(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        telnet = await log_in(h, "Wilmarth")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, h.app)
            assert "*** Server shutting down ***" in await telnet.closed()
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 0


async def test_a_client_that_never_reads_is_cut_off_and_others_play_on(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    settings = {"outbox_max_bytes": 4096, "chat_limit_say": 1000, "command_rate_limit": 1000}
    async with running(tmp_path, **settings, **TELNET) as h:
        give_password(h, "Wilmarth")
        client_stream, server_stream = trio.testing.lockstep_stream_pair()
        slow = open_telnet(h, (client_stream, server_stream))
        await answer_prompts(slow, "Wilmarth", PASSWORD)
        await slow.read_until("Type 'help' for the commands.")  # and from now on, nothing
        ws = await h.connect("Armitage")
        other = await h.connect("Dyer")
        for i in range(40):
            await ws.command(f"say line {i} " + "o" * 120)
        for i in range(40):
            heard = await other.next_event("chat_message")
            assert heard["data"]["message"].startswith(f"Armitage says: line {i} ")
        # Its outbox overflowed; its sender is stuck in a write; the close watchdog cuts it.
        await trio.sleep(2 * h.app.settings.close_timeout_s)
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 2  # the two WebSockets
        assert h.app.hub.socket_count() == 2


async def test_garbage_and_iac_floods_harm_nobody(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        ws = await h.connect("Armitage")
        telnet = await log_in(h, "Wilmarth")
        rubbish = bytes(range(256)) * 64
        chatter = (IAC + DO + b"\x63" + IAC + WILL + b"\x62" + IAC + b"\xf1") * 200
        endless = IAC + SB + GMCP + b"x" * 100_000  # ended only much later
        for chunk in (rubbish, chatter, IAC + SB + NAWS + b"\x00", endless):
            await telnet.send(chunk)
        await telnet.send(IAC + SE + b"\r\n")
        await trio.sleep(60)  # the rubbish held ~130 lines: past the frame rate window
        await telnet.send(b"say still sane\r\n")
        heard = await ws.next_event("chat_message")
        assert heard["data"]["message"] == "Wilmarth says: still sane"
        await ws.command("say and the others are fine")
        await telnet.read_until("and the others are fine")
        # 200 requests for each of two options the server lacks: one refusal each.
        assert bytes(telnet.data).count(IAC + b"\xfc\x63") == 1
        assert bytes(telnet.data).count(IAC + b"\xfe\x62") == 1


async def test_an_iac_flood_is_closed_as_abuse(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    flood = (IAC + b"\xf1") * (MAX_COMMANDS_PER_MINUTE + 1)
    async with running(tmp_path, **TELNET) as h:
        ws = await h.connect("Armitage")
        telnet = await log_in(h, "Wilmarth")
        await telnet.send(flood)
        assert "*** Policy violation ***" in await telnet.closed()
        await ws.command("say nobody else noticed")
        reply = await ws.next_event("command_response")
        assert reply["data"]["result"] == "You say: nobody else noticed"

        stranger = open_telnet(h)  # before logging in: the same budget
        await stranger.read_until("known? ")
        await stranger.send(flood)
        assert "Too many telnet commands. Goodbye." in await stranger.closed()
        assert h.app.metrics.value("telnet_command_floods") == 2


async def test_a_giant_line_is_refused_and_the_next_one_works(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        telnet = await log_in(h, "Wilmarth")
        await telnet.send(b"say " + b"A" * 1_000_000 + b"\r\nwhoami\r\n")
        await telnet.read_until("too long")
        await telnet.read_until("You are Wilmarth")


async def test_the_drain_abandons_logins_under_way_and_refuses_newcomers(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        waiting = open_telnet(h)
        await waiting.read_until("known? ")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, h.app)
            assert "The server is shutting down." in await waiting.closed()
            late = open_telnet(h)
            assert "The server is shutting down. Please come back later." in await late.closed()
        assert h.app.metrics.value("handshakes_abandoned") == 1


async def test_a_password_is_taken_as_typed_spaces_included(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        give_password(h, "Wilmarth", "  elder sign  ")
        client = open_telnet(h)
        await answer_prompts(client, "  Wilmarth ", "elder sign")  # a name is trimmed
        await client.read_until("Wrong name or password.")
        await answer_prompts(client, "Wilmarth", "  elder sign  ")
        await client.read_until("Type 'help' for the commands.")


async def test_a_dumb_terminal_gets_no_colours_and_naws_wraps_the_room(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    ttype, naws = b"\x18", NAWS
    negotiate = IAC + WILL + ttype + IAC + SB + ttype + b"\x00DUMB" + IAC + SE
    negotiate += IAC + WILL + naws + IAC + SB + naws + b"\x00\x1e\x00\x18" + IAC + SE  # 30x24
    async with running(tmp_path, **TELNET) as h:
        ws = await h.connect("Armitage")
        telnet = await log_in(h, "Wilmarth", negotiate=negotiate)
        assert IAC + SB + ttype + b"\x01" + IAC + SE in telnet.data  # the server asked its name
        await ws.command("global evening all")
        await telnet.line("look")
        await telnet.read_until("Armitage (global): evening all")
        assert b"\x1b[" not in telnet.data
        room = bytes(telnet.data).split(b"Miskatonic Quadrangle\r\n", 1)[1].split(b"Here:")[0]
        assert all(len(line) <= 29 for line in room.split(b"\r\n"))
        assert len(room.split(b"\r\n")) > 5  # wrapped to 29 columns, not one long line


async def test_a_new_web_session_supersedes_the_telnet_socket_but_not_the_presence(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, **TELNET) as h:
        telnet = await log_in(h, "Wilmarth")
        await telnet.line("north")
        await telnet.read_until("Exits: south, up")
        web = await h.connect("Wilmarth", query="&session_id=tab-2")
        assert "*** New game session established ***" in await telnet.closed()
        state = web.received[0]
        assert state["event_type"] == "game_state"
        assert state["data"]["room"]["name"] == "Orne Library Entrance Hall"  # same presence
