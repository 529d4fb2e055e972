"""A session end to end (PROTOCOL.md sections 4–7, 9, 14, 15): burst, arrivals, frames, closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import (
    DEFAULT_PLAYERS,
    STOP_TIMEOUT_S,
    Frame,
    ServerProcess,
    StartServer,
    close_of,
    mint_token,
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
ROOM_KEYS |= {"occupants", "sub_zone"}
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


def assert_character_panel_shapes(player: Frame) -> None:
    """v1.1 section 5: what the MythosMUD client's character panel and meters read."""
    assert isinstance(player["profession_name"], str) and player["profession_name"]
    stats = player["stats"]
    for key in ("current_dp", "max_dp", "lucidity", "max_lucidity"):
        assert type(stats[key]) is int, key
    assert 0 <= stats["current_dp"] <= stats["max_dp"]
    assert 0 <= stats["lucidity"] <= stats["max_lucidity"]
    attributes = ["strength", "dexterity", "constitution", "size", "intelligence", "power"]
    attributes += ["education", "charisma", "luck", "occult", "corruption"]
    attributes += ["magic_points", "max_magic_points"]
    assert all(type(stats[key]) is int for key in attributes)
    assert stats["position"] == "standing"


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
        "profession_name": data["player"]["profession_name"],
        "stats": data["player"]["stats"],
    }
    assert isinstance(data["player"]["level"], int)
    assert_character_panel_shapes(data["player"])
    assert set(room) == ROOM_KEYS
    assert room["sub_zone"] == room["subzone"]
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


def test_quit_says_goodbye_then_closes_1000_and_the_room_sees_it(server: ServerProcess) -> None:
    token = server.token("Carter")

    async def scenario() -> tuple[Frame, tuple[int, str], Frame, Frame]:
        async with ws_connect(server.url(token=server.token("Pickman"))) as pickman:
            await read_burst(pickman)
            async with ws_connect(server.url(token=token)) as ws:
                await read_burst(ws)
                await next_event(pickman, "room_occupants")  # Carter's arrival
                await send_command(ws, token, "quit")
                reply = await next_event(ws, "command_response")
                close = await close_of(ws)
            left = await next_event(pickman, "player_left_game")  # no grace after quit
            occupants = await next_event(pickman, "room_occupants")
            return reply, close, left, occupants

    reply, close, left, occupants = asyncio.run(scenario())
    assert reply["data"]["result"] == "Goodbye! You have been disconnected from the game."
    assert close == (1000, "Goodbye")
    assert left["data"] == {"player_id": server.player_id("Carter"), "player_name": "Carter"}
    assert occupants["data"]["occupants"] == ["Pickman (warded)"]


def test_several_sockets_per_player(server: ServerProcess) -> None:
    """Section 3: at most 5 sockets, every reply to all of them, one closing keeps the rest."""
    token = server.token("Carter")

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            sockets: list[ClientConnection] = []
            for _ in range(5):
                ws = await stack.enter_async_context(ws_connect(server.url(token=token)))
                await read_burst(ws)
                sockets.append(ws)
            with pytest.raises(InvalidStatus) as caught:
                async with ws_connect(server.url(token=token)):
                    pass
            assert caught.value.response.status_code == 429
            assert json.loads(caught.value.response.body)["error"]["message"] == (
                "Too many connections"
            )
            await sockets[0].close()
            await send_command(sockets[1], token, "whoami")
            for ws in sockets[1:]:
                reply = await next_event(ws, "command_response")
                assert reply["data"]["result"].startswith("You are Carter")
            url = server.url(token=token, session_id="another-session")
            async with ws_connect(url) as newer:
                await read_burst(newer)
                for ws in sockets[1:]:
                    assert await close_of(ws) == (4000, "New game session established")
                await ping_pong(newer, token)

    asyncio.run(scenario())


def test_validation_error_frames_keep_the_socket_open(server: ServerProcess) -> None:
    token = server.token("Carter")

    async def scenario() -> list[Frame]:
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            errors = []
            for bad in (
                "{not json",
                json.dumps({"type": "ping"}),  # no csrfToken
                wrapped({"type": "teleport"}, token),
                "x" * 10_241,  # over the 10,240-byte frame limit, under the transport cap
                b"\x00binary",
            ):
                await ws.send(bad)
                errors.append(await recv_frame(ws))
            await ping_pong(ws, token)  # still open and serving
            return errors

    bad_json, no_csrf, unknown, too_big, binary = asyncio.run(scenario())
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
    assert too_big["details"]["error_type"] == "size_limit_exceeded"
    assert binary["details"]["error_type"] == "invalid_type"


async def close_after_oversized_frame(server: ServerProcess) -> tuple[int, str]:
    async with ws_connect(server.url(token=server.token("Carter"))) as ws:
        await read_burst(ws)
        await ws.send("z" * (64 * 1024 + 1))
        return await close_of(ws)


def test_frame_over_the_transport_cap_closes_1009(server: ServerProcess) -> None:
    code, _ = asyncio.run(close_after_oversized_frame(server))
    assert code == 1009


