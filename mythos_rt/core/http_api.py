"""The HTTP API's pure parts (PROTOCOL.md section 18): which requests it takes, its routing
table, request validation, response shapes, CORS headers and the login throttle.

The runtime (:mod:`mythos_rt.runtime.http_api`) reads the request, asks these functions what to
do, performs the I/O and writes the answer.  Nothing here touches a socket or reads a clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

import attrs

from mythos_rt.core import handshake
from mythos_rt.core.passwords import MAX_PASSWORD_CHARS
from mythos_rt.core.ratelimit import KeyedSlidingWindow

MAX_BODY_BYTES = 64 * 1024
MAX_FIELD_CHARS = MAX_PASSWORD_CHARS  # no field of these routes needs more
# MythosMUD's default profession: the client requires a number and shows the name.
PROFESSION_ID = 0
PROFESSION_NAME = "Tramp"
LOGOUT_RESULT = "Logged out successfully"

Json = object
Headers = Mapping[str, str]


# --- which requests are for the HTTP API ---------------------------------------------------------


def wants_http_api(target: str, headers: Headers) -> bool:
    """A ``/v1`` request that is not a WebSocket upgrade, and not for a WebSocket endpoint.

    Everything else goes to the WebSocket handshake exactly as before the API existed, which
    keeps its answers (404 for unknown paths, refusals for plain requests to the endpoint).
    """
    if "websocket" in headers.get("upgrade", "").lower():
        return False
    if handshake.route(target) is not None:
        return False
    path = urlsplit(target).path
    return path == "/v1" or path.startswith("/v1/")


def header_map(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; a repeated header keeps its last value."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


# --- routing -------------------------------------------------------------------------------------


@attrs.frozen
class Route:
    name: str
    method: str
    pattern: re.Pattern[str]


def _route(name: str, method: str, path: str) -> Route:
    return Route(name, method, re.compile(path))


ROUTES: tuple[Route, ...] = (
    _route("login", "POST", "/v1/auth/login"),
    _route("register", "POST", "/v1/auth/register"),
    _route("refresh", "POST", "/v1/auth/refresh"),
    _route("characters", "GET", "/v1/api/players/characters"),
    _route("select_character", "POST", "/v1/api/players/select-character"),
    _route("start_grace", "POST", "/v1/api/players/(?P<player_id>[^/]+)/start-login-grace-period"),
    _route("game_time", "GET", "/v1/game/time"),
    _route("command", "POST", "/v1/command"),
    _route("health", "GET", "/v1/monitoring/health"),
)


@attrs.frozen
class RouteMatch:
    """``name`` set: serve that route.  Otherwise ``allowed`` lists the path's methods
    (empty: no such path)."""

    name: str | None
    params: Mapping[str, str] = attrs.field(factory=dict)
    allowed: tuple[str, ...] = ()


def match(method: str, target: str) -> RouteMatch:
    path = urlsplit(target).path
    if len(path) > 1:
        path = path.removesuffix("/")
    found = [(route, m) for route in ROUTES if (m := route.pattern.fullmatch(path))]
    for route, m in found:
        if route.method == method:
            return RouteMatch(route.name, m.groupdict())
    return RouteMatch(None, allowed=tuple(route.method for route, _ in found))


# --- responses -----------------------------------------------------------------------------------


@attrs.frozen
class ApiResponse:
    status: int
    body: Json | None  # None: no body at all (204)
    headers: tuple[tuple[str, str], ...] = ()

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode()

    def with_headers(self, extra: Sequence[tuple[str, str]]) -> ApiResponse:
        return attrs.evolve(self, headers=(*self.headers, *extra))


def ok(body: Json) -> ApiResponse:
    return ApiResponse(200, body)


def error(status: int, detail: str, headers: tuple[tuple[str, str], ...] = ()) -> ApiResponse:
    return ApiResponse(status, {"detail": detail}, headers)


NOT_FOUND = error(404, "Not Found")
INVALID_CREDENTIALS = error(401, "Invalid credentials")
NOT_AUTHENTICATED = error(401, "Not authenticated", (("WWW-Authenticate", "Bearer"),))
REGISTRATION_CLOSED = error(403, "Registration is closed")
ORIGIN_NOT_ALLOWED = error(403, handshake.ORIGIN_NOT_ALLOWED.message)
CHARACTER_NOT_FOUND = error(404, handshake.CHARACTER_NOT_FOUND.message)
CHARACTER_FORBIDDEN = error(403, handshake.CHARACTER_FORBIDDEN.message)
BODY_TOO_LARGE = error(413, f"Request body exceeds {MAX_BODY_BYTES} bytes")
BAD_REQUEST = error(400, "Malformed HTTP request")
INVALID_INVITE = error(400, "Invalid or already used invite code")
NAME_TAKEN = error(400, "Username already exists")
UNSUPPORTED_COMMAND = error(400, "Unsupported command: only logout is available over HTTP")
DRAINING = error(503, handshake.DRAINING.message)
STORE_UNAVAILABLE = error(503, "The player store is unavailable; try again shortly")
HEALTHY = ok({"status": "healthy"})
UNHEALTHY = ApiResponse(503, {"status": "draining", "detail": handshake.DRAINING.message})
LOGGED_OUT = ok({"result": LOGOUT_RESULT, "session_terminated": True})


def banned(until: float | None) -> ApiResponse:
    """A banned player's right password: 403 with the handshake's text."""
    return error(403, handshake.banned_text(until))


def unauthorized(reason: str) -> ApiResponse:
    """A bearer token that failed verification; ``reason`` is the token module's safe text."""
    return error(401, reason, NOT_AUTHENTICATED.headers)


