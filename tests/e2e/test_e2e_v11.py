"""What v1.1 of the contract added, end to end as the MythosMUD web client meets it
(PROTOCOL.md v1.1 sections 3, 5, 9, 12, 15, 18): HTTP login then the socket, ``rest`` and its
interruption, retired sessions that do not lock a player out, the payload types the client's
guards read.  A real server process; clients from the standard library (http.client) and the
websockets library, nothing shared with the server."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import time
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.e2e.conftest import (
    FRAME_TIMEOUT_S,
    HOST,
    Frame,
    ServerProcess,
    StartServer,
    cli,
    close_of,
    next_event,
    ping_pong,
    read_burst,
    recv_frame,
    send_command,
    ws_connect,
)

PASSWORD = "the yellow sign"
ORIGIN = "http://browser.example"
START_ROOM = "earth_arkhamcity_campus_quad"  # the bundled world's start_room
NORTH_OF_START = "earth_arkhamcity_campus_library_hall"
INN = "earth_innsmouth_waterfront_mariners_rest"  # "rest_location": true
REST_S = 3
BURST = ["game_state", "room_update", "room_occupants", "welcome"]
CLOCK_STRINGS = ("mythos_datetime", "mythos_clock", "month_name", "day_name", "season", "daypart")
CLOCK_INTS = ("day_of_month", "week_of_month")
CLOCK_BOOLS = ("is_daytime", "is_witching_hour")
CLOCK_LISTS = ("active_holidays", "upcoming_holidays")
COUNTDOWN = re.compile(r"^You will disconnect in \d+ seconds?\.\.\.$")
CLOCK_KEYS = {*CLOCK_STRINGS, *CLOCK_INTS, *CLOCK_BOOLS, *CLOCK_LISTS}


# --- HTTP (section 18) and players with passwords -----------------------------------------------


def api(
    server: ServerProcess, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, Any]:
    """One HTTP/1.1 request to the game port; (status, JSON body)."""
    conn = http.client.HTTPConnection(HOST, server.ws_port, timeout=FRAME_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def add_player(server: ServerProcess, name: str, *flags: str) -> Frame:
    """``players add NAME --password PASSWORD FLAGS`` into the running server's store."""
    [line] = cli(
        "players", "add", name, "--password", PASSWORD, *flags, *server.store_flags,
        cwd=server.data_dir.parent,
    )  # fmt: skip
    record: Frame = json.loads(line)
    server.players[name] = record
    return record


def log_in(server: ServerProcess, name: str) -> str:
    """``POST /v1/auth/login`` as the web client does; the access token."""
    status, body = api(server, "POST", "/v1/auth/login", {"username": name, "password": PASSWORD})
    assert status == 200, body
    token: str = body["access_token"]
    return token


def web_client(
    server: ServerProcess, token: str, session_id: str, character_id: str, **kwargs: Any
) -> Any:
    """The socket as the web client opens it: the token in the subprotocols, the session and
    the character in the query."""
    url = server.url(session_id=session_id, character_id=character_id)
    return ws_connect(url, subprotocols=["bearer", token], **kwargs)


# --- frames -------------------------------------------------------------------------------------


