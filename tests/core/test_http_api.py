"""The HTTP API's pure parts: which requests it takes, routing, validation, shapes, throttle."""

from __future__ import annotations

import json

import attrs
import pytest

from mythos_rt.core import http_api as api
from mythos_rt.core.mythos_clock import game_time_payload

UPGRADE = {"upgrade": "websocket", "connection": "Upgrade"}


@pytest.mark.parametrize(
    ("target", "headers", "wanted"),
    [
        ("/v1/auth/login", {}, True),
        ("/v1/api/players/characters?x=1", {}, True),
        ("/v1/nope", {}, True),
        ("/v1", {}, True),
        ("/v1/auth/login", UPGRADE, False),  # an upgrade is always the WebSocket's
        ("/v1/api/ws", {}, False),  # the WebSocket endpoints keep their own answers
        ("/api/ws", {}, False),
        ("/v1/api/ws/abc", {}, False),
        ("/", {}, False),
        ("/v10/auth/login", {}, False),
        ("/healthz", {}, False),
    ],
)
def test_wants_http_api(target: str, headers: dict[str, str], wanted: bool) -> None:
    assert api.wants_http_api(target, headers) is wanted


@pytest.mark.parametrize(
    ("method", "target", "name", "params", "allowed"),
    [
        ("POST", "/v1/auth/login", "login", {}, ()),
        ("POST", "/v1/auth/login/", "login", {}, ()),
        ("POST", "/v1/auth/register", "register", {}, ()),
        ("GET", "/v1/api/players/characters", "characters", {}, ()),
        ("POST", "/v1/api/players/select-character", "select_character", {}, ()),
        (
            "POST",
            "/v1/api/players/abc-123/start-login-grace-period",
            "start_grace",
            {"player_id": "abc-123"},
            (),
        ),
        ("GET", "/v1/game/time?tz=utc", "game_time", {}, ()),
        ("POST", "/v1/command", "command", {}, ()),
        ("GET", "/v1/monitoring/health", "health", {}, ()),
        ("GET", "/v1/auth/login", None, {}, ("POST",)),
        ("OPTIONS", "/v1/command", None, {}, ("POST",)),
        ("GET", "/v1/nope", None, {}, ()),
        ("GET", "/v1/api/players/a/b/start-login-grace-period", None, {}, ()),
    ],
)
def test_match(
    method: str, target: str, name: str | None, params: dict[str, str], allowed: tuple[str, ...]
) -> None:
    assert api.match(method, target) == api.RouteMatch(name, params, allowed)


def test_error_bodies_are_detail_objects() -> None:
    assert json.loads(api.NOT_FOUND.encoded_body()) == {"detail": "Not Found"}
    assert json.loads(api.INVALID_CREDENTIALS.encoded_body()) == {"detail": "Invalid credentials"}
    assert api.preflight(("POST",)).encoded_body() == b""


@pytest.mark.parametrize(
    ("wait_s", "header"), [(0.2, "1"), (1.0, "1"), (299.5, "300"), (float("inf"), "3600")]
)
def test_too_many_logins_rounds_retry_after_up(wait_s: float, header: str) -> None:
    response = api.too_many_logins(wait_s)
    assert response.status == 429
    assert json.loads(response.encoded_body()) == {"detail": "Too many login attempts"}
    assert ("Retry-After", header) in response.headers


@pytest.mark.parametrize(
    ("origin", "allowed", "headers", "refused"),
    [
        (None, (), (), False),
        ("http://a", (), (("Access-Control-Allow-Origin", "http://a"), ("Vary", "Origin")), False),
        (
            "http://a",
            ("http://a",),
            (("Access-Control-Allow-Origin", "http://a"), ("Vary", "Origin")),
            False,
        ),
        ("http://b", ("http://a",), (), True),
        (None, ("http://a",), (), False),
    ],
)
def test_cors(
    origin: str | None,
    allowed: tuple[str, ...],
    headers: tuple[tuple[str, str], ...],
    refused: bool,
) -> None:
    assert api.cors_headers(origin, allowed) == headers
    assert api.origin_refused(origin, allowed) is refused


def test_preflight_names_the_methods_and_headers() -> None:
    headers = dict(api.preflight(("POST",)).headers)
    assert headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert api.preflight(("POST",)).status == 204


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer   abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
    ],
)
def test_bearer_token(authorization: str, token: str | None) -> None:
    assert api.bearer_token({"authorization": authorization}) == token


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "Request body must be a JSON object"),
        (b"not json", "Request body must be a JSON object"),
        (b"\xff\xfe", "Request body must be a JSON object"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'{"password": "x"}', "username: field required"),
        (b'{"username": 5, "password": "x"}', "username: must be a string"),
        (b'{"username": "Carter", "password": null}', "password: field required"),
        (b'{"username": "Carter", "password": ["x"]}', "password: must be a string"),
        (
            json.dumps({"username": "Carter", "password": "x" * 1025}).encode(),
            "password: at most 1024 characters",
        ),
    ],
)
def test_parse_credentials_refuses_with_422(body: bytes, detail: str) -> None:
    assert api.parse_credentials(body) == api.invalid(detail)


