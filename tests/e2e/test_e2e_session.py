"""A session end to end (PROTOCOL.md sections 4–7, 9, 14, 15): burst, arrivals, frames, closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess

from websockets.asyncio.client import ClientConnection

from tests.e2e.conftest import (
    DEFAULT_PLAYERS,
    STOP_TIMEOUT_S,
    Frame,
    ServerProcess,
    close_of,
    next_event,
    ping_pong,
    read_burst,
    recv_frame,
    send_command,
    wrapped,
    ws_connect,
)

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ENVELOPE = {"event_type", "timestamp", "sequence_number", "data"}
ROOM_KEYS = {"id", "name", "description", "zone", "subzone", "exits", "players", "npcs"}
ROOM_KEYS |= {"occupants"}
WARD_S = 10.0  # the default login ward: occupant lists say "<Name> (warded)" meanwhile


def assert_envelope(frame: Frame, *, room_id: str | None, player_id: str | None) -> None:
    expected = set(ENVELOPE)
    if room_id is not None:
        expected.add("room_id")
        assert frame["room_id"] == room_id
    if player_id is not None:
        expected.add("player_id")
        assert frame["player_id"] == player_id
    assert set(frame) == expected, frame
    assert TIMESTAMP.match(frame["timestamp"]), frame["timestamp"]
    assert isinstance(frame["sequence_number"], int)


def test_connect_burst_in_order_with_the_documented_shapes(server: ServerProcess) -> None:
    player_id = server.player_id("Carter")

    async def scenario() -> list[Frame]:
        async with ws_connect(server.url(token=server.token("Carter"))) as ws:
            return await read_burst(ws)

    burst = asyncio.run(scenario())
    assert [f["event_type"] for f in burst] == [
        "game_state",
        "room_update",
        "room_occupants",
        "welcome",
    ]
    numbers = [f["sequence_number"] for f in burst]
    assert numbers == sorted(set(numbers)), "sequence numbers must strictly increase"

    game_state, room_update, occupants, welcome = burst
    room = game_state["data"]["room"]
    room_id = room["id"]
    assert room_id == server.players["Carter"]["room_id"]
    me = ["Carter (warded)"]

    assert_envelope(game_state, room_id=room_id, player_id=player_id)
    data = game_state["data"]
    assert set(data) == {
        "player",
        "room",
        "occupants",
        "occupant_count",
        "login_grace_period_active",
        "login_grace_period_remaining",
        "following",
    }
    assert data["player"] == {
        "id": player_id,
        "name": "Carter",
        "level": data["player"]["level"],
        "room_id": room_id,
        "is_admin": False,
    }
    assert isinstance(data["player"]["level"], int)
    assert set(room) == ROOM_KEYS
    assert isinstance(room["exits"], dict) and room["exits"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in room["exits"].items())
    assert (room["players"], room["npcs"], room["occupants"]) == (me, [], me)
    assert (data["occupants"], data["occupant_count"]) == (me, 1)
    assert data["login_grace_period_active"] is True
    assert 0 < data["login_grace_period_remaining"] <= WARD_S
    assert data["following"] is None

    assert_envelope(room_update, room_id=room_update.get("room_id"), player_id=None)
    assert room_update["data"] == {"room": room, "entities": [], "occupants": me}

    assert_envelope(occupants, room_id=room_id, player_id=None)
    assert occupants["data"] == {"players": me, "npcs": [], "occupants": me, "count": 1}

    assert_envelope(welcome, room_id=None, player_id=player_id)
    assert welcome["data"] == {"message": "Connected to MythosMUD", "resumed": False}


def test_second_players_arrival_is_seen_by_the_first(server: ServerProcess) -> None:
    async def scenario() -> tuple[Frame, Frame]:
        async with ws_connect(server.url(token=server.token("Carter"))) as carter:
            await read_burst(carter)
            async with ws_connect(server.url(token=server.token("Pickman"))) as pickman:
                burst = await read_burst(pickman)
                assert sorted(burst[2]["data"]["players"]) == [
                    "Carter (warded)",
                    "Pickman (warded)",
                ]
                entered = await next_event(carter, "player_entered_game")
                occupants = await next_event(carter, "room_occupants")
                return entered, occupants

    entered, occupants = asyncio.run(scenario())
    room_id = server.players["Carter"]["room_id"]
    assert entered["data"] == {
        "player_id": server.player_id("Pickman"),
        "player_name": "Pickman",
    }
    assert entered["room_id"] == room_id
    assert occupants["room_id"] == room_id
    assert occupants["data"]["count"] == 2
    assert sorted(occupants["data"]["occupants"]) == ["Carter (warded)", "Pickman (warded)"]
    assert entered["sequence_number"] < occupants["sequence_number"]


def test_ping_pong_with_the_web_clients_wrapped_frame(server: ServerProcess) -> None:
    token = server.token("Carter")

    async def scenario() -> tuple[Frame, Frame]:
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            wrapped_pong = await ping_pong(ws, token)
            await ws.send(json.dumps({"type": "ping", "csrfToken": token}))
            bare_pong = await recv_frame(ws)
            return wrapped_pong, bare_pong

    for pong in asyncio.run(scenario()):
        assert pong["event_type"] == "pong"
        assert pong["data"] == {}
        assert pong["player_id"] == server.player_id("Carter")


def test_look_command_reply(server: ServerProcess) -> None:
    token = server.token("Carter")

    async def scenario() -> Frame:
        async with ws_connect(server.url(token=token)) as ws:
            burst = await read_burst(ws)
            await send_command(ws, token, "look")
            reply = await next_event(ws, "command_response")
            room = burst[0]["data"]["room"]
            assert reply["data"]["result"].startswith(f"{room['name']}\n{room['description']}")
            return reply

    reply = asyncio.run(scenario())
    assert "Exits: " in reply["data"]["result"]


def test_quit_says_goodbye_then_closes_1000(server: ServerProcess) -> None:
    token = server.token("Carter")

    async def scenario() -> tuple[Frame, tuple[int, str]]:
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            await send_command(ws, token, "quit")
            reply = await next_event(ws, "command_response")
            return reply, await close_of(ws)

    reply, close = asyncio.run(scenario())
    assert reply["data"]["result"] == "Goodbye! You have been disconnected from the game."
    assert close == (1000, "Goodbye")


def test_validation_error_frame_keeps_the_socket_open(server: ServerProcess) -> None:
    token = server.token("Carter")

    async def scenario() -> list[Frame]:
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            await ws.send("{not json")
            bad_json = await recv_frame(ws)
            await ws.send(json.dumps({"type": "ping"}))  # no csrfToken
            no_csrf = await recv_frame(ws)
            await ws.send(wrapped({"type": "teleport"}, token))
            unknown = await recv_frame(ws)
            await ping_pong(ws, token)  # still open and serving
            return [bad_json, no_csrf, unknown]

    bad_json, no_csrf, unknown = asyncio.run(scenario())
    assert bad_json == {
        "type": "error",
        "error_type": "invalid_format",
        "message": bad_json["message"],
        "user_friendly": "Invalid format provided",
        "details": {"player_id": server.player_id("Carter"), "error_type": "json_parse_error"},
    }
    assert bad_json["message"].startswith("Message validation failed: ")
    assert no_csrf["error_type"] == "invalid_format"
    assert no_csrf["details"]["error_type"] == "csrf_token_missing"
    assert unknown["error_type"] == "invalid_command"
    assert unknown["message"] == "Unknown message type: teleport"


def test_sigterm_closes_every_client_1001_and_exits_0(server: ServerProcess) -> None:
    async def scenario() -> list[tuple[int, str]]:
        async with contextlib.AsyncExitStack() as stack:
            clients: list[ClientConnection] = []
            for name in DEFAULT_PLAYERS:
                url = server.url(token=server.token(name))
                clients.append(await stack.enter_async_context(ws_connect(url)))
            for ws in clients:
                await read_burst(ws)
            server.proc.terminate()  # SIGTERM
            return list(await asyncio.gather(*(close_of(ws) for ws in clients)))

    closes = asyncio.run(scenario())
    assert closes == [(1001, "Server shutting down")] * len(DEFAULT_PLAYERS)
    try:
        returncode = server.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit after SIGTERM:\n{server.output()}") from None
    assert returncode == 0, server.output()
