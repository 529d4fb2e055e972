"""Resilience end to end: a client reset mid-send, slowloris, and the ops HTTP port.

ENGINEERING.md "Known pitfalls": with trio-websocket, one exception escaping a connection handler
kills every other connection; these tests drive that path over real TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import time

from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import (
    FRAME_TIMEOUT_S,
    HOST,
    ServerProcess,
    StartServer,
    http_get,
    next_event,
    ping_pong,
    raw_upgrade,
    read_burst,
    send_command,
    ws_connect,
)

CROWD = [f"Crowd{i:02d}" for i in range(20)]
VANISHING = "Vanisher"
OBSERVER = "Observer"  # reads room events only, so it cannot skip the one that matters
LATECOMER = "Latecomer"
FLOOD_FRAMES = 300  # more than the frame rate limit: pongs, then error frames, all to be written


def masked_text_frame(text: str) -> bytes:
    """A client-to-server text frame (clients must mask)."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    return header + mask + masked


def flood_then_reset(sock: socket.socket, token: str) -> None:
    """Send frames whose replies the server must write, then vanish with a TCP reset.

    The reset comes once the first reply has arrived, so the server is demonstrably writing to
    us, with hundreds of replies still to write (and a 4 KiB receive buffer we never drain).
    """
    try:
        ping = json.dumps({"type": "ping", "csrfToken": token})
        look = {"type": "game_command", "data": {"command": "look", "args": []}}
        frames = [ping] * (FLOOD_FRAMES // 2) + [json.dumps({**look, "csrfToken": token})] * 5
        frames += [ping] * (FLOOD_FRAMES - len(frames))
        sock.sendall(b"".join(masked_text_frame(f) for f in frames))
        received = b""
        while b'"pong"' not in received:  # bounded by the socket timeout
            chunk = sock.recv(4096)
            assert chunk, "the server closed the raw client before replying"
            received += chunk
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()  # with SO_LINGER (1, 0): RST, unread data discarded


async def chatter(ws: ClientConnection, token: str, rounds: int = 3) -> None:
    """Traffic from one client: look, say (the room, the vanishing client too, hears it), ping."""
    for n in range(rounds):
        await send_command(ws, token, "look")
        await next_event(ws, "command_response")
        await send_command(ws, token, "say", f"round {n}")
        await next_event(ws, "command_response")
        await ping_pong(ws, token)


def test_client_reset_mid_send_leaves_everyone_else_served(start_server: StartServer) -> None:
    server = start_server(players=[*CROWD, OBSERVER, VANISHING, LATECOMER])
    tokens = {name: server.token(name) for name in server.players}

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            crowd: list[ClientConnection] = []
            for name in CROWD:
                ws = await stack.enter_async_context(ws_connect(server.url(token=tokens[name])))
                await read_burst(ws)
                crowd.append(ws)
            observer = await stack.enter_async_context(
                ws_connect(server.url(token=tokens[OBSERVER]))
            )
            await read_burst(observer)
            target = f"/v1/api/ws?token={tokens[VANISHING]}"
            raw = await asyncio.to_thread(raw_upgrade, server.ws_port, target)
            await asyncio.gather(
                asyncio.to_thread(flood_then_reset, raw, tokens[VANISHING]),
                *(chatter(ws, tokens[name]) for ws, name in zip(crowd, CROWD, strict=True)),
            )
            # The vanished socket is noticed at once: the room hears "linkdead" (grace begins),
            # well before the login ward's end (10 s) would refresh the occupants anyway.
            async with asyncio.timeout(5):
                occupants: list[str] = []
                while f"{VANISHING} (linkdead)" not in occupants:
                    occupants = (await next_event(observer, "room_occupants"))["data"]["occupants"]
            for ws, name in zip(crowd, CROWD, strict=True):
                await ping_pong(ws, tokens[name])
            async with ws_connect(server.url(token=tokens[LATECOMER])) as late:
                burst = await read_burst(late)
                assert burst[-1]["event_type"] == "welcome"
            status, body = await asyncio.to_thread(http_get, f"{server.ops_url}/healthz")
            assert (status, body) == (200, "ok\n")

    asyncio.run(scenario())
    assert server.proc.poll() is None, server.output()
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-4000:]