def test_frame_over_the_transport_cap_close_reason_is_message_too_big(
    server: ServerProcess,
) -> None:
    assert asyncio.run(close_after_oversized_frame(server)) == (1009, "Message too big")


# --- liveness and expiry (section 13) -----------------------------------------------------------


def test_idle_socket_is_closed_4001(start_server: StartServer) -> None:
    server = start_server("--idle-timeout-s", "1")

    async def scenario() -> tuple[int, str]:
        async with ws_connect(server.url(token=server.token("Carter"))) as ws:
            await read_burst(ws)
            return await close_of(ws)

    assert asyncio.run(scenario()) == (4001, "Connection cleaned up")


def test_token_expiry_on_a_live_socket_warns_then_closes_4401(start_server: StartServer) -> None:
    # Margins for a loaded machine: the burst has TTL - warning = 4 s to arrive.
    server = start_server("--token-warning-s", "2")
    token = mint_token(server.players["Carter"]["user_id"], ttl_s=6)

    async def scenario() -> tuple[Frame, tuple[int, str]]:
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            expiring = await next_event(ws, "token_expiring")
            return expiring, await close_of(ws)

    expiring, close = asyncio.run(scenario())
    assert TIMESTAMP.match(expiring["data"]["expires_at"])
    assert close == (4401, "Token expired")


def test_a_token_closed_at_exp_is_refused_at_once_by_the_handshake(
    start_server: StartServer,
) -> None:
    """v1.1 section 2: no leeway on exp, so the web client cannot walk straight back in."""
    server = start_server()
    token = mint_token(server.players["Carter"]["user_id"], ttl_s=5)

    async def scenario() -> tuple[tuple[int, str], int, str]:
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            close = await close_of(ws)
        with pytest.raises(InvalidStatus) as caught:
            async with ws_connect(server.url(token=token)):
                pass
        response = caught.value.response
        return close, response.status_code, json.loads(response.body)["error"]["message"]

    assert asyncio.run(scenario()) == ((4401, "Token expired"), 401, "Token expired")


def test_refreshed_token_keeps_the_socket_and_becomes_a_csrf_token(
    start_server: StartServer,
) -> None:
    server = start_server("--token-warning-s", "2")
    user_id = server.players["Carter"]["user_id"]
    old, new = mint_token(user_id, ttl_s=6), mint_token(user_id, ttl_s=600)

    async def scenario() -> Frame:
        async with (
            ws_connect(server.url(token=old)) as ws,
            ws_connect(server.url(token=old)) as witness,  # not refreshed: closes at the old exp
        ):
            await read_burst(ws)
            await read_burst(witness)
            await ws.send(wrapped({"type": "refresh_token", "data": {"token": new}}, old))
            refreshed = await next_event(ws, "token_refreshed")
            assert await close_of(witness) == (4401, "Token expired")  # the old exp has passed
            await ping_pong(ws, new)  # the refreshed socket stays; the new token is its CSRF
            return refreshed

    refreshed = asyncio.run(scenario())
    assert TIMESTAMP.match(refreshed["data"]["expires_at"])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_closes_every_client_1001_and_exits_0(
    server: ServerProcess, signum: signal.Signals
) -> None:
    async def scenario() -> list[tuple[int, str]]:
        async with contextlib.AsyncExitStack() as stack:
            clients: list[ClientConnection] = []
            for name in DEFAULT_PLAYERS:
                url = server.url(token=server.token(name))
                clients.append(await stack.enter_async_context(ws_connect(url)))
            for ws in clients:
                await read_burst(ws)
            server.proc.send_signal(signum)
            return list(await asyncio.gather(*(close_of(ws) for ws in clients)))

    closes = asyncio.run(scenario())
    assert closes == [(1001, "Server shutting down")] * len(DEFAULT_PLAYERS)
    try:
        returncode = server.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit after {signum.name}:\n{server.output()}") from None
    assert returncode == 0, server.output()


def test_a_superseded_tab_reconnecting_as_a_browser_gets_4409_and_the_new_tab_plays(
    server: ServerProcess,
) -> None:
    """v1.1 sections 3, 15: no ping-pong between two tabs of the web client."""
    token = server.token("Carter")
    origin = "http://browser.example"

    async def scenario() -> list[tuple[int, str]]:
        old_url = server.url(token=token, session_id="tab-1")
        async with ws_connect(old_url, origin=origin) as old:
            await read_burst(old)
            async with ws_connect(
                server.url(token=token, session_id="tab-2"), origin=origin
            ) as new:
                await read_burst(new)
                closes = [await close_of(old)]
                for _ in range(6):  # more than the per-player attempt limit (5 per 60 s)
                    async with ws_connect(old_url, origin=origin) as retry:
                        closes.append(await close_of(retry))
                await ping_pong(new, token)
                return closes

    closes = asyncio.run(scenario())
    assert closes == [(4000, "New game session established")] + [(4409, "Session ended")] * 6
