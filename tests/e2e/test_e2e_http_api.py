"""The HTTP API (PROTOCOL.md section 18) end to end: a real server process, clients from the
standard library (http.client) and the websockets library, nothing shared with the server."""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.conftest import (
    CLI_TIMEOUT_S,
    FRAME_TIMEOUT_S,
    HOST,
    ServerProcess,
    StartServer,
    child_env,
    cli,
    close_of,
    http_get,
    read_burst,
    ws_connect,
)

PASSWORD = "the elder sign"
OTHER_HOST = "127.0.0.2"  # a second loopback address: another client IP without a proxy
Reply = tuple[int, dict[str, str], Any]


def request(
    server: ServerProcess,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source: str = HOST,
) -> Reply:
    """One HTTP/1.1 request to the game port; (status, lower-cased headers, JSON body)."""
    conn = http.client.HTTPConnection(
        HOST, server.ws_port, timeout=FRAME_TIMEOUT_S, source_address=(source, 0)
    )
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    if data is not None:
        sent.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
        found = {name.lower(): value for name, value in response.getheaders()}
        return response.status, found, json.loads(raw) if raw else None
    finally:
        conn.close()


def login(server: ServerProcess, username: str, password: str = PASSWORD, **kw: Any) -> Reply:
    return request(
        server, "POST", "/v1/auth/login", {"username": username, "password": password}, **kw
    )


def add_player(server: ServerProcess, *args: str) -> dict[str, Any]:
    [line] = cli("players", "add", *args, "--data-dir", str(server.data_dir), cwd=server.data_dir)
    record: dict[str, Any] = json.loads(line)
    return record


@pytest.fixture
def api_server(server: ServerProcess) -> ServerProcess:
    """The default server plus Lavinia (two characters) and Wilbur, both with PASSWORD."""
    lavinia = add_player(server, "Lavinia", "--password", PASSWORD)
    add_player(server, "Asenath", "--user-id", lavinia["user_id"])
    add_player(server, "Wilbur", "--password", PASSWORD)
    server.players["Lavinia"] = lavinia
    return server


def test_log_in_list_select_and_play_with_the_returned_token(api_server: ServerProcess) -> None:
    status, _, body = login(api_server, "lavinia")  # any case
    assert status == 200
    assert set(body) == {"access_token", "token_type", "user_id", "characters"}
    assert body["token_type"] == "bearer"
    assert body["user_id"] == api_server.players["Lavinia"]["user_id"]
    assert [c["name"] for c in body["characters"]] == ["Lavinia", "Asenath"]
    token = body["access_token"]

    status, _, characters = request(api_server, "GET", "/v1/api/players/characters", token=token)
    assert status == 200 and characters == body["characters"]
    for character in characters:
        assert set(character) >= {"id", "player_id", "name", "profession_id", "level"}
        assert set(character) >= {"profession_name", "created_at", "last_active", "room_id"}
        assert isinstance(character["profession_id"], int)
        assert character["id"] == character["player_id"]
    asenath = characters[1]

    selected = {"character_id": asenath["id"]}
    status, _, chosen = request(
        api_server, "POST", "/v1/api/players/select-character", selected, token=token
    )
    assert (status, chosen) == (200, asenath)
    grace = f"/v1/api/players/{asenath['id']}/start-login-grace-period"
    assert request(api_server, "POST", grace, token=token)[::2] == (200, {})

    async def play() -> list[dict[str, Any]]:
        url = api_server.url(token=token, character_id=asenath["id"])
        async with ws_connect(url) as ws:
            return await read_burst(ws)

    burst = asyncio.run(play())
    game_state = next(f for f in burst if f.get("event_type") == "game_state")
    assert game_state["data"]["player"]["name"] == "Asenath"
    assert PASSWORD not in api_server.output() and token not in api_server.output()


def test_a_valid_token_is_exchanged_for_a_fresh_one_and_no_token_is_not(
    api_server: ServerProcess,
) -> None:
    token = login(api_server, "Wilbur")[2]["access_token"]
    status, _, body = request(api_server, "POST", "/v1/auth/refresh", token=token)
    assert status == 200
    assert [c["name"] for c in body["characters"]] == ["Wilbur"]
    fresh = body["access_token"]
    assert request(api_server, "GET", "/v1/api/players/characters", token=fresh)[0] == 200
    status, headers, body = request(api_server, "POST", "/v1/auth/refresh")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert request(api_server, "POST", "/v1/auth/refresh", token="not.a.token")[0] == 401