def test_client_that_never_answers_pings_is_dropped_others_stay(
    start_server: StartServer,
) -> None:
    server = start_server(
        # The observer must answer within the timeout even at a load average of 8.
        "--ping-interval-s",
        "1",
        "--ping-timeout-s",
        "5",
        players=[OBSERVER, VANISHING],
    )

    async def scenario() -> None:
        token = server.token(OBSERVER)
        async with ws_connect(server.url(token=token)) as observer:  # answers pings by itself
            await read_burst(observer)
            target = f"/v1/api/ws?token={server.token(VANISHING)}"
            raw = await asyncio.to_thread(raw_upgrade, server.ws_port, target)
            with raw:  # upgraded, then silent: it never reads, never answers a ping
                async with asyncio.timeout(FRAME_TIMEOUT_S + 20):  # found after about 6 s
                    occupants: list[str] = []
                    while f"{VANISHING} (linkdead)" not in occupants:
                        event = await next_event(observer, "room_occupants")
                        occupants = event["data"]["occupants"]
                rest = await asyncio.to_thread(read_to_eof, raw)
            assert 0x9 in opcodes(rest), "the server should have pinged the silent client"
            await ping_pong(observer, token)

    asyncio.run(scenario())


def opcodes(data: bytes) -> list[int]:
    """The opcodes of the (unmasked, server-to-client) frames in ``data``, in order."""
    found, at = [], 0
    while at + 2 <= len(data):
        size, header = data[at + 1] & 0x7F, 2
        if size == 126:
            size, header = struct.unpack_from("!H", data, at + 2)[0], 4
        elif size == 127:
            size, header = struct.unpack_from("!Q", data, at + 2)[0], 10
        found.append(data[at] & 0x0F)
        at += header + size
    return found


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):  # bounded by the socket timeout
        data += chunk
    return data


def test_slowloris_is_cut_off_after_the_handshake_timeout(start_server: StartServer) -> None:
    server = start_server("--handshake-timeout-s", "1")

    async def scenario() -> None:
        with socket.create_connection((HOST, server.ws_port), timeout=FRAME_TIMEOUT_S) as idle:
            opened = time.monotonic()
            async with ws_connect(server.url(token=server.token("Carter"))) as ws:
                await read_burst(ws)  # others connect fine meanwhile
                await ping_pong(ws, server.token("Carter"))
            data = await asyncio.to_thread(idle.recv, 1024)  # bounded by the socket timeout
            waited_s = time.monotonic() - opened
            assert data == b"", "the silent client must see EOF"
            assert 0.5 <= waited_s < FRAME_TIMEOUT_S, waited_s
            async with ws_connect(server.url(token=server.token("Pickman"))) as ws:
                await read_burst(ws)

    asyncio.run(scenario())


def test_ops_endpoints(server: ServerProcess) -> None:
    status, body = http_get(f"{server.ops_url}/healthz")
    assert (status, body) == (200, "ok\n")
    status, _ = http_get(f"{server.ops_url}/readyz")
    assert status == 200
    status, body = http_get(f"{server.ops_url}/metrics")
    assert status == 200 and "mythos_rt_" in body
    status, body = http_get(f"{server.ops_url}/")
    assert status == 200
    assert f'content="{server.ws_port}"' in body, "the page must know the WebSocket port"
    status, _ = http_get(f"{server.ops_url}/no-such-page")
    assert status == 404


# --- connection limits before parsing (issue 11.5) ----------------------------------------------

FLOOD_ADDRESS = "127.0.0.2"  # loopback too, but not the player's address


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def silent_connection(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(FRAME_TIMEOUT_S)
    sock.bind((FLOOD_ADDRESS, 0))
    sock.connect((HOST, port))
    return sock


def test_a_flood_of_silent_connections_is_bounded_before_parsing(
    start_server: StartServer,
) -> None:
    per_ip, flood = 8, 200
    server = start_server("--max-handshakes-per-ip", str(per_ip), "--handshake-timeout-s", "3")
    baseline = open_fds(server.proc.pid)
    socks = [silent_connection(server.ws_port) for _ in range(flood)]
    try:
        # Everything beyond the per-address bound is answered 503 and closed at once, without
        # waiting for a request: it holds nothing on the server.
        answers = [s.recv(1024) for s in socks[per_ip:]]
        assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers[:3]

        async def play() -> None:  # a player from another address is not affected
            async with ws_connect(server.url(token=server.token("Carter"))) as ws:
                burst = await read_burst(ws)
                assert burst[-1]["event_type"] == "welcome"

        asyncio.run(play())
        # The ones within the bound are cut at the handshake timeout, and the server's file
        # descriptors return to where they were.
        assert [s.recv(1024) for s in socks[:per_ip]] == [b""] * per_ip
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + FRAME_TIMEOUT_S
    while open_fds(server.proc.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds(server.proc.pid) <= baseline
    _, body = http_get(f"{server.ops_url}/metrics")
    assert f'mythos_rt_connections_refused_total{{reason="per_ip"}} {float(flood - per_ip)}' in body
