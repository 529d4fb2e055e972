"""Pure handshake decisions (PROTOCOL.md sections 1–3, 8, 15): endpoints, token carriers,
character ids and how a refusal looks on the wire."""

from __future__ import annotations

import json
import math
import uuid

import pytest

from mythos_rt.core import handshake
from mythos_rt.core.handshake import (
    MAX_CLOSE_REASON_BYTES,
    Endpoint,
    Refusal,
    TokenChoice,
    choose_token,
    parse_character_id,
    route,
    too_many_attempts,
)

PLAYER_ID = "0b6f3c2e-7d1a-4c55-9a4e-2f8b1d9e6c01"

# --- route (section 1) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1/api/ws", Endpoint(None, {})),
        ("/api/ws", Endpoint(None, {})),
        ("/v1/api/ws/", Endpoint(None, {})),
        ("/api/ws/", Endpoint(None, {})),
        (f"/v1/api/ws/{PLAYER_ID}", Endpoint(PLAYER_ID, {})),
        (f"/api/ws/{PLAYER_ID}", Endpoint(PLAYER_ID, {})),
        (f"/api/ws/{PLAYER_ID}/", Endpoint(PLAYER_ID, {})),
        ("/v1/api/ws?token=abc", Endpoint(None, {"token": "abc"})),
        (
            "/v1/api/ws?token=t&session_id=s1&character_id=c1&resume_from=42",
            Endpoint(
                None, {"token": "t", "session_id": "s1", "character_id": "c1", "resume_from": "42"}
            ),
        ),
        ("/api/ws/?session_id=abc", Endpoint(None, {"session_id": "abc"})),
        (
            f"/api/ws/{PLAYER_ID}?token=t&character_id=c",
            Endpoint(PLAYER_ID, {"token": "t", "character_id": "c"}),
        ),
        # the first value of a repeated parameter wins
        ("/v1/api/ws?token=first&token=second", Endpoint(None, {"token": "first"})),
        # percent-decoding; blank values are dropped (an empty token is no token)
        ("/v1/api/ws?session_id=a%20b%2Fc", Endpoint(None, {"session_id": "a b/c"})),
        ("/v1/api/ws?token=&session_id=", Endpoint(None, {})),
        # unknown parameters are kept but harmless
        ("/v1/api/ws?foo=bar", Endpoint(None, {"foo": "bar"})),
    ],
)
def test_route_matches_endpoints(target: str, expected: Endpoint) -> None:
    endpoint = route(target)
    assert endpoint == expected
    assert endpoint is not None
    assert endpoint.deprecated is (expected.path_player_id is not None)


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "",
        "/ws",
        "/v1/api",
        "/api",
        "/v1/api/wss",
        "/api/websocket",
        "/v2/api/ws",
        "/v1/v1/api/ws",
        "/x/api/ws",
        "/V1/API/WS",
        "/v1/api/ws//",
        "/api/ws//x",
        "/api/ws/a/b",
        f"/v1/api/ws/{PLAYER_ID}/extra",
        "/healthz",
        "/metrics?token=x",
        "v1/api/ws",
    ],
)
def test_route_refuses_other_paths(target: str) -> None:
    assert route(target) is None