async def until_close(ws: ClientConnection, timeout_s: float) -> tuple[list[Frame], int, str]:
    """Every frame up to the server's close, then its code and reason (fails after timeout_s)."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, f"no close frame after {texts(frames)}"
        return frames, exc.rcvd.code, exc.rcvd.reason
    except TimeoutError:
        raise AssertionError(f"still open after {timeout_s} s; read {texts(frames)}") from None


async def frames_during(ws: ClientConnection, seconds: float) -> list[Frame]:
    """Every frame that arrives within ``seconds``; the socket must stay open meanwhile."""
    frames: list[Frame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(await recv_frame(ws, left))
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            raise AssertionError(f"closed {exc.rcvd} after {texts(frames)}") from None
    return frames


def texts(frames: list[Frame]) -> list[str]:
    """What the player reads: command replies, and the intentional_disconnect notice."""
    seen = []
    for frame in frames:
        if frame.get("event_type") == "command_response":
            seen.append(frame["data"]["result"])
        elif frame.get("event_type") == "intentional_disconnect":
            seen.append(f"[intentional_disconnect] {frame['data']['message']}")
    return seen


async def next_reply(ws: ClientConnection) -> Frame:
    """The next ``command_response`` that answers a command: a rest countdown notice may come
    first on a loaded machine (the countdown runs on its own clock), and is skipped."""
    while True:
        frame = await next_event(ws, "command_response")
        if not COUNTDOWN.match(frame["data"]["result"]):
            return frame


async def reply_to(ws: ClientConnection, token: str, command: str, *args: str) -> Frame:
    await send_command(ws, token, command, *args)
    return await next_reply(ws)


def settle_text(seconds: int) -> str:
    return (
        "You settle into a seated position and begin to rest. "
        f"You will disconnect in {seconds} seconds. "
        "Any movement, combat, or spellcasting will interrupt your rest."
    )


def assert_room_shape(room: Frame) -> None:
    assert isinstance(room["sub_zone"], str) and room["sub_zone"], room
    assert room["sub_zone"] == room["subzone"]


def assert_player_shape(player: Frame, position: str) -> None:
    assert isinstance(player["profession_name"], str) and player["profession_name"]
    stats = player["stats"]
    for key in ("current_dp", "max_dp", "lucidity", "max_lucidity"):
        assert type(stats[key]) is int, (key, stats)
    assert stats["position"] == position


def assert_clock_types(clock: Frame) -> None:
    for key in CLOCK_STRINGS:
        assert isinstance(clock[key], str) and clock[key], (key, clock)
    for key in CLOCK_INTS:
        assert type(clock[key]) is int, (key, clock)
    for key in CLOCK_BOOLS:
        assert type(clock[key]) is bool, (key, clock)
    for key in CLOCK_LISTS:
        assert isinstance(clock[key], list), (key, clock)
        for holiday in clock[key]:  # MythosHoliday, as the client's time panel reads it
            for field in ("id", "name", "tradition", "season"):
                assert isinstance(holiday[field], str), (field, holiday)
            assert type(holiday["duration_hours"]) is int, holiday
            assert isinstance(holiday["bonus_tags"], list), holiday


# --- the tests ----------------------------------------------------------------------------------


def test_log_in_over_http_select_a_character_and_play(server: ServerProcess) -> None:
    record = add_player(server, "Lavinia")
    status, body = api(
        server, "POST", "/v1/auth/login", {"username": "Lavinia", "password": PASSWORD}
    )
    assert status == 200 and body["token_type"] == "bearer"
    token = body["access_token"]
    status, characters = api(server, "GET", "/v1/api/players/characters", token=token)
    assert status == 200
    assert [(c["id"], c["name"]) for c in characters] == [(record["player_id"], "Lavinia")]
    status, chosen = api(
        server, "POST", "/v1/api/players/select-character", {"character_id": characters[0]["id"]},
        token=token,
    )  # fmt: skip
    assert status == 200 and chosen["id"] == record["player_id"]
    session_id = str(uuid.uuid4())

    async def scenario() -> tuple[str | None, list[Frame], Frame]:
        async with web_client(server, token, session_id, chosen["id"]) as ws:
            burst = await read_burst(ws)
            return ws.subprotocol, burst, await reply_to(ws, token, "look")

    subprotocol, burst, look = asyncio.run(scenario())
    assert subprotocol == "bearer"
    assert [f["event_type"] for f in burst] == BURST
    player = burst[0]["data"]["player"]
    assert (player["id"], player["name"], player["room_id"]) == (
        record["player_id"],
        "Lavinia",
        START_ROOM,
    )
    assert burst[-1]["data"] == {"message": "Connected to MythosMUD", "resumed": False}
    assert look["data"]["result"].startswith("Miskatonic")  # the start room's name


def test_rest_counts_down_then_disconnects_and_the_room_sees_the_player_leave(
    start_server: StartServer,
) -> None:
    server = start_server("--rest-s", str(REST_S))
    record = add_player(server, "Lavinia")
    token = log_in(server, "Lavinia")
    witness_token = server.token("Carter")

    async def scenario() -> tuple[list[Frame], int, str, Frame, Frame]:
        async with ws_connect(server.url(token=witness_token)) as witness:
            await read_burst(witness)
            session = str(uuid.uuid4())
            async with web_client(server, token, session, record["player_id"]) as ws:
                await read_burst(ws)
                await next_event(witness, "player_entered_game")
                await send_command(ws, token, "rest")
                frames, code, reason = await until_close(ws, REST_S + FRAME_TIMEOUT_S)
            left = await next_event(witness, "player_left_game")
            occupants = await next_event(witness, "room_occupants")
            # The web client reconnects after every close: the rested session is over.
            try:
                async with web_client(server, token, session, record["player_id"]):
                    raise AssertionError("the rested session was admitted again")
            except InvalidStatus as exc:
                assert exc.response.status_code == 409
            return frames, code, reason, left, occupants

    frames, code, reason, left, occupants = asyncio.run(scenario())
    assert texts(frames) == [
        settle_text(REST_S),
        "You will disconnect in 2 seconds...",
        "You will disconnect in 1 second...",
        "[intentional_disconnect] You have rested and disconnected from the game.",
    ]
    assert frames[-1]["event_type"] == "intentional_disconnect"
    assert frames[-1]["data"] == {"message": "You have rested and disconnected from the game."}
    assert (code, reason) == (1000, "Goodbye")
    assert left["data"]["player_name"] == "Lavinia"
    assert left["data"]["player_id"] == record["player_id"]
    assert not any(name.startswith("Lavinia") for name in occupants["data"]["players"])


def test_moving_interrupts_rest_and_the_player_stays(start_server: StartServer) -> None:
    server = start_server("--rest-s", str(REST_S))
    record = add_player(server, "Lavinia")
    token = log_in(server, "Lavinia")

    async def scenario() -> tuple[list[str], list[Frame], Frame, list[Frame]]:
        async with web_client(server, token, str(uuid.uuid4()), record["player_id"]) as ws:
            await read_burst(ws)
            said = [(await reply_to(ws, token, "rest"))["data"]["result"]]
            said.append((await reply_to(ws, token, "rest"))["data"]["result"])
            await send_command(ws, token, "north")
            replies = [await next_reply(ws)]
            while "room_changed" not in replies[-1]["data"]:  # up to the movement's reply
                replies.append(await next_reply(ws))
            room_state = await next_event(ws, "room_state")
            # The countdown would have ended within REST_S: watch that long and a bit more.
            after = await frames_during(ws, REST_S + 2)
            await ping_pong(ws, token)
            return said, replies, room_state, after

    said, replies, room_state, after = asyncio.run(scenario())
    assert said == [
        settle_text(REST_S),
        "You are already resting. The countdown will complete shortly.",
    ]
    assert texts(replies) == ["Your rest is interrupted as you begin to move.", "You go north."]
    went = replies[-1]["data"]
    assert went["room_changed"] is True and went["room_id"] == NORTH_OF_START
    assert room_state["data"]["room"]["id"] == NORTH_OF_START
    assert texts(after) == [], "the countdown should have stopped"


def test_rest_in_an_inn_disconnects_at_once(start_server: StartServer) -> None:
    # A long countdown elsewhere: were it run here, the close would not come within the bound.
    server = start_server("--rest-s", "60")
    record = add_player(server, "Obed", "--room", INN)
    token = log_in(server, "Obed")

    async def scenario() -> tuple[Frame, list[Frame], int, str]:
        async with web_client(server, token, str(uuid.uuid4()), record["player_id"]) as ws:
            [game_state, *_] = await read_burst(ws)
            await send_command(ws, token, "rest")
            frames, code, reason = await until_close(ws, FRAME_TIMEOUT_S)
            return game_state, frames, code, reason

    game_state, frames, code, reason = asyncio.run(scenario())
    assert game_state["data"]["room"]["id"] == INN
    assert texts(frames) == [
        "You rest peacefully and disconnect from the game.",
        "[intentional_disconnect] You have rested and disconnected from the game.",
    ]
    assert frames[-1]["event_type"] == "intentional_disconnect"
    assert (code, reason) == (1000, "Goodbye")


def test_a_quit_session_is_refused_409_without_counting_toward_the_attempt_limit(
    start_server: StartServer,
) -> None:
    server = start_server("--connect-rate-player", "5")
    record = add_player(server, "Lavinia")
    character = record["player_id"]
    token = log_in(server, "Lavinia")
    session = str(uuid.uuid4())

    async def refused_without_origin() -> tuple[int, Any]:
        try:
            async with web_client(server, token, session, character):
                raise AssertionError("a retired session was admitted")
        except InvalidStatus as exc:
            return exc.response.status_code, json.loads(exc.response.body or b"null")

    async def refused_with_origin() -> tuple[int, str]:
        async with web_client(server, token, session, character, origin=ORIGIN) as ws:
            return await close_of(ws)

    async def scenario() -> tuple[Frame, tuple[int, str], list[object], list[Frame]]:
        async with web_client(server, token, session, character) as ws:
            await read_burst(ws)
            goodbye = await reply_to(ws, token, "quit")
            closed = await close_of(ws)
        refusals: list[object] = []
        for _ in range(3):
            refusals.append(await refused_without_origin())
        for _ in range(2):
            refusals.append(await refused_with_origin())
        # A new login: a new token and a new session_id, the sixth attempt in the minute.
        fresh = await asyncio.to_thread(log_in, server, "Lavinia")
        async with web_client(server, fresh, str(uuid.uuid4()), character) as ws:
            burst = await read_burst(ws)
            await ping_pong(ws, fresh)
        return goodbye, closed, refusals, burst

    goodbye, closed, refusals, burst = asyncio.run(scenario())
    assert goodbye["data"]["result"] == "Goodbye! You have been disconnected from the game."
    assert closed == (1000, "Goodbye")
    http_refusal = (409, {"error": {"type": "session_ended", "message": "Session ended"}})
    assert refusals == [http_refusal] * 3 + [(4409, "Session ended")] * 2
    assert [f["event_type"] for f in burst] == BURST


def test_payloads_carry_what_the_client_guards_read(start_server: StartServer) -> None:
    server = start_server("--game-tick-s", "1", "--rest-s", "60")
    record = add_player(server, "Lavinia")
    token = log_in(server, "Lavinia")
    session = str(uuid.uuid4())
    character = record["player_id"]

    async def game_state_of_a_new_socket() -> Frame:
        async with web_client(server, token, session, character) as other:
            [game_state, *_] = await read_burst(other)
            return game_state

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with web_client(server, token, session, character) as ws:
            seen["burst"] = await read_burst(ws)
            seen["tick"] = await next_event(ws, "game_tick")
            seen["moved"] = await reply_to(ws, token, "north")
            seen["room_state"] = await next_event(ws, "room_state")
            seen["resting"] = await reply_to(ws, token, "rest")
            seen["sitting"] = await game_state_of_a_new_socket()
            seen["back"] = await reply_to(ws, token, "south")
            seen["standing"] = await game_state_of_a_new_socket()
        return seen

    seen = asyncio.run(scenario())
    game_state, room_update = seen["burst"][:2]
    assert [f["event_type"] for f in seen["burst"]] == BURST
    assert_player_shape(game_state["data"]["player"], "standing")
    for room in (
        game_state["data"]["room"],
        room_update["data"]["room"],
        seen["moved"]["data"]["room_state"]["room"],
        seen["room_state"]["data"]["room"],
    ):
        assert_room_shape(room)
    assert seen["room_state"]["data"]["room"]["id"] == NORTH_OF_START
    assert seen["resting"]["data"]["result"] == settle_text(60)
    sitting = seen["sitting"]["data"]
    assert sitting["room"]["id"] == NORTH_OF_START
    assert_player_shape(sitting["player"], "sitting")
    assert_room_shape(sitting["room"])
    assert seen["back"]["data"]["result"] == "Your rest is interrupted as you begin to move."
    assert_player_shape(seen["standing"]["data"]["player"], "standing")

    tick = seen["tick"]["data"]
    assert type(tick["tick_number"]) is int and type(tick["active_players"]) is int
    assert_clock_types(tick)
    status, clock = api(server, "GET", "/v1/game/time")
    assert status == 200
    assert_clock_types(clock)
    # The same Mythos clock fields in both, whatever else the project adds to them.
    assert set(tick) - {"tick_number", "active_players"} == set(clock) - {"server_timestamp"}
    assert isinstance(clock["server_timestamp"], str) and clock["server_timestamp"].endswith("Z")
