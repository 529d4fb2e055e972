"""Pure handshake decisions: which endpoint, which token, and how a refusal looks.

PROTOCOL.md sections 1–3.  The runtime feeds in the request line, headers and subprotocols and
acts on the answers; nothing here touches a socket.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

import attrs

_ENDPOINT = re.compile(r"^/(?:v1/)?api/ws(?:/(?P<player_id>[^/]+))?/?$")
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes with the code


@attrs.frozen
class Endpoint:
    """A recognised WebSocket endpoint with its query parameters (first value of each)."""

    path_player_id: str | None
    query: Mapping[str, str]

    @property
    def deprecated(self) -> bool:
        return self.path_player_id is not None


def route(target: str) -> Endpoint | None:
    """Match the request target against the endpoints of section 1; None means 404."""
    parts = urlsplit(target)
    match = _ENDPOINT.match(parts.path)
    if match is None:
        return None
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    return Endpoint(path_player_id=match["player_id"], query=query)


@attrs.frozen
class TokenChoice:
    token: str | None
    subprotocol: str | None  # what the server must select in its 101 response


def choose_token(offered: Sequence[str], query: Mapping[str, str]) -> TokenChoice:
    """Section 2 token carriers: the subprotocol header first, then the ``token`` query parameter.

    A browser that offered subprotocols needs one selected back, or it fails the connection; so a
    subprotocol is selected even when the token itself comes from the query.
    """
    parts = [part.strip() for item in offered for part in item.split(",")]
    parts = [part for part in parts if part]
    bearer = next((part for part in parts if part.lower() == "bearer"), None)
    if bearer is not None:
        token = next((part for part in parts if part.lower() != "bearer"), None)
        return TokenChoice(token or query.get("token") or None, bearer)
    if parts:
        return TokenChoice(parts[-1], parts[-1])
    return TokenChoice(query.get("token") or None, None)


def forwarded_client(x_forwarded_for: str, trusted_proxies: tuple[str, ...]) -> str | None:
    """The client behind trusted proxies: the right-most X-Forwarded-For hop not a proxy.

    Hops to the left of that one were written by the client itself and cannot be trusted.
    """
    hops = [hop.strip() for hop in x_forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return None


def client_ip(peer: str, x_forwarded_for: str | None, trusted_proxies: tuple[str, ...]) -> str:
    """The client's address: the peer, or, behind a trusted proxy, the client it names."""
    if peer not in trusted_proxies or not x_forwarded_for:
        return peer
    return forwarded_client(x_forwarded_for, trusted_proxies) or peer


def parse_character_id(raw: str | None) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


@attrs.frozen
class Refusal:
    """A handshake refusal: an HTTP status with a JSON body, or 4000+status with ``Origin``."""

    status: int
    error_type: str
    message: str
    retry_after_s: int | None = None

    @property
    def close_code(self) -> int:
        return 4000 + self.status

    @property
    def close_reason(self) -> str:
        return truncate_utf8(self.message, MAX_CLOSE_REASON_BYTES)

    def body(self) -> bytes:
        error = {"type": self.error_type, "message": self.message}
        return json.dumps({"error": error}, separators=(",", ":")).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"Content-Type", b"application/json")]
        if self.retry_after_s is not None:
            headers.append((b"Retry-After", str(self.retry_after_s).encode()))
        return headers


def truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


# The refusals of sections 2 and 3, named once.
def unauthorized(message: str, error_type: str = "authentication_failed") -> Refusal:
    return Refusal(401, error_type, message)


NOT_FOUND_PATH = Refusal(404, "not_found", "Not found")
MISSING_TOKEN = Refusal(401, "missing_token", "Authentication token required")
NO_PLAYER = Refusal(401, "no_player", "User has no player record")
PLAYER_MISMATCH = Refusal(401, "player_mismatch", "Player id does not match the token")
CHARACTER_NOT_FOUND = Refusal(404, "character_not_found", "Character not found")
CHARACTER_FORBIDDEN = Refusal(403, "character_forbidden", "Character does not belong to user")
ORIGIN_NOT_ALLOWED = Refusal(403, "origin_not_allowed", "Origin not allowed")
DRAINING = Refusal(503, "server_draining", "Server is shutting down")
BAD_SESSION_ID = Refusal(400, "invalid_session_id", "session_id is too long")
# v1.1 section 3: a superseded, quit, logged-out or rested session; not a rate-limited attempt.
SESSION_ENDED = Refusal(409, "session_ended", "Session ended")
# Section 2: also when the token makes the request head too large to parse.
TOKEN_TOO_LARGE = unauthorized("Token too large")
HEAD_TOO_LARGE = Refusal(431, "headers_too_large", "Request headers too large")


def banned(until: float | None) -> Refusal:
    """A banned player (issue 10): 403 / 4403, saying until when (UTC) if the ban ends."""
    return Refusal(403, "player_banned", banned_text(until))


def banned_text(until: float | None) -> str:
    if until is None:
        return "Player is banned"
    when = datetime.datetime.fromtimestamp(until, datetime.UTC)
    return f"Player is banned until {when.strftime('%Y-%m-%d %H:%M')} UTC"


MAX_RETRY_AFTER_S = 3600


def too_many_attempts(retry_after_s: float) -> Refusal:
    return Refusal(429, "rate_limited", "Too many connection attempts", retry_after(retry_after_s))


def retry_after(wait_s: float) -> int:
    """Retry-After rounds up, so a client that waits exactly that long gets in."""
    wait_s = min(wait_s, MAX_RETRY_AFTER_S)  # a limit of 0 means "never": say an hour
    return max(1, math.ceil(wait_s))


# Retry-After: a socket of the player must close first; a few seconds is a polite guess.
TOO_MANY_CONNECTIONS = Refusal(429, "too_many_connections", "Too many connections", 5)