def test_unknown_name_wrong_password_and_no_password_look_the_same(
    api_server: ServerProcess,
) -> None:
    answers = [
        login(api_server, "Nobody"),
        login(api_server, "Lavinia", "not the password"),
        login(api_server, "Carter"),  # exists, but has no password
    ]
    for status, _, body in answers:
        assert (status, body) == (401, {"detail": "Invalid credentials"})


def test_failed_logins_are_limited_per_name_and_per_ip(api_server: ServerProcess) -> None:
    statuses = []
    for _ in range(20):
        status, headers, body = login(api_server, "Lavinia", "guess")
        statuses.append(status)
        if status == 429:
            assert body == {"detail": "Too many login attempts"}
            assert 1 <= int(headers["retry-after"]) <= 300
    assert statuses == [401] * 5 + [429] * 15  # default: 5 failures per name in 300 s
    assert login(api_server, "Lavinia")[0] == 429  # over the limit even the right password
    assert login(api_server, "Wilbur", source=OTHER_HOST)[0] == 200


def test_failed_logins_from_one_ip_block_that_ip_only(start_server: StartServer) -> None:
    server = start_server("--login-rate-ip", "3", "--trusted-proxies", OTHER_HOST)
    add_player(server, "Wilbur", "--password", PASSWORD)
    for name in ("a", "b", "c"):
        assert login(server, name, "guess")[0] == 401
    assert login(server, "Wilbur")[0] == 429
    assert login(server, "Wilbur", source=OTHER_HOST)[0] == 200
    # Behind a trusted proxy the limit counts the clients it names, not the proxy.
    behind = {"X-Forwarded-For": "203.0.113.7"}
    for name in ("d", "e", "f"):
        assert login(server, name, "guess", source=OTHER_HOST, headers=behind)[0] == 401
    assert login(server, "Wilbur", source=OTHER_HOST, headers=behind)[0] == 429
    other = {"X-Forwarded-For": "203.0.113.8"}
    assert login(server, "Wilbur", source=OTHER_HOST, headers=other)[0] == 200


def test_registration_is_closed_by_default(server: ServerProcess) -> None:
    body = {"username": "Keziah", "password": PASSWORD, "invite_code": "x"}
    status, _, answer = request(server, "POST", "/v1/auth/register", body)
    assert (status, answer) == (403, {"detail": "Registration is closed"})


def test_registration_with_an_invite_code_is_single_use(start_server: StartServer) -> None:
    server = start_server("--registration-open", "true")
    created = cli("invites", "create", "2", "--data-dir", str(server.data_dir), cwd=server.data_dir)
    code, spare = created
    form = {"username": "Keziah", "password": PASSWORD, "invite_code": code}
    status, _, body = request(server, "POST", "/v1/auth/register", form)
    assert status == 200 and body["token_type"] == "bearer"
    assert [c["name"] for c in body["characters"]] == ["Keziah"]
    again = {**form, "username": "Brown"}
    status, _, refused = request(server, "POST", "/v1/auth/register", again)
    assert (status, refused) == (400, {"detail": "Invalid or already used invite code"})
    assert login(server, "keziah")[0] == 200
    short = {**again, "password": "short", "invite_code": spare}
    assert request(server, "POST", "/v1/auth/register", short)[0] == 422
    taken = {**form, "username": "KEZIAH", "invite_code": spare}
    assert request(server, "POST", "/v1/auth/register", taken)[::2] == (
        400,
        {"detail": "Username already exists"},
    )
    bad_name = {**form, "username": "9lives", "invite_code": spare}
    status, _, answer = request(server, "POST", "/v1/auth/register", bad_name)
    assert status == 422 and answer["detail"].startswith("username: ")
    # The spare code survived every refusal above.
    assert request(server, "POST", "/v1/auth/register", {**again, "invite_code": spare})[0] == 200