# --- choose_token (section 2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "query", "expected"),
    [
        # bearer + token: the token, and "bearer" is selected back (as offered)
        (["bearer, TOKEN"], {}, TokenChoice("TOKEN", "bearer")),
        (["Bearer,TOKEN"], {}, TokenChoice("TOKEN", "Bearer")),
        (["BEARER", "TOKEN"], {}, TokenChoice("TOKEN", "BEARER")),
        (["TOKEN, bearer"], {}, TokenChoice("TOKEN", "bearer")),
        (["TOKEN", "bearer"], {}, TokenChoice("TOKEN", "bearer")),
        # one header item with commas and several items are the same thing
        (["bearer", "TOKEN"], {}, TokenChoice("TOKEN", "bearer")),
        (["bearer,TOKEN,OTHER"], {}, TokenChoice("TOKEN", "bearer")),
        (["bearer", "TOKEN", "OTHER"], {}, TokenChoice("TOKEN", "bearer")),
        (["bearer, TOKEN", "OTHER"], {}, TokenChoice("TOKEN", "bearer")),
        # the subprotocol header wins over the query
        (["bearer", "TOKEN"], {"token": "QUERY"}, TokenChoice("TOKEN", "bearer")),
        # only a token: that token, selected back
        (["TOKEN"], {}, TokenChoice("TOKEN", "TOKEN")),
        (["TOKEN"], {"token": "QUERY"}, TokenChoice("TOKEN", "TOKEN")),
        # without bearer, the last part is the token
        (["first, last"], {}, TokenChoice("last", "last")),
        (["first", "last"], {}, TokenChoice("last", "last")),
        # only bearer: the query token, bearer still selected (a browser needs one back)
        (["bearer"], {"token": "QUERY"}, TokenChoice("QUERY", "bearer")),
        (["Bearer"], {}, TokenChoice(None, "Bearer")),
        (["bearer"], {"token": ""}, TokenChoice(None, "bearer")),
        # nothing offered: the query token, no subprotocol
        ([], {"token": "QUERY"}, TokenChoice("QUERY", None)),
        ([], {}, TokenChoice(None, None)),
        ([], {"token": ""}, TokenChoice(None, None)),
        # empty parts are ignored
        (["", " , ", "bearer,, ,TOKEN"], {}, TokenChoice("TOKEN", "bearer")),
        ([" , ,TOKEN, "], {}, TokenChoice("TOKEN", "TOKEN")),
        (["", " ", ","], {"token": "QUERY"}, TokenChoice("QUERY", None)),
        ([" bearer ", "  TOKEN  "], {}, TokenChoice("TOKEN", "bearer")),
    ],
)
def test_choose_token(offered: list[str], query: dict[str, str], expected: TokenChoice) -> None:
    assert choose_token(offered, query) == expected


# --- parse_character_id --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("not-a-uuid", None),
        (PLAYER_ID[:-1], None),
        (PLAYER_ID + "0", None),
        ("Armitage", None),
        (PLAYER_ID, uuid.UUID(PLAYER_ID)),
        (PLAYER_ID.upper(), uuid.UUID(PLAYER_ID)),
        (PLAYER_ID.replace("-", ""), uuid.UUID(PLAYER_ID)),
    ],
)
def test_parse_character_id(raw: str | None, expected: uuid.UUID | None) -> None:
    assert parse_character_id(raw) == expected


def test_parsed_character_id_is_canonical() -> None:
    parsed = parse_character_id(PLAYER_ID.upper())
    assert parsed is not None and str(parsed) == PLAYER_ID


# --- Refusal (sections 2, 15) --------------------------------------------------------------------


def test_refusal_body_is_compact_json() -> None:
    refusal = Refusal(401, "missing_token", "Authentication token required")
    assert refusal.body() == (
        b'{"error":{"type":"missing_token","message":"Authentication token required"}}'
    )


def test_refusal_body_escapes_its_message() -> None:
    refusal = Refusal(401, "authentication_failed", 'bad "quote" and \u00e9')
    assert json.loads(refusal.body()) == {
        "error": {"type": "authentication_failed", "message": 'bad "quote" and \u00e9'}
    }


def test_refusal_headers_without_retry_after() -> None:
    assert handshake.MISSING_TOKEN.headers() == [(b"Content-Type", b"application/json")]


def test_refusal_headers_with_retry_after() -> None:
    refusal = Refusal(429, "rate_limited", "Too many connection attempts", retry_after_s=7)
    assert refusal.headers() == [(b"Content-Type", b"application/json"), (b"Retry-After", b"7")]


@pytest.mark.parametrize(
    ("refusal", "code", "reason", "body"),
    [
        (
            handshake.MISSING_TOKEN,
            4401,
            "Authentication token required",
            {"type": "missing_token", "message": "Authentication token required"},
        ),
        (
            handshake.NO_PLAYER,
            4401,
            "User has no player record",
            {"type": "no_player", "message": "User has no player record"},
        ),
        (
            handshake.PLAYER_MISMATCH,
            4401,
            "Player id does not match the token",
            {"type": "player_mismatch", "message": "Player id does not match the token"},
        ),
        (
            handshake.CHARACTER_NOT_FOUND,
            4404,
            "Character not found",
            {"type": "character_not_found", "message": "Character not found"},
        ),
        (
            handshake.CHARACTER_FORBIDDEN,
            4403,
            "Character does not belong to user",
            {"type": "character_forbidden", "message": "Character does not belong to user"},
        ),
        (
            handshake.ORIGIN_NOT_ALLOWED,
            4403,
            "Origin not allowed",
            {"type": "origin_not_allowed", "message": "Origin not allowed"},
        ),
        (
            handshake.DRAINING,
            4503,
            "Server is shutting down",
            {"type": "server_draining", "message": "Server is shutting down"},
        ),
        (
            handshake.NOT_FOUND_PATH,
            4404,
            "Not found",
            {"type": "not_found", "message": "Not found"},
        ),
        (
            handshake.TOO_MANY_CONNECTIONS,
            4429,
            "Too many connections",
            {"type": "too_many_connections", "message": "Too many connections"},
        ),
        (
            handshake.unauthorized("Token expired"),
            4401,
            "Token expired",
            {"type": "authentication_failed", "message": "Token expired"},
        ),
    ],
)
def test_named_refusals(refusal: Refusal, code: int, reason: str, body: dict[str, str]) -> None:
    assert refusal.close_code == code
    assert refusal.close_reason == reason
    assert json.loads(refusal.body()) == {"error": body}
    # Every 429 tells the client when to come back (section 2); nothing else does.
    assert (refusal.retry_after_s is not None) is (refusal.status == 429)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 503])