def test_parse_credentials_trims_the_name_and_ignores_other_keys() -> None:
    body = b'{"username": " Carter ", "password": " p w ", "remember": true}'
    assert api.parse_credentials(body) == api.Credentials("Carter", " p w ")


def test_parse_registration() -> None:
    body = b'{"username": "Lavinia", "password": "whateley1", "invite_code": " abc "}'
    assert api.parse_registration(body) == api.Registration("Lavinia", "whateley1", "abc")
    assert api.parse_registration(b'{"username": "L", "password": "p"}') == api.invalid(
        "invite_code: field required"
    )


@pytest.mark.parametrize(
    ("command", "logout"), [("logout", True), (" LOGOUT ", True), ("quit", False), ("", False)]
)
def test_is_logout(command: str, logout: bool) -> None:
    assert api.is_logout(command) is logout


@attrs.frozen
class FakeCharacter:
    player_id: str = "p1"
    user_id: str = "u1"
    name: str = "Carter"
    room_id: str = "earth_arkhamcity_campus_quad"
    level: int = 3
    created_at: float = 0.25
    deleted: bool = False


def test_character_record_has_the_fields_the_client_checks() -> None:
    record = api.character_record(FakeCharacter())
    assert record == {
        "id": "p1",
        "player_id": "p1",
        "user_id": "u1",
        "name": "Carter",
        "profession_id": 0,
        "profession_name": "Tramp",
        "level": 3,
        "created_at": "1970-01-01T00:00:00.250000Z",
        "last_active": "1970-01-01T00:00:00.250000Z",
        "room_id": "earth_arkhamcity_campus_quad",
    }


def test_login_body() -> None:
    body = api.login_body("tok", "u1", [FakeCharacter()])
    assert body["access_token"] == "tok"
    assert body["token_type"] == "bearer"
    assert body["user_id"] == "u1"
    assert body["characters"] == [api.character_record(FakeCharacter())]


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, api.CHARACTER_NOT_FOUND),
        (FakeCharacter(deleted=True), api.CHARACTER_NOT_FOUND),
        (FakeCharacter(user_id="someone else"), api.CHARACTER_FORBIDDEN),
        (FakeCharacter(), api.ok(api.character_record(FakeCharacter()))),
    ],
)
def test_selected_character(found: FakeCharacter | None, expected: api.ApiResponse) -> None:
    assert api.selected_character("u1", found) == expected


def test_section_2_messages_are_the_details() -> None:
    assert json.loads(api.CHARACTER_NOT_FOUND.encoded_body()) == {"detail": "Character not found"}
    assert json.loads(api.CHARACTER_FORBIDDEN.encoded_body()) == {
        "detail": "Character does not belong to user"
    }


def test_game_time_payload_has_the_client_types() -> None:
    payload = game_time_payload(0.0)
    assert payload["server_timestamp"] == "1970-01-01T00:00:00Z"
    for key in ("mythos_datetime", "mythos_clock", "month_name", "day_name", "season", "daypart"):
        assert isinstance(payload[key], str)
    for key in ("day_of_month", "week_of_month"):
        assert isinstance(payload[key], int)
    for key in ("is_daytime", "is_witching_hour"):
        assert isinstance(payload[key], bool)
    for key in ("active_holidays", "upcoming_holidays"):
        assert isinstance(payload[key], list)


# --- the login throttle: failures only, per name and per IP -----------------------------------


def test_throttle_counts_failures_per_name_in_any_case() -> None:
    throttle = api.LoginThrottle(per_name=2, name_window_s=300, per_ip=10, ip_window_s=300)
    throttle.failed("Carter", "1.1.1.1", now=0)
    assert throttle.retry_after("carter", "2.2.2.2", now=1) == 0
    throttle.failed("CARTER", "2.2.2.2", now=1)
    assert throttle.retry_after("Carter", "3.3.3.3", now=2) == 298  # the name is blocked anywhere
    assert throttle.retry_after("Pickman", "1.1.1.1", now=2) == 0
    assert throttle.retry_after("Carter", "3.3.3.3", now=299.5) == 0.5
    assert throttle.retry_after("Carter", "3.3.3.3", now=300) == 0  # the first failure left


def test_throttle_counts_failures_per_ip() -> None:
    throttle = api.LoginThrottle(per_name=100, name_window_s=300, per_ip=3, ip_window_s=60)
    for i, name in enumerate(("a", "b", "c")):
        assert throttle.retry_after(name, "1.1.1.1", now=i) == 0
        throttle.failed(name, "1.1.1.1", now=i)
    assert throttle.retry_after("d", "1.1.1.1", now=10) == 50
    assert throttle.retry_after("d", "9.9.9.9", now=10) == 0
