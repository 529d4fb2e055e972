"""The handshake end to end over memory streams (PROTOCOL.md sections 1–3, 8, 15).

Refusals without ``Origin`` are read as HTTP with ``Harness.raw_handshake``; with ``Origin`` they
arrive as an accepted upgrade closed with 4000+status, read with a real trio-websocket client.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import Endpoint, wrap_client_stream

from mythos_rt.runtime import gate as gate_module
from tests.runtime.harness import AUDIENCE, SECRET, Client, Harness, running, upgrade_request

ORIGIN = (b"Origin", b"http://x")
OTHER_SECRET = "another-secret-" + "o" * 40  # long enough for HS256 without a key warning

# --- tokens by hand ------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_jwt(
    claims: dict[str, Any], *, secret: str = SECRET, header: dict[str, Any] | None = None
) -> str:
    """An HS256 JWT built without PyJWT, so tests can craft what PyJWT would refuse to make."""
    head = header if header is not None else {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64url(json.dumps(head).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def claims_for(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": user_id, "aud": AUDIENCE, "iat": now, "exp": now + 3600, **overrides}


def user_of(h: Harness, name: str) -> str:
    return h.players[name].user_id


def token_with(h: Harness, name: str, **overrides: Any) -> str:
    return encode_jwt(claims_for(user_of(h, name), **overrides))


def unsigned_token(h: Harness, name: str) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims_for(user_of(h, name))).encode())
    return f"{header}.{payload}."


def sized_token(user_id: str, size: int) -> str:
    """A valid HS256 token exactly ``size`` bytes long (padded with an extra claim)."""
    for kid in range(4):  # base64 skips some lengths; a header field of 0-3 chars fills the gap
        header = {"alg": "HS256", "typ": "JWT", **({"kid": "k" * kid} if kid else {})}
        for pad in range(max(0, size * 3 // 4 - 300), size):
            token = encode_jwt(claims_for(user_id, pad="x" * pad), header=header)
            if len(token) == size:
                return token
            if len(token) > size:
                break
    raise AssertionError(f"no token of {size} bytes")


# --- clients by hand -----------------------------------------------------------------------------


async def open_ws(
    h: Harness,
    resource: str,
    *,
    token: str = "",
    subprotocols: Sequence[str] | None = None,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> Client:
    """Like ``Harness.connect`` but for any request target; reads nothing."""
    ws = await wrap_client_stream(
        h.nursery,
        h.open_stream(),
        "localhost",
        resource,
        subprotocols=subprotocols,
        extra_headers=list(headers),
        message_queue_size=10_000,
    )
    return Client(ws, token)


async def first_status(h: Harness, target: str, headers: Sequence[tuple[str, str]] = ()) -> int:
    """Send an upgrade request and return the status of the first response line (101 or not)."""
    stream = h.open_stream()
    await stream.send_all(upgrade_request(target, headers))
    data = b""
    while b"\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, "the server hung up without a response"
        data += chunk
    await stream.aclose()
    return int(data.split(b" ", 2)[1])


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": error_type, "message": message}}


# --- connecting ----------------------------------------------------------------------------------


async def test_query_token_connects(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage", read_burst=False)
        burst = await client.burst()
        assert burst[0]["data"]["player"]["name"] == "Armitage"
        assert burst[-1]["event_type"] == "welcome"
        assert client.ws.subprotocol is None


@pytest.mark.parametrize("path", ["/v1/api/ws", "/api/ws", "/v1/api/ws/", "/api/ws/"])
async def test_every_main_endpoint_connects(
    tmp_path: Path, autojump_clock: trio.abc.Clock, path: str
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Wilmarth")
        client = await open_ws(h, f"{path}?token={token}", token=token)
        burst = await client.burst()
        assert burst[0]["player_id"] == h.players["Wilmarth"].player_id


@pytest.mark.parametrize("bearer", ["bearer", "Bearer"])
async def test_bearer_subprotocol_connects_and_selects_bearer(
    tmp_path: Path, autojump_clock: trio.abc.Clock, bearer: str
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Armitage")
        client = await h.connect("Armitage", subprotocols=[bearer, token], token=token)
        assert client.ws.subprotocol == bearer
        await client.send({"type": "ping"})  # the socket's csrf token is the subprotocol token
        assert (await client.next())["event_type"] == "pong"


async def test_token_first_then_bearer_selects_bearer(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Armitage")
        client = await h.connect("Armitage", subprotocols=[token, "bearer"], token=token)
        assert client.ws.subprotocol == "bearer"


async def test_token_alone_as_subprotocol_is_selected(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Armitage")
        client = await h.connect("Armitage", subprotocols=[token], token=token)
        assert client.ws.subprotocol == token


async def test_bearer_alone_takes_the_query_token_and_selects_bearer(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Dyer")
        client = await h.connect(
            "Dyer", subprotocols=["bearer"], query=f"token={token}", token=token
        )
        assert client.ws.subprotocol == "bearer"
        assert client.received[0]["data"]["player"]["name"] == "Dyer"


async def test_subprotocol_token_wins_over_the_query_token(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Wilmarth")
        client = await h.connect(
            "Wilmarth",
            subprotocols=["bearer", token],
            query=f"token={h.token('Armitage')}",
            token=token,
        )
        assert client.received[0]["data"]["player"]["name"] == "Wilmarth"


async def test_not_before_and_issued_at_within_the_leeway_still_connect(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """v1.1 section 2: the 10 s leeway covers a client clock slightly ahead (nbf, iat)."""
    async with running(tmp_path) as h:
        soon = int(time.time()) + 5
        token = token_with(h, "Armitage", nbf=soon, iat=soon)
        client = await h.connect("Armitage", token=token)
        assert client.received[-1]["event_type"] == "welcome"


async def test_token_of_exactly_8_kib_connects(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        token = sized_token(user_of(h, "Armitage"), 8192)
        assert len(token.encode()) == 8192
        client = await h.connect("Armitage", token=token)
        assert client.received[0]["data"]["player"]["name"] == "Armitage"


async def test_character_id_selects_among_the_users_players(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = h.players["Armitage"]
        (second,) = h.store.add_players(
            ["Second"], room_id=armitage.room_id, user_id=armitage.user_id
        )
        token = h.token("Armitage")

        async def name_for(query: str) -> str:
            client = await h.connect("Armitage", query=query, token=token)
            name: str = client.received[0]["data"]["player"]["name"]
            await client.ws.aclose()
            return name

        assert await name_for("") == "Armitage"  # no character_id: the oldest player
        assert await name_for(f"&character_id={second.player_id}") == "Second"
        assert await name_for(f"&character_id={second.player_id.upper()}") == "Second"
        assert await name_for(f"&character_id={armitage.player_id}") == "Armitage"
        # not a UUID: ignored, the oldest player
        assert await name_for("&character_id=Second") == "Armitage"
        h.store.delete_player(armitage.player_id)
        assert await name_for("") == "Second"


async def test_session_id_of_128_chars_connects(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage", query="&session_id=" + "s" * 128)
        assert client.received[-1]["event_type"] == "welcome"


@pytest.mark.parametrize("prefix", ["/api/ws", "/v1/api/ws"])
async def test_deprecated_path_with_the_resolved_player_id_connects(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    prefix: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="mythos_rt")
    async with running(tmp_path) as h:
        player_id = h.players["Wilmarth"].player_id
        token = h.token("Wilmarth")
        client = await open_ws(h, f"{prefix}/{player_id}?token={token}", token=token)
        burst = await client.burst()
        assert burst[0]["player_id"] == player_id
        await client.send({"type": "ping"})
        assert (await client.next())["event_type"] == "pong"
        warnings = [r for r in caplog.records if "deprecated endpoint" in r.getMessage()]
        assert len(warnings) == 1
        assert player_id in warnings[0].getMessage()
        assert token not in caplog.text


# --- refusals ------------------------------------------------------------------------------------

# Each case: build the request target (doing any setup) → status, error type, message.
RefusalCase = Callable[[Harness], tuple[str, int, str, str]]


def _deleted_character(h: Harness) -> tuple[str, int, str, str]:
    wilmarth = h.players["Wilmarth"]
    h.store.delete_player(wilmarth.player_id)
    target = f"/v1/api/ws?token={h.token('Wilmarth')}&character_id={wilmarth.player_id}"
    return target, 404, "character_not_found", "Character not found"


def _only_player_deleted(h: Harness) -> tuple[str, int, str, str]:
    h.store.delete_player(h.players["Dyer"].player_id)
    return f"/v1/api/ws?token={h.token('Dyer')}", 401, "no_player", "User has no player record"


def _draining(h: Harness) -> tuple[str, int, str, str]:
    h.app.gate.draining = True
    return (
        f"/v1/api/ws?token={h.token('Armitage')}",
        503,
        "server_draining",
        ("Server is shutting down"),
    )


AUTH = "authentication_failed"
REFUSALS: dict[str, RefusalCase] = {
    "missing token": lambda h: (
        "/v1/api/ws",
        401,
        "missing_token",
        "Authentication token required",
    ),
    "empty token": lambda h: (
        "/v1/api/ws?token=&session_id=x",
        401,
        "missing_token",
        "Authentication token required",
    ),
    "malformed token": lambda h: ("/v1/api/ws?token=not-a-jwt", 401, AUTH, "Invalid token"),
    "three garbage segments": lambda h: (
        "/v1/api/ws?token=aaa.bbb.ccc",
        401,
        AUTH,
        "Invalid token",
    ),
    "bad signature": lambda h: (
        f"/v1/api/ws?token={encode_jwt(claims_for(user_of(h, 'Armitage')), secret=OTHER_SECRET)}",
        401,
        AUTH,
        "Invalid token signature",
    ),
    "expired a second ago (no leeway on exp)": lambda h: (
        f"/v1/api/ws?token={h.token('Armitage', ttl_s=-1)}",
        401,
        AUTH,
        "Token expired",
    ),
    "not valid before beyond the leeway": lambda h: (
        f"/v1/api/ws?token={token_with(h, 'Armitage', nbf=int(time.time()) + 60)}",
        401,
        AUTH,
        "Invalid token",
    ),
    "wrong audience": lambda h: (
        f"/v1/api/ws?token={token_with(h, 'Armitage', aud='some-other-service')}",
        401,
        AUTH,
        "Invalid token audience",
    ),
    "alg none": lambda h: (
        f"/v1/api/ws?token={unsigned_token(h, 'Armitage')}",
        401,
        AUTH,
        "Invalid token",
    ),
    "sub not a string": lambda h: (
        f"/v1/api/ws?token={token_with(h, 'Armitage', sub=12345)}",
        401,
        AUTH,
        "Invalid token",
    ),
    "sub missing": lambda h: (
        f"/v1/api/ws?token={encode_jwt({'aud': AUDIENCE, 'exp': int(time.time()) + 60})}",
        401,
        AUTH,
        "Token is missing the 'sub' claim",
    ),
    "sub empty": lambda h: (
        f"/v1/api/ws?token={token_with(h, 'Armitage', sub='')}",
        401,
        AUTH,
        "Token is missing the 'sub' claim",
    ),
    "exp missing": lambda h: (
        f"/v1/api/ws?token={encode_jwt({'sub': user_of(h, 'Armitage'), 'aud': AUDIENCE})}",
        401,
        AUTH,
        "Token is missing the 'exp' claim",
    ),
    "token over 8 KiB": lambda h: (
        f"/v1/api/ws?token={sized_token(user_of(h, 'Armitage'), 8193)}",
        401,
        AUTH,
        "Token too large",
    ),
    "unknown character": lambda h: (
        f"/v1/api/ws?token={h.token('Armitage')}&character_id={uuid.uuid4()}",
        404,
        "character_not_found",
        "Character not found",
    ),
    "another user's character": lambda h: (
        f"/v1/api/ws?token={h.token('Armitage')}&character_id={h.players['Wilmarth'].player_id}",
        403,
        "character_forbidden",
        "Character does not belong to user",
    ),
    "deleted character": _deleted_character,
    "user without players": lambda h: (
        f"/v1/api/ws?token={encode_jwt(claims_for('user-that-has-no-players'))}",
        401,
        "no_player",
        "User has no player record",
    ),
    "user whose only player is deleted": _only_player_deleted,
    "deprecated path with another player's id": lambda h: (
        f"/api/ws/{h.players['Wilmarth'].player_id}?token={h.token('Armitage')}",
        401,
        "player_mismatch",
        "Player id does not match the token",
    ),
    "deprecated path with an unknown id": lambda h: (
        f"/v1/api/ws/{uuid.uuid4()}?token={h.token('Armitage')}",
        401,
        "player_mismatch",
        "Player id does not match the token",
    ),
    "session_id of 129 chars": lambda h: (
        f"/v1/api/ws?token={h.token('Armitage')}&session_id={'s' * 129}",
        400,
        "invalid_session_id",
        "session_id is too long",
    ),
    "draining": _draining,
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refusal_without_origin_is_an_http_status_with_a_json_body(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as h:
        target, status, error_type, message = REFUSALS[case](h)
        got_status, headers, body = await h.raw_handshake(target)
        assert got_status == status
        assert headers["content-type"] == "application/json"
        assert "retry-after" not in headers
        assert body == json.dumps(error_body(error_type, message), separators=(",", ":")).encode()
        assert h.app.metrics.value("handshakes_refused", status=str(status)) == 1
        assert h.app.metrics.value("sockets_admitted") == 0
        assert h.app.hub.socket_count() == 0
        # Tokens are never logged, in any form.
        for secret_part in target.partition("token=")[2].split("&")[0].split("."):
            if len(secret_part) > 8:
                assert secret_part not in caplog.text


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refusal_with_origin_is_an_upgrade_closed_4000_plus_status(
    tmp_path: Path, autojump_clock: trio.abc.Clock, case: str
) -> None:
    async with running(tmp_path) as h:
        target, status, _, message = REFUSALS[case](h)
        client = await open_ws(h, target, headers=[ORIGIN])
        assert await client.closed() == (4000 + status, message)
        assert client.received == []
        assert h.app.metrics.value("handshakes_refused", status=str(status)) == 1
        assert h.app.metrics.value("sockets_admitted") == 0


async def test_refusal_with_origin_via_harness_connect(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        bad = encode_jwt(claims_for(user_of(h, "Armitage")), secret=OTHER_SECRET)
        client = await h.connect("Armitage", token=bad, headers=[ORIGIN], read_burst=False)
        assert await client.closed() == (4401, "Invalid token signature")
        other = h.players["Wilmarth"].player_id
        client = await h.connect(
            "Armitage", query=f"&character_id={other}", headers=[ORIGIN], read_burst=False
        )
        assert await client.closed() == (4403, "Character does not belong to user")
        client = await h.connect(
            "Armitage", query=f"&character_id={uuid.uuid4()}", headers=[ORIGIN], read_burst=False
        )
        assert await client.closed() == (4404, "Character not found")


async def test_refusal_with_origin_selects_the_offered_bearer(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """A browser fails a connection whose 101 selects no offered subprotocol; it would never
    see the close code."""
    async with running(tmp_path) as h:
        bad = encode_jwt(claims_for(user_of(h, "Armitage")), secret=OTHER_SECRET)
        client = await h.connect(
            "Armitage", subprotocols=["bearer", bad], headers=[ORIGIN], read_burst=False
        )
        assert client.ws.subprotocol == "bearer"
        assert await client.closed() == (4401, "Invalid token signature")


async def test_unknown_path_is_404_before_the_upgrade_even_with_origin(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        token = h.token("Armitage")
        for target in (f"/ws?token={token}", f"/v1/api/wss?token={token}", "/api/ws/a/b"):
            for headers in ((), (("Origin", "http://x"),)):
                status, response_headers, body = await h.raw_handshake(target, headers)
                assert status == 404
                assert response_headers["content-type"] == "application/json"
                assert json.loads(body) == error_body("not_found", "Not found")
        assert h.app.metrics.value("handshakes_refused", status="404") == 6


async def test_origin_without_an_allow_list_connects(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage", headers=[ORIGIN])
        assert client.received[-1]["event_type"] == "welcome"


# --- allowed origins -----------------------------------------------------------------------------


async def test_listed_origin_connects(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path, allowed_origins=("http://good",)) as h:
        client = await h.connect("Armitage", headers=[(b"Origin", b"http://good")])
        assert client.received[-1]["event_type"] == "welcome"


@pytest.mark.parametrize(
    "origin", [b"http://evil", b"http://good/", b"https://good", b"http://GOOD", b"null"]
)
async def test_unlisted_origin_is_closed_4403(
    tmp_path: Path, autojump_clock: trio.abc.Clock, origin: bytes
) -> None:
    async with running(tmp_path, allowed_origins=("http://good",)) as h:
        client = await h.connect("Armitage", headers=[(b"Origin", origin)], read_burst=False)
        assert await client.closed() == (4403, "Origin not allowed")
        assert h.app.hub.socket_count() == 0


async def test_no_origin_passes_the_allow_list(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, allowed_origins=("http://good",)) as h:
        client = await h.connect("Armitage")
        assert client.received[-1]["event_type"] == "welcome"


# --- connection-attempt limits (section 8) -------------------------------------------------------


def test_client_ip_is_the_address_without_the_port() -> None:
    def request(address: str, port: int) -> Any:
        return SimpleNamespace(remote=Endpoint(address, port, False), headers=[])

    assert gate_module._client_ip(request("203.0.113.9", 50001), {}, ()) == "203.0.113.9"
    assert gate_module._client_ip(request("203.0.113.9", 50002), {}, ()) == "203.0.113.9"
    assert gate_module._client_ip(request("2001:db8::1", 443), {}, ()) == "2001:db8::1"
    unknown: Any = SimpleNamespace(remote="<stream>", headers=[])
    assert gate_module._client_ip(unknown, {}, ()) == "<stream>"


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("10.0.0.1", "203.0.113.9", "203.0.113.9"),  # a trusted proxy names the client
        ("10.0.0.1", "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the client's own claim is skipped
        ("10.0.0.1", "203.0.113.9, 10.0.0.2", "203.0.113.9"),  # two trusted hops
        ("10.0.0.1", "10.0.0.2", "10.0.0.1"),  # only proxies: the peer itself
        ("198.51.100.1", "203.0.113.9", "198.51.100.1"),  # an untrusted peer cannot forward
        ("10.0.0.1", None, "10.0.0.1"),
    ],
)
def test_client_ip_behind_trusted_proxies(peer: str, forwarded: str | None, expected: str) -> None:
    headers = {} if forwarded is None else {"x-forwarded-for": forwarded}
    request: Any = SimpleNamespace(remote=Endpoint(peer, 40000, False))
    assert gate_module._client_ip(request, headers, ("10.0.0.1", "10.0.0.2")) == expected


@pytest.fixture
def one_ip(monkeypatch: pytest.MonkeyPatch) -> str:
    """Memory streams have no address: trio-websocket reports ``repr(stream)``, a different key
    for every stream.  Pin every stream to one client IP."""
    ip = "198.51.100.7"
    monkeypatch.setattr(gate_module, "_client_ip", lambda request, headers, trusted: ip)
    return ip


async def test_fourth_attempt_from_one_ip_within_10s_is_429(
    tmp_path: Path, autojump_clock: trio.abc.Clock, one_ip: str
) -> None:
    async with running(tmp_path, connect_rate_ip=3) as h:
        await h.connect("Armitage")
        await h.connect("Wilmarth")
        status, _, _ = await h.raw_handshake("/v1/api/ws")  # a refused attempt counts too
        assert status == 401
        status, headers, body = await h.raw_handshake(f"/v1/api/ws?token={h.token('Dyer')}")
        assert status == 429
        assert headers["content-type"] == "application/json"
        assert headers["retry-after"] == "10"
        assert json.loads(body) == error_body("rate_limited", "Too many connection attempts")
        # Checked before the token: a bad token is also just 429 now.
        status, _, _ = await h.raw_handshake("/v1/api/ws?token=garbage")
        assert status == 429
        await trio.sleep(11)
        client = await h.connect("Dyer")
        assert client.received[0]["data"]["player"]["name"] == "Dyer"


async def test_refused_attempts_do_not_extend_the_ip_window(
    tmp_path: Path, autojump_clock: trio.abc.Clock, one_ip: str
) -> None:
    async with running(tmp_path, connect_rate_ip=3) as h:
        for name in ("Armitage", "Wilmarth", "Dyer"):
            await h.connect(name)
        for _ in range(5):
            await trio.sleep(1)
            status, headers, _ = await h.raw_handshake(f"/v1/api/ws?token={h.token('Dyer')}")
            assert status == 429
            assert 1 <= int(headers["retry-after"]) <= 10
        await trio.sleep(5.5)  # t = 10.5: the first three left the window
        await h.connect("Dyer")


async def test_ip_limit_with_origin_closes_4429(
    tmp_path: Path, autojump_clock: trio.abc.Clock, one_ip: str
) -> None:
    async with running(tmp_path, connect_rate_ip=1) as h:
        await h.connect("Armitage", headers=[ORIGIN])
        client = await h.connect("Wilmarth", headers=[ORIGIN], read_burst=False)
        assert await client.closed() == (4429, "Too many connection attempts")


async def test_obeying_retry_after_gets_in(
    tmp_path: Path, autojump_clock: trio.abc.Clock, one_ip: str
) -> None:
    async with running(tmp_path, connect_rate_ip=3) as h:
        for name in ("Armitage", "Wilmarth", "Dyer"):
            await h.connect(name)
        await trio.sleep(0.6)
        target = f"/v1/api/ws?token={h.token('Dyer')}"
        status, headers, _ = await h.raw_handshake(target)
        assert status == 429
        await trio.sleep(int(headers["retry-after"]))
        assert await first_status(h, target) == 101


async def test_third_attempt_for_one_player_within_the_window_is_429(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, connect_rate_player=2) as h:
        await h.connect("Armitage")
        await h.connect("Armitage")
        status, headers, body = await h.raw_handshake(f"/v1/api/ws?token={h.token('Armitage')}")
        assert status == 429
        assert headers["retry-after"] == "60"
        assert json.loads(body) == error_body("rate_limited", "Too many connection attempts")
        client = await h.connect("Armitage", headers=[ORIGIN], read_burst=False)
        assert await client.closed() == (4429, "Too many connection attempts")
        # Other players are not affected.
        await h.connect("Wilmarth")
        await h.connect("Wilmarth")
        await trio.sleep(61)
        client = await h.connect("Armitage")
        assert client.received[0]["data"]["player"]["name"] == "Armitage"


async def test_refusals_before_resolution_do_not_count_for_the_player(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, connect_rate_player=1) as h:
        for _ in range(3):
            status, _, _ = await h.raw_handshake(
                f"/v1/api/ws?token={h.token('Armitage', ttl_s=-60)}"
            )
            assert status == 401
        await h.connect("Armitage")


async def test_draining_refuses_503(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        await h.connect("Armitage")
        h.app.gate.draining = True
        status, headers, body = await h.raw_handshake(f"/v1/api/ws?token={h.token('Wilmarth')}")
        assert status == 503
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == error_body("server_draining", "Server is shutting down")
        client = await h.connect("Wilmarth", headers=[ORIGIN], read_burst=False)
        assert await client.closed() == (4503, "Server is shutting down")


# --- slow handshakes -----------------------------------------------------------------------------


async def test_a_handshake_that_never_completes_is_closed_after_the_timeout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, handshake_timeout_s=5.0) as h:
        stream = h.open_stream()
        start = trio.current_time()
        await stream.send_all(b"GET /v1/api/ws?tok")
        # Meanwhile another client connects normally.
        client = await h.connect("Armitage")
        assert client.received[-1]["event_type"] == "welcome"
        assert await stream.receive_some(65536) == b""  # EOF, and no response at all
        assert 5.0 <= trio.current_time() - start < 6.0
        assert h.app.metrics.value("handshakes_timed_out") == 1
        await client.send({"type": "ping"})
        assert (await client.next())["event_type"] == "pong"
        other = await h.connect("Wilmarth")
        assert other.received[-1]["event_type"] == "welcome"
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.gate.tracker.active == 2


async def test_headers_without_the_final_blank_line_time_out(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:  # default handshake_timeout_s = 10
        stream = h.open_stream()
        start = trio.current_time()
        request = (
            f"GET /v1/api/ws?token={h.token('Armitage')} HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        )
        await stream.send_all(request.encode())
        assert await stream.receive_some(65536) == b""
        assert 10.0 <= trio.current_time() - start < 11.0
        assert h.app.hub.socket_count() == 0
        await h.connect("Armitage")


async def test_a_zero_attempt_limit_still_answers_429(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, connect_rate_player=0) as h:
        assert await first_status(h, f"/v1/api/ws?token={h.token('Armitage')}") == 429


@pytest.mark.parametrize(
    ("how", "size"), [("query", 20_000), ("query", 60_000), ("subprotocol", 20_000)]
)
async def test_a_token_too_large_to_parse_is_refused_401_as_json(
    tmp_path: Path, autojump_clock: trio.abc.Clock, how: str, size: int
) -> None:
    """Issue 11.6: a head over the parser's 16 KiB got a bare 400 from trio-websocket."""
    async with running(tmp_path) as h:
        token = "x" * size
        if how == "query":
            answer = await h.raw_handshake(f"/v1/api/ws?token={token}")
        else:
            offer = [("Sec-WebSocket-Protocol", f"bearer, {token}")]
            answer = await h.raw_handshake("/v1/api/ws", offer)
        status, headers, body = answer
        assert (status, headers["content-type"]) == (401, "application/json")
        assert json.loads(body) == error_body(AUTH, "Token too large")
        assert h.app.metrics.value("handshakes_refused", status="401") == 1
        # The server is unharmed: the next player gets in.
        client = await h.connect("Armitage")
        assert client.received[-1]["event_type"] == "welcome"


async def test_an_oversized_head_elsewhere_is_431(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        status, _, body = await h.raw_handshake("/elsewhere", [("X-Filler", "y" * 20_000)])
        assert status == 431
        assert json.loads(body)["error"]["type"] == "headers_too_large"