def method_not_allowed(allowed: Sequence[str]) -> ApiResponse:
    return error(405, "Method Not Allowed", (("Allow", ", ".join(allowed)),))


def too_many_logins(wait_s: float) -> ApiResponse:
    return error(
        429, "Too many login attempts", (("Retry-After", str(handshake.retry_after(wait_s))),)
    )


def invalid(detail: str) -> ApiResponse:
    return error(422, detail)


# --- CORS ----------------------------------------------------------------------------------------

PREFLIGHT_MAX_AGE_S = 600


def origin_refused(origin: str | None, allowed_origins: tuple[str, ...]) -> bool:
    """Section 2's allow-list applies here too; requests without ``Origin`` pass."""
    return bool(allowed_origins) and origin is not None and origin not in allowed_origins


def cors_headers(
    origin: str | None, allowed_origins: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """Let a browser page from ``origin`` read the answer (the web page on the ops port)."""
    if origin is None or origin_refused(origin, allowed_origins):
        return ()
    return (("Access-Control-Allow-Origin", origin), ("Vary", "Origin"))


def preflight(allowed: Sequence[str]) -> ApiResponse:
    return ApiResponse(
        204,
        None,
        (
            ("Access-Control-Allow-Methods", ", ".join((*allowed, "OPTIONS"))),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type"),
            ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S)),
        ),
    )


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# --- request bodies ------------------------------------------------------------------------------


@attrs.frozen
class Credentials:
    username: str
    password: str


@attrs.frozen
class Registration:
    username: str
    password: str
    invite_code: str


def _json_object(body: bytes) -> dict[str, object] | ApiResponse:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return invalid("Request body must be a JSON object")
    return value if isinstance(value, dict) else invalid("Request body must be a JSON object")


def string_fields(body: bytes, names: Sequence[str]) -> list[str] | ApiResponse:
    """The named string fields of a JSON object body, in order; 422 naming the first bad one.

    Other keys are ignored, as MythosMUD's server ignores them.
    """
    found = _json_object(body)
    if isinstance(found, ApiResponse):
        return found
    values: list[str] = []
    for name in names:
        value = found.get(name)
        if value is None:
            return invalid(f"{name}: field required")
        if not isinstance(value, str):
            return invalid(f"{name}: must be a string")
        if len(value) > MAX_FIELD_CHARS:
            return invalid(f"{name}: at most {MAX_FIELD_CHARS} characters")
        values.append(value)
    return values


def parse_credentials(body: bytes) -> Credentials | ApiResponse:
    values = string_fields(body, ("username", "password"))
    if isinstance(values, ApiResponse):
        return values
    username, password = values
    return Credentials(username.strip(), password)


def parse_registration(body: bytes) -> Registration | ApiResponse:
    values = string_fields(body, ("username", "password", "invite_code"))
    if isinstance(values, ApiResponse):
        return values
    username, password, code = values
    return Registration(username.strip(), password, code.strip())


def parse_one(body: bytes, name: str) -> str | ApiResponse:
    values = string_fields(body, (name,))
    return values if isinstance(values, ApiResponse) else values[0]


def is_logout(command: str) -> bool:
    return command.strip().lower() == "logout"


# --- response shapes -----------------------------------------------------------------------------


class Character(Protocol):
    """What a character record is built from (the store's PlayerRecord has these)."""

    @property
    def player_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def room_id(self) -> str: ...
    @property
    def level(self) -> int: ...
    @property
    def created_at(self) -> float: ...
    @property
    def deleted(self) -> bool: ...


def iso_utc(epoch_s: float) -> str:
    """ISO-8601 in UTC with a ``Z``, as MythosMUD's server writes its timestamps."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def character_record(character: Character) -> dict[str, Json]:
    """A character as the MythosMUD client reads it (both ``id`` and ``player_id``).

    The store keeps no last-activity time, so ``last_active`` repeats ``created_at``.
    """
    created = iso_utc(character.created_at)
    return {
        "id": character.player_id,
        "player_id": character.player_id,
        "user_id": character.user_id,
        "name": character.name,
        "profession_id": PROFESSION_ID,
        "profession_name": PROFESSION_NAME,
        "level": character.level,
        "created_at": created,
        "last_active": created,
        "room_id": character.room_id,
    }


def login_body(token: str, user_id: str, characters: Sequence[Character]) -> dict[str, Json]:
    return {
        "access_token": token,
        "token_type": "bearer",
        "user_id": user_id,
        "characters": [character_record(c) for c in characters],
    }


def selected_character(user_id: str, found: Character | None) -> ApiResponse:
    """Section 2's rules for a named character, as HTTP answers."""
    if found is None or found.deleted:
        return CHARACTER_NOT_FOUND
    if found.user_id != user_id:
        return CHARACTER_FORBIDDEN
    return ok(character_record(found))


# --- the login throttle --------------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per name and per client IP, each in a sliding window.

    Only failures are recorded.  While either window is full, every attempt for that name or
    from that IP is refused before the password is checked, right or wrong, so guessing stops
    paying; a success never clears a window (it would tell a guesser when they hit).
    """

    def __init__(
        self, per_name: int, name_window_s: float, per_ip: int, ip_window_s: float
    ) -> None:
        self._names = KeyedSlidingWindow(per_name, name_window_s)
        self._ips = KeyedSlidingWindow(per_ip, ip_window_s)

    def retry_after(self, name: str, ip: str, now: float) -> float:
        """Seconds until this name from this IP may try again (0: now)."""
        key = name.strip().lower()
        return max(self._names.retry_after(key, now), self._ips.retry_after(ip, now))

    def failed(self, name: str, ip: str, now: float) -> None:
        self._names.allow(name.strip().lower(), now)
        self._ips.allow(ip, now)
