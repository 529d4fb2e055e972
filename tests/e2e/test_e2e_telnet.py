"""Telnet end to end: a real server process, raw TCP sockets speaking telnet by hand (IAC
sequences written out byte by byte), and a WebSocket player from the websockets library."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import (
    FRAME_TIMEOUT_S,
    HOST,
    STOP_TIMEOUT_S,
    ServerProcess,
    StartServer,
    cli,
    free_port,
    next_event,
    read_burst,
    run_cli,
    send_command,
    ws_connect,
)

PASSWORD = "the elder sign"
IAC, DO, WILL, SB, SE, NOP = b"\xff", b"\xfd", b"\xfb", b"\xfa", b"\xf0", b"\xf1"
GMCP = b"\xc9"
ANSI = re.compile(rb"\x1b\[[0-9;]*m")


class RawTelnet:
    """A telnet client as a MUD client's socket sees it: bytes, read until a needle."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.data = bytearray()
        self.seen = 0

    @classmethod
    async def open(cls, port: int) -> RawTelnet:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def line(self, text: str) -> None:
        await self.send(text.encode() + b"\r\n")

    async def read_until(self, needle: str) -> str:
        wanted = needle.encode()
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            while (at := self.data.find(wanted, self.seen)) < 0:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise AssertionError(f"closed before {needle!r}: {bytes(self.data)[-400:]!r}")
                self.data += chunk
        text = bytes(self.data[self.seen : at + len(wanted)])
        self.seen = at + len(wanted)
        return ANSI.sub(b"", text).decode(errors="replace")

    async def until_closed(self) -> bytes:
        """What arrived until the server hung up (a reset too: a server closing while our
        unread bytes sit in its buffer resets the connection)."""
        async with asyncio.timeout(FRAME_TIMEOUT_S):
            with contextlib.suppress(ConnectionResetError):
                while chunk := await self.reader.read(65536):
                    self.data += chunk
        return bytes(self.data[self.seen :])

    def gmcp(self) -> dict[str, Any]:
        """The last message of each GMCP package received so far."""
        found: dict[str, Any] = {}
        for body in re.findall(rb"\xff\xfa\xc9(.*?)\xff\xf0", bytes(self.data), re.S):
            package, _, payload = body.decode().partition(" ")
            found[package] = json.loads(payload) if payload else None
        return found

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> RawTelnet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def telnet_server(start_server: StartServer) -> tuple[ServerProcess, int]:
    port = free_port()
    server = start_server("--telnet-port", str(port))
    server.wait_for_line(f"telnet {HOST} {port}")
    flags = ("--data-dir", str(server.data_dir))
    cli("players", "add", "Lavinia", "--password", PASSWORD, *flags, cwd=server.data_dir)
    return server, port


async def log_in(port: int, name: str, negotiate: bytes = b"") -> RawTelnet:
    telnet = await RawTelnet.open(port)
    await telnet.read_until("known? ")
    await telnet.send(negotiate + name.encode() + b"\r\n")
    await telnet.read_until("Password: ")
    await telnet.line(PASSWORD)
    await telnet.read_until("Type 'help' for the commands.")
    return telnet