def test_close_code_is_4000_plus_status(status: int) -> None:
    assert Refusal(status, "x", "y").close_code == 4000 + status


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("short", "short"),
        ("a" * 123, "a" * 123),
        ("a" * 124, "a" * 123),
        ("a" * 500, "a" * 123),
        # 2-byte characters: 61 fit in 122 bytes, the 62nd would be split at byte 123
        ("é" * 100, "é" * 61),
        ("a" + "é" * 100, "a" + "é" * 61),  # 1 + 122 = 123 bytes exactly
        # 3-byte characters: 41 fit in exactly 123 bytes
        ("€" * 50, "€" * 41),
        ("a" + "€" * 50, "a" + "€" * 40),  # 1 + 120; the 41st would end at byte 124
        # 4-byte characters: 30 fit in 120 bytes
        ("🐙" * 40, "🐙" * 30),
        ("abc" + "🐙" * 40, "abc" + "🐙" * 30),  # 3 + 120 = 123 exactly
        ("ab" + "🐙" * 40, "ab" + "🐙" * 30),  # 2 + 120; the 31st would end at byte 126
    ],
)
def test_close_reason_truncated_to_123_bytes_on_a_character_boundary(
    message: str, expected: str
) -> None:
    reason = Refusal(401, "x", message).close_reason
    assert reason == expected
    assert len(reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES == 123
    assert message.startswith(reason)


def test_truncation_leaves_the_body_message_whole() -> None:
    message = "é" * 100
    refusal = Refusal(401, "x", message)
    assert json.loads(refusal.body())["error"]["message"] == message


# --- too_many_attempts (section 8) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (0.0, 1),  # never tell a client to retry after 0 s
        (0.2, 1),
        (0.5, 1),
        (1.0, 1),
        (9.6, 10),
        (10.0, 10),
        (59.9, 60),
        (60.0, 60),
    ],
)
def test_too_many_attempts_retry_after(retry_after: float, expected: int) -> None:
    refusal = too_many_attempts(retry_after)
    assert refusal.status == 429
    assert refusal.error_type == "rate_limited"
    assert refusal.message == "Too many connection attempts"
    assert refusal.retry_after_s == expected
    assert refusal.close_code == 4429
    assert (b"Retry-After", str(expected).encode()) in refusal.headers()


@pytest.mark.parametrize("retry_after", [1.4, 2.4, 2.5, 9.4])
def test_retry_after_is_never_earlier_than_the_real_wait(retry_after: float) -> None:
    retry_after_s = too_many_attempts(retry_after).retry_after_s
    assert retry_after_s is not None and retry_after_s >= retry_after


def test_too_many_attempts_with_an_infinite_wait_still_refuses() -> None:
    refusal = too_many_attempts(math.inf)
    assert refusal.status == 429
    assert refusal.retry_after_s is not None and refusal.retry_after_s >= 1


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("1.1.1.1", None, (), "1.1.1.1"),
        ("1.1.1.1", "9.9.9.9", (), "1.1.1.1"),  # an untrusted peer cannot name a client
        ("10.0.0.1", "9.9.9.9", ("10.0.0.1",), "9.9.9.9"),
        ("10.0.0.1", "8.8.8.8, 9.9.9.9, 10.0.0.2", ("10.0.0.1", "10.0.0.2"), "9.9.9.9"),
        ("10.0.0.1", "", ("10.0.0.1",), "10.0.0.1"),
        ("10.0.0.1", "10.0.0.1", ("10.0.0.1",), "10.0.0.1"),  # only proxies: the peer
    ],
)
def test_client_ip(peer: str, forwarded: str | None, trusted: tuple[str, ...], client: str) -> None:
    assert handshake.client_ip(peer, forwarded, trusted) == client