def test_players_passwd_reads_the_password_from_stdin(server: ServerProcess) -> None:
    argv = ["players", "passwd", "Carter", "--data-dir", str(server.data_dir)]
    result = subprocess.run(
        [sys.executable, "-m", "mythos_rt", *argv],
        input="a new password\n",
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=child_env(None),
        cwd=server.data_dir,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert login(server, "Carter", "a new password")[0] == 200


def test_bodies_over_64_kib_are_refused_413(server: ServerProcess) -> None:
    body = json.dumps({"username": "Carter", "password": "x" * (70 * 1024)}).encode()
    status, _, answer = request(server, "POST", "/v1/auth/login", body)
    assert status == 413 and "detail" in answer


def test_other_v1_paths_are_404_and_wrong_methods_405(server: ServerProcess) -> None:
    assert request(server, "GET", "/v1/nope")[::2] == (404, {"detail": "Not Found"})
    assert request(server, "POST", "/v1/api/players/nope", {})[::2] == (
        404,
        {"detail": "Not Found"},
    )
    status, headers, _ = request(server, "GET", "/v1/auth/login")
    assert (status, headers["allow"]) == (405, "POST")


def test_bad_bodies_are_422_with_a_detail(api_server: ServerProcess) -> None:
    assert request(api_server, "POST", "/v1/auth/login", b"{")[::2] == (
        422,
        {"detail": "Request body must be a JSON object"},
    )
    wrong_type = {"username": ["Lavinia"], "password": PASSWORD}
    assert request(api_server, "POST", "/v1/auth/login", wrong_type)[::2] == (
        422,
        {"detail": "username: must be a string"},
    )


def test_character_routes_need_a_valid_bearer_token(api_server: ServerProcess) -> None:
    assert request(api_server, "GET", "/v1/api/players/characters")[0] == 401
    bad = request(api_server, "GET", "/v1/api/players/characters", token="not-a-jwt")
    assert bad[0] == 401 and "detail" in bad[2]
    token = login(api_server, "Wilbur")[2]["access_token"]
    lavinia = {"character_id": api_server.players["Lavinia"]["player_id"]}
    forbidden = request(
        api_server, "POST", "/v1/api/players/select-character", lavinia, token=token
    )
    assert forbidden[::2] == (403, {"detail": "Character does not belong to user"})
    unknown = {"character_id": "00000000-0000-4000-8000-000000000000"}
    missing = request(api_server, "POST", "/v1/api/players/select-character", unknown, token=token)
    assert missing[::2] == (404, {"detail": "Character not found"})


def test_logout_over_http_closes_the_live_socket_1000(api_server: ServerProcess) -> None:
    token = login(api_server, "Wilbur")[2]["access_token"]

    async def scenario() -> tuple[Reply, tuple[int, str]]:
        async with ws_connect(api_server.url(token=token)) as ws:
            await read_burst(ws)
            reply = await asyncio.to_thread(
                request, api_server, "POST", "/v1/command", {"command": "logout"}, token=token
            )
            return reply, await close_of(ws)

    (status, _, body), closed = asyncio.run(scenario())
    assert (status, body) == (
        200,
        {"result": "Logged out successfully", "session_terminated": True},
    )
    assert closed == (1000, "Goodbye")
    other = request(api_server, "POST", "/v1/command", {"command": "look"}, token=token)
    assert other[0] == 400


def test_health_and_game_time(server: ServerProcess) -> None:
    assert request(server, "GET", "/v1/monitoring/health")[::2] == (200, {"status": "healthy"})
    status, _, clock = request(server, "GET", "/v1/game/time")
    assert status == 200 and clock["server_timestamp"].endswith("Z")


def test_cors_for_the_ops_page_origin(api_server: ServerProcess) -> None:
    origin = api_server.ops_url
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    status, headers, body = request(api_server, "OPTIONS", "/v1/auth/login", headers=preflight)
    assert (status, body) == (204, None)
    assert headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()
    status, headers, _ = login(api_server, "Wilbur", headers={"Origin": origin})
    assert status == 200 and headers["access-control-allow-origin"] == origin


def test_an_origin_outside_the_allow_list_is_refused(start_server: StartServer) -> None:
    server = start_server("--allowed-origins", "https://game.example")
    evil = request(server, "GET", "/v1/game/time", headers={"Origin": "https://evil.example"})
    assert evil[::2] == (403, {"detail": "Origin not allowed"})
    good = request(server, "GET", "/v1/game/time", headers={"Origin": "https://game.example"})
    assert good[0] == 200 and good[1]["access-control-allow-origin"] == "https://game.example"


def test_the_ops_web_page_logs_in_through_the_game_port(server: ServerProcess) -> None:
    status, page = http_get(f"{server.ops_url}/")
    assert status == 200 and 'type="password"' in page
    assert f'name="mythos-game-port" content="{server.ws_port}"' in page
    assert f'name="mythos-ops-port" content="{server.ops_port}"' in page
    status, script = http_get(f"{server.ops_url}/client.js")
    assert status == 200 and "/auth/login" in script and "new WebSocket" in script