def test_telnet_player_plays_with_a_websocket_player(start_server: StartServer) -> None:
    server, port = telnet_server(start_server)
    hello = IAC + SB + GMCP + b'Core.Hello {"client":"Mudlet","version":"4.17.2"}' + IAC + SE
    supports = IAC + SB + GMCP + b'Core.Supports.Set ["Char 1","Room 1","Comm 1"]' + IAC + SE
    token = server.token("Carter")

    async def play(ws: ClientConnection, telnet: RawTelnet) -> None:
        assert (await next_event(ws, "player_entered_game"))["data"]["player_name"] == "Lavinia"
        # GMCP after negotiation: vitals and the room on entering the game.
        gmcp = telnet.gmcp()
        assert gmcp["Char.Vitals"]["dp"] == gmcp["Char.Vitals"]["maxdp"] == 100
        assert gmcp["Room.Info"]["name"] == "Miskatonic Quadrangle"
        assert gmcp["Room.Info"]["exit_ids"]["north"] == "earth_arkhamcity_campus_library_hall"

        await telnet.line("look")
        looked = await telnet.read_until("Exits: north, east, west, south")
        assert "Miskatonic Quadrangle" in looked and "Also here: Carter" in looked

        await telnet.line("say Has anyone seen the Necronomicon?")
        heard = await next_event(ws, "chat_message")
        assert heard["data"]["message"] == "Lavinia says: Has anyone seen the Necronomicon?"

        await send_command(ws, token, "say", "It is in the restricted stacks.")
        await telnet.read_until("Carter says: It is in the restricted stacks.")
        # Colours: say is white, the room name bright cyan.
        assert b"\x1b[0;37mCarter says: It is in the restricted stacks.\x1b[0m" in telnet.data
        assert b"\x1b[1;36mMiskatonic Quadrangle\x1b[0m" in telnet.data
        assert telnet.gmcp()["Comm.Channel.Text"] == {
            "channel": "say",
            "talker": "Carter",
            "text": "Carter says: It is in the restricted stacks.",
        }

        await telnet.line("north")
        await telnet.read_until("Orne Library Entrance Hall")
        left = await next_event(ws, "player_left")
        assert left["data"]["message"] == "Lavinia leaves the room."
        await telnet.read_until("Exits: south, up")
        assert telnet.gmcp()["Room.Info"]["name"] == "Orne Library Entrance Hall"

        await telnet.line("quit")
        assert b"You have been disconnected from the game." in await telnet.until_closed()

    async def scenario() -> None:
        async with ws_connect(f"{server.ws_url}?token={token}") as ws:
            await read_burst(ws)
            async with await log_in(port, "Lavinia", IAC + DO + GMCP + hello + supports) as telnet:
                await play(ws, telnet)

    asyncio.run(scenario())


def test_garbage_and_iac_floods_harm_no_other_player(start_server: StartServer) -> None:
    server, port = telnet_server(start_server)
    rng = random.Random(1928)
    garbage = bytes(rng.randrange(256) for _ in range(200_000))
    requests = IAC + DO + b"\x63" + IAC + WILL + b"\x62" + IAC + NOP
    endless = IAC + SB + GMCP + b"Core.Hello " + b"{" * 500_000  # ended only much later
    token = server.token("Carter")

    async def scenario() -> None:
        async with ws_connect(f"{server.ws_url}?token={token}") as ws:
            await read_burst(ws)
            async with await log_in(port, "Lavinia") as telnet:
                # A stranger at the login prompt sends binary garbage and leaves: its lines
                # are wrong logins at worst; the others notice nothing.
                async with await RawTelnet.open(port) as stranger:
                    await stranger.send(garbage)
                # Another floods IAC commands: hung up on (its notice may be lost in the
                # reset its own unread flood causes).
                async with await RawTelnet.open(port) as flooder:
                    with contextlib.suppress(ConnectionError):
                        await flooder.send(requests * 20_000)
                    await flooder.until_closed()

                # The player repeats option requests and sends a giant subnegotiation.
                await telnet.send(requests * 100)
                await telnet.send(endless)
                await telnet.send(IAC + SE + b"\r\nsay Still here.\r\n")
                heard = await next_event(ws, "chat_message")
                assert heard["data"]["message"] == "Lavinia says: Still here."

                await send_command(ws, token, "say", "So am I.")
                await telnet.read_until("Carter says: So am I.")
                # 100 requests for an option the server lacks: one refusal.
                assert telnet.data.count(IAC + b"\xfc\x63") == 1

    asyncio.run(scenario())
    assert server.proc.poll() is None  # still serving


def test_sigterm_tells_telnet_players_and_exits_cleanly(start_server: StartServer) -> None:
    server, port = telnet_server(start_server)

    async def scenario() -> bytes:
        async with await log_in(port, "Lavinia") as telnet:
            server.proc.terminate()
            return await telnet.until_closed()

    assert b"*** Server shutting down ***" in asyncio.run(scenario())
    assert server.proc.wait(STOP_TIMEOUT_S) == 0  # (stop() would signal a second time)


def test_a_taken_telnet_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        flags = ("--data-dir", str(tmp_path / "data"), "--port", "0", "--ops-port", "0")
        result = run_cli("serve", *flags, "--telnet-port", str(port), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"mythos_rt: cannot listen on {HOST}:{port} (MYTHOS_RT_TELNET_PORT, MYTHOS_RT_HOST):"
        " Address already in use"
    ]
