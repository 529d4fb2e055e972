"""Handshake end to end (PROTOCOL.md sections 1 and 2): token carriers, refusals, Origin, paths."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable

import attrs
import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import (
    Frame,
    ServerProcess,
    StartServer,
    close_of,
    mint_token,
    read_burst,
    ws_connect,
)

OTHER_SECRET = "a-different-secret-" + "z" * 32
SNAKE_CASE = re.compile(r"^[a-z]+(?:_[a-z]+)*$")


async def connect_and_read_burst(url: str, **kwargs: object) -> tuple[str | None, list[Frame]]:
    async with ws_connect(url, **kwargs) as ws:
        return ws.subprotocol, await read_burst(ws)


async def refused_http(url: str, **kwargs: object) -> tuple[int, str | None, Frame]:
    """Expect a refusal before the upgrade: (status, Content-Type, JSON body)."""
    with pytest.raises(InvalidStatus) as caught:
        async with ws_connect(url, **kwargs):
            pass
    response = caught.value.response
    return response.status_code, response.headers.get("Content-Type"), json.loads(response.body)


async def refused_by_close(url: str, **kwargs: object) -> tuple[str | None, tuple[int, str]]:
    """Expect an accepted upgrade then an immediate close: (subprotocol, (code, reason))."""
    async with ws_connect(url, **kwargs) as ws:
        return ws.subprotocol, await close_of(ws)


# --- token carriers ---------------------------------------------------------------------------


def test_token_in_query_connects(shared_server: ServerProcess) -> None:
    url = shared_server.url(token=shared_server.token("Carter"))
    subprotocol, burst = asyncio.run(connect_and_read_burst(url))
    assert subprotocol is None
    assert burst[0]["event_type"] == "game_state"
    assert burst[0]["data"]["player"]["name"] == "Carter"


def test_bearer_subprotocol_is_selected(shared_server: ServerProcess) -> None:
    token = shared_server.token("Pickman")
    subprotocol, burst = asyncio.run(
        connect_and_read_burst(shared_server.url(), subprotocols=["bearer", token])
    )
    assert subprotocol == "bearer"
    assert burst[0]["data"]["player"]["name"] == "Pickman"


def test_token_as_the_only_subprotocol_is_selected(shared_server: ServerProcess) -> None:
    token = shared_server.token("Upton")
    subprotocol, burst = asyncio.run(
        connect_and_read_burst(shared_server.url(), subprotocols=[token])
    )
    assert subprotocol == token
    assert burst[0]["data"]["player"]["name"] == "Upton"


def test_api_ws_alias_path_connects(shared_server: ServerProcess) -> None:
    url = shared_server.url("/api/ws", token=shared_server.token("Dyer"))
    _, burst = asyncio.run(connect_and_read_burst(url))
    assert burst[-1]["event_type"] == "welcome"


# --- refusals ---------------------------------------------------------------------------------


@attrs.frozen
class Refused:
    status: int
    message: str


Case = Callable[[ServerProcess], str]


def _missing_token(s: ServerProcess) -> str:
    return s.url()


def _bad_signature(s: ServerProcess) -> str:
    user_id = s.players["Carter"]["user_id"]
    return s.url(token=mint_token(user_id, secret=OTHER_SECRET))


def _expired(s: ServerProcess) -> str:
    user_id = s.players["Carter"]["user_id"]
    return s.url(token=mint_token(user_id, ttl_s=3600, now=time.time() - 7200))


def _wrong_audience(s: ServerProcess) -> str:
    user_id = s.players["Carter"]["user_id"]
    return s.url(token=mint_token(user_id, audience="some-other-audience"))


def _unknown_character(s: ServerProcess) -> str:
    return s.url(token=s.token("Carter"), character_id=str(uuid.uuid4()))


def _someone_elses_character(s: ServerProcess) -> str:
    return s.url(token=s.token("Carter"), character_id=s.player_id("Pickman"))


def _user_without_player(s: ServerProcess) -> str:
    return s.url(token=mint_token(str(uuid.uuid4())))


REFUSALS: dict[str, tuple[Case, Refused]] = {
    "missing_token": (_missing_token, Refused(401, "Authentication token required")),
    "bad_signature": (_bad_signature, Refused(401, "Invalid token signature")),
    "expired": (_expired, Refused(401, "Token expired")),
    "wrong_audience": (_wrong_audience, Refused(401, "Invalid token audience")),
    "unknown_character": (_unknown_character, Refused(404, "Character not found")),
    "someone_elses_character": (
        _someone_elses_character,
        Refused(403, "Character does not belong to user"),
    ),
    "user_without_player": (_user_without_player, Refused(401, "User has no player record")),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal_without_origin_is_http_status_and_json_body(
    shared_server: ServerProcess, case: str
) -> None:
    make_url, expected = REFUSALS[case]
    status, content_type, body = asyncio.run(refused_http(make_url(shared_server)))
    assert status == expected.status
    assert content_type == "application/json"
    assert list(body) == ["error"] and set(body["error"]) == {"type", "message"}
    assert SNAKE_CASE.match(body["error"]["type"])
    assert body["error"]["message"] == expected.message


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusal_with_origin_is_upgrade_then_close_4xxx(
    shared_server: ServerProcess, case: str
) -> None:
    make_url, expected = REFUSALS[case]
    subprotocol, close = asyncio.run(
        refused_by_close(make_url(shared_server), origin="http://browser.example")
    )
    assert subprotocol is None
    assert close == (4000 + expected.status, expected.message)


def test_browser_style_refusal_selects_bearer_then_closes_4401(
    shared_server: ServerProcess,
) -> None:
    expired = mint_token(shared_server.players["Carter"]["user_id"], now=time.time() - 7200)
    subprotocol, close = asyncio.run(
        refused_by_close(
            shared_server.url(), subprotocols=["bearer", expired], origin="http://browser.example"
        )
    )
    assert subprotocol == "bearer"
    assert close == (4401, "Token expired")


def test_unknown_path_is_404_with_or_without_origin(shared_server: ServerProcess) -> None:
    url = shared_server.url("/v1/api/nowhere", token=shared_server.token("Carter"))
    for origin in (None, "http://browser.example"):
        status, _, body = asyncio.run(refused_http(url, origin=origin))
        assert status == 404
        assert body == {"error": {"type": "not_found", "message": "Not found"}}


# --- Origin allow-list ------------------------------------------------------------------------


def test_origin_allow_list(start_server: StartServer) -> None:
    server = start_server("--allowed-origins", "http://good.example")
    url = server.url(token=server.token("Carter"))

    async def scenario() -> None:
        _, close = await refused_by_close(url, origin="http://evil.example")
        assert close == (4403, "Origin not allowed")
        _, burst = await connect_and_read_burst(url, origin="http://good.example")
        assert burst[-1]["event_type"] == "welcome"
        _, burst = await connect_and_read_burst(url)  # no Origin: not a browser, passes
        assert burst[-1]["event_type"] == "welcome"

    asyncio.run(scenario())


# --- connection attempt limits ------------------------------------------------------------------


def test_connection_attempts_over_the_limit_are_refused_429(start_server: StartServer) -> None:
    server = start_server("--connect-rate-player", "2")
    url = server.url(token=server.token("Carter"))

    async def scenario() -> None:
        for _ in range(2):
            await connect_and_read_burst(url)
        with pytest.raises(InvalidStatus) as caught:
            async with ws_connect(url):
                pass
        response = caught.value.response
        assert response.status_code == 429
        assert json.loads(response.body)["error"]["message"] == "Too many connection attempts"
        assert int(response.headers["Retry-After"]) >= 1
        _, close = await refused_by_close(url, origin="http://browser.example")
        assert close == (4429, "Too many connection attempts")
        _, burst = await connect_and_read_burst(server.url(token=server.token("Pickman")))
        assert burst[-1]["event_type"] == "welcome"  # the limit is per player

    asyncio.run(scenario())


# --- deprecated path --------------------------------------------------------------------------


def test_deprecated_path_with_the_right_player_id_connects(shared_server: ServerProcess) -> None:
    player_id = shared_server.player_id("Danforth")
    token = shared_server.token("Danforth")
    for prefix in ("/v1/api/ws", "/api/ws"):
        url = shared_server.url(f"{prefix}/{player_id}", token=token)
        _, burst = asyncio.run(connect_and_read_burst(url))
        assert burst[0]["player_id"] == player_id


def test_deprecated_path_with_a_wrong_player_id_is_refused_401(
    shared_server: ServerProcess,
) -> None:
    url = shared_server.url(
        f"/v1/api/ws/{shared_server.player_id('Pickman')}", token=shared_server.token("Carter")
    )
    status, _, body = asyncio.run(refused_http(url))
    assert status == 401
    assert SNAKE_CASE.match(body["error"]["type"])


def test_deprecated_path_is_logged_and_tokens_never_are(start_server: StartServer) -> None:
    server = start_server("--log-level", "DEBUG")
    good, expired = (
        server.token("Carter"),
        mint_token(server.players["Pickman"]["user_id"], now=time.time() - 7200),
    )
    forged = mint_token(server.players["Upton"]["user_id"], secret=OTHER_SECRET)
    deprecated = server.url(f"/v1/api/ws/{server.player_id('Carter')}", token=good)

    async def scenario() -> None:
        await connect_and_read_burst(deprecated)
        await connect_and_read_burst(server.url(), subprotocols=["bearer", good])
        await refused_http(server.url(token=expired))
        await refused_by_close(server.url(token=forged), origin="http://browser.example")

    asyncio.run(scenario())
    assert server.stop() == 0
    log = server.log_path.read_text()
    assert "deprecated endpoint" in log
    for token in (good, expired, forged):
        for part in token.split("."):
            assert part not in log, "a token (or part of one) was logged"
