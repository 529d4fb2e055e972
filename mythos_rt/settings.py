"""Settings: one frozen object built once in ``__main__`` and handed down.

Every field is a ``serve`` flag (``--grace-s``) and an environment variable
(``MYTHOS_RT_GRACE_S``).  The field's ``metadata["help"]`` is the flag's help text and
``metadata["group"]`` groups flags in ``--help``.  Only ``__main__`` reads the environment.
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import tempfile
import typing
import uuid
from collections.abc import Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

ENV_PREFIX = "MYTHOS_RT_"
JWT_SECRET_ENV = "MYTHOSMUD_JWT_SECRET"
JWT_SECRET_FILE = "jwt_secret"


def _setting(default: Any, help: str, group: str = "server") -> Any:
    return attrs.field(default=default, metadata={"help": help, "group": group})


def _random_instance_id() -> str:
    return uuid.uuid4().hex[:12]


@attrs.frozen
class Settings:
    # --- server ---
    host: str = _setting("127.0.0.1", "address the WebSocket listener binds")
    port: int = _setting(54768, "WebSocket port (0 = pick a free one)")
    ops_port: int = _setting(54769, "ops HTTP port: health, metrics, web client (0 = off)")
    telnet_port: int = _setting(
        0, "telnet port for MUD clients: Mudlet, TinTin++, telnet (0 = off; docs/TELNET.md)"
    )
    data_dir: Path = _setting(Path(".mythos_rt"), "data directory (SQLite store, JWT secret)")
    database_url: str | None = _setting(
        None,
        "postgresql://user@host/db to share a PostgreSQL store (default: SQLite in the data"
        " directory)",
        "store",
    )
    store_ack_timeout_s: float = _setting(
        5.0,
        "while the store fails, a confirmation waits this long before the player is told"
        " nothing was saved",
        "store",
    )
    world: Path | None = _setting(None, "world JSON file (default: the bundled world)")
    nats_url: str | None = _setting(None, "NATS URL for multi-instance play", "nats")
    instance_id: str = attrs.field(
        factory=_random_instance_id,
        metadata={"help": "this instance's id (default: random)", "group": "server"},
    )
    log_level: str = _setting("INFO", "log level (DEBUG, INFO, WARNING, ERROR)")
    public_url: str | None = _setting(
        None,
        "the game port's public http(s) URL behind a proxy, e.g. https://play.example.org; the"
        " web page then calls that (default: the game port of the page's host, or the page's"
        " own origin when it is not on the ops port)",
    )
    log_format: str = _setting(
        "text", "log line format: text, or json (one JSON object per line, structured fields)"
    )
    # --- NATS bridge (section 16; docs/NATS.md) ---
    nats_connect_timeout_s: float = _setting(
        5.0, "at start, NATS must answer within this or serve exits 2", "nats"
    )
    nats_reconnect_wait_s: float = _setting(
        1.0, "pause between reconnection attempts (they go on forever)", "nats"
    )
    nats_inbound_max: int = _setting(
        10000, "messages from NATS waiting for the hub; more are dropped and counted", "nats"
    )
    nats_outbound_max: int = _setting(
        10000, "publishes waiting for the bridge; more are dropped and counted", "nats"
    )
    nats_pending_bytes: int = _setting(
        8 << 20,
        "publishes kept while NATS is unreachable, bytes; more are dropped and counted",
        "nats",
    )
    nats_drain_timeout_s: float = _setting(
        2.0, "on shutdown, the NATS client drains within this", "nats"
    )
    nats_dead_letter_max_bytes: int = _setting(
        4 << 20,
        "size of the file keeping refused NATS messages (one older file is kept too)",
        "nats",
    )
    # --- handshake and auth (section 2, 3) ---
    trusted_proxies: tuple[str, ...] = _setting(
        (), "comma-separated proxy IPs whose X-Forwarded-For names the client", "auth"
    )
    allowed_origins: tuple[str, ...] = _setting(
        (), "comma-separated exact Origins; empty = any", "auth"
    )
    jwt_algorithms: tuple[str, ...] = _setting(("HS256",), "accepted JWT algorithms (HMAC)", "auth")
    jwt_audience: str = _setting("fastapi-users:auth", "required JWT audience", "auth")
    jwt_leeway_s: float = _setting(
        10.0, "clock leeway for nbf and iat; none for exp (valid until exp exactly)", "auth"
    )
    max_token_bytes: int = _setting(8192, "tokens longer than this are refused", "auth")
    handshake_timeout_s: float = _setting(10.0, "time a client has to finish the upgrade", "auth")
    max_connections: int = _setting(
        10000,
        "TCP connections on the game port at once (handshaking or playing); more are closed"
        " on accept, before anything is parsed",
        "auth",
    )
    max_handshakes_per_ip: int = _setting(
        32,
        "connections from one address still in their handshake; more are closed on accept"
        " (trusted proxies are bounded by max_connections only)",
        "auth",
    )
    telnet_login_timeout_s: float = _setting(
        60.0, "time a telnet client has to type its name and password", "auth"
    )
    max_sockets_per_player: int = _setting(5, "sockets one player may hold", "auth")
    max_session_id_chars: int = _setting(128, "longest session_id", "auth")
    retired_session_s: float = _setting(
        600.0, "a superseded, quit, logged-out or rested session is refused 4409 this long", "auth"
    )
    connect_rate_player: int = _setting(5, "connection attempts per player per window", "auth")
    connect_rate_player_window_s: float = _setting(60.0, "window of the per-player limit", "auth")
    connect_rate_ip: int = _setting(30, "connection attempts per client IP per window", "auth")
    connect_rate_ip_window_s: float = _setting(10.0, "window of the per-IP limit", "auth")
    # --- HTTP API (section 18) ---
    login_rate_name: int = _setting(
        5, "failed logins (HTTP and telnet) per player name per window", "http"
    )
    login_rate_name_window_s: float = _setting(300.0, "window of the per-name login limit", "http")
    login_rate_ip: int = _setting(
        20, "failed logins (HTTP and telnet) per client IP per window", "http"
    )
    login_rate_ip_window_s: float = _setting(300.0, "window of the per-IP login limit", "http")
    login_token_ttl_s: float = _setting(3600.0, "lifetime of the tokens HTTP login issues", "http")
    registration_open: bool = _setting(
        False, "POST /v1/auth/register creates players (each needs an invite code)", "http"
    )
    # --- frames (section 6, 7, 8) ---
    require_csrf: bool = _setting(
        True, "frames must carry csrfToken equal to the socket's token", "frames"
    )
    max_frame_bytes: int = _setting(10240, "largest accepted frame (UTF-8 bytes)", "frames")
    max_depth: int = _setting(10, "deepest accepted JSON nesting", "frames")
    max_string_chars: int = _setting(10000, "longest accepted string value or key", "frames")
    transport_max_bytes: int = _setting(
        65536, "WebSocket message cap; larger closes 1009", "frames"
    )
    frame_rate_limit: int = _setting(100, "frames per connection per window", "frames")
    frame_rate_window_s: float = _setting(60.0, "window of the frame limit", "frames")
    abuse_close_after: int = _setting(1000, "refused frames in a row before close 1008", "frames")
    command_rate_limit: int = _setting(10, "commands per player per window", "frames")
    command_rate_window_s: float = _setting(1.0, "window of the command limit", "frames")
    max_command_chars: int = _setting(1000, "longest command line", "frames")
    # --- chat limits per player per channel per minute (section 8) ---
    chat_limit_say: int = _setting(15, "say messages per minute", "chat")
    chat_limit_local: int = _setting(20, "local messages per minute", "chat")
    chat_limit_global: int = _setting(10, "global messages per minute", "chat")
    chat_limit_party: int = _setting(30, "party messages per minute", "chat")
    chat_limit_whisper: int = _setting(5, "whispers per minute", "chat")
    chat_limit_emote: int = _setting(15, "emotes per minute", "chat")
    chat_limit_pose: int = _setting(15, "poses per minute", "chat")
    chat_window_s: float = _setting(60.0, "window of the chat limits", "chat")
    # --- presence and liveness (section 5, 11, 12, 13) ---
    game_tick_s: float = _setting(1.0, "seconds between game_tick events (0 = off)", "presence")
    grace_s: float = _setting(30.0, "disconnect grace after the last socket drops", "presence")
    ward_s: float = _setting(10.0, "login ward on every new presence", "presence")
    ping_interval_s: float = _setting(20.0, "seconds between server pings", "presence")
    ping_timeout_s: float = _setting(20.0, "a pong must arrive within this", "presence")
    idle_timeout_s: float = _setting(300.0, "no client frame for this long closes 4001", "presence")
    token_warning_s: float = _setting(
        60.0, "token_expiring is sent this long before exp", "presence"
    )
    outbox_max_bytes: int = _setting(
        1 << 20, "per-socket outbound bound; overflow closes 1013", "presence"
    )
    replay_max_events: int = _setting(1000, "per-player replay buffer, events", "presence")
    replay_max_bytes: int = _setting(1 << 20, "per-player replay buffer, bytes", "presence")
    request_ttl_s: float = _setting(
        60.0, "follow requests and party invites expire after", "presence"
    )
    rest_s: int = _setting(10, "the rest command's countdown before disconnecting", "presence")
    occupants_interval_s: float = _setting(
        0.25,
        "a room's occupant list goes out at most once per this interval (0 = once per"
        " scheduling round); a storm of arrivals then costs O(N) lists, not O(N²)",
        "presence",
    )
    # --- several instances (section 16) ---
    cluster_heartbeat_s: float = _setting(
        2.0, "with NATS: seconds between this instance's heartbeats", "cluster"
    )
    cluster_dead_after_s: float = _setting(
        10.0,
        "with NATS: an instance silent this long is lost; its players turn linkdead",
        "cluster",
    )
    # --- shutdown (section 14) ---
    drain_timeout_s: float = _setting(10.0, "shutdown must finish within this", "shutdown")
    close_timeout_s: float = _setting(2.0, "bound on one socket's closing handshake", "shutdown")

    @property
    def store_path(self) -> Path:
        return self.data_dir / "mythos_rt.sqlite3"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / JWT_SECRET_FILE


def public_url_problem(url: str) -> str | None:
    """Why PUBLIC_URL cannot be used by the web page, or None when it can."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"PUBLIC_URL must be an http:// or https:// URL with a host, not {url!r}"
    if parts.query or parts.fragment:
        return f"PUBLIC_URL must not have a query or a fragment: {url!r}"
    return None


# --- ranges: every number is checked at start (a bad one is one line naming it, exit 2) -------


@attrs.frozen
class Range:
    """The values a numeric setting may take: finite, at least ``low`` (more than ``low`` when
    ``low_excluded``), at most ``high``.  ``describe`` is what the error and the docs show."""

    low: float
    high: float | None = None
    low_excluded: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above_low = value > self.low if self.low_excluded else value >= self.low
        return above_low and (self.high is None or value <= self.high)

    def describe(self) -> str:
        if self.high is not None:
            return f"{self.low:g} to {self.high:g}"
        return f"{'>' if self.low_excluded else '>='} {self.low:g}"


PORT = Range(0, 65535)
POSITIVE = Range(0, low_excluded=True)  # durations and windows where 0 makes no sense
AT_LEAST_ONE = Range(1)  # counts and sizes where 0 would refuse everything
ZERO_OR_MORE = Range(0)  # 0 is meaningful ("off", "none", "at once")

# One row per numeric setting.  A numeric setting missing here gets DEFAULT_RANGE.
RANGES: dict[str, Range] = {
    "port": PORT,
    "ops_port": PORT,
    "telnet_port": PORT,
    "telnet_login_timeout_s": POSITIVE,
    "max_connections": AT_LEAST_ONE,
    "max_handshakes_per_ip": AT_LEAST_ONE,
    "store_ack_timeout_s": POSITIVE,
    "nats_connect_timeout_s": POSITIVE,
    "nats_reconnect_wait_s": POSITIVE,
    "nats_inbound_max": AT_LEAST_ONE,
    "nats_outbound_max": AT_LEAST_ONE,
    "nats_pending_bytes": ZERO_OR_MORE,
    "nats_drain_timeout_s": POSITIVE,
    "nats_dead_letter_max_bytes": ZERO_OR_MORE,
    "jwt_leeway_s": ZERO_OR_MORE,
    "max_token_bytes": AT_LEAST_ONE,
    "handshake_timeout_s": POSITIVE,
    "max_sockets_per_player": AT_LEAST_ONE,
    "max_session_id_chars": AT_LEAST_ONE,
    "retired_session_s": ZERO_OR_MORE,
    "connect_rate_player": AT_LEAST_ONE,
    "connect_rate_player_window_s": POSITIVE,
    "connect_rate_ip": AT_LEAST_ONE,
    "connect_rate_ip_window_s": POSITIVE,
    "login_rate_name": AT_LEAST_ONE,
    "login_rate_name_window_s": POSITIVE,
    "login_rate_ip": AT_LEAST_ONE,
    "login_rate_ip_window_s": POSITIVE,
    "login_token_ttl_s": POSITIVE,
    "max_frame_bytes": AT_LEAST_ONE,
    "max_depth": AT_LEAST_ONE,
    "max_string_chars": AT_LEAST_ONE,
    "transport_max_bytes": AT_LEAST_ONE,
    "frame_rate_limit": AT_LEAST_ONE,
    "frame_rate_window_s": POSITIVE,
    "abuse_close_after": AT_LEAST_ONE,
    "command_rate_limit": AT_LEAST_ONE,
    "command_rate_window_s": POSITIVE,
    "max_command_chars": AT_LEAST_ONE,
    # A chat limit of 0 closes that channel; that is a choice, not a mistake.
    "chat_limit_say": ZERO_OR_MORE,
    "chat_limit_local": ZERO_OR_MORE,
    "chat_limit_global": ZERO_OR_MORE,
    "chat_limit_party": ZERO_OR_MORE,
    "chat_limit_whisper": ZERO_OR_MORE,
    "chat_limit_emote": ZERO_OR_MORE,
    "chat_limit_pose": ZERO_OR_MORE,
    "chat_window_s": POSITIVE,
    "game_tick_s": ZERO_OR_MORE,
    "grace_s": ZERO_OR_MORE,
    "ward_s": ZERO_OR_MORE,
    "ping_interval_s": POSITIVE,
    "ping_timeout_s": POSITIVE,
    "idle_timeout_s": POSITIVE,
    "token_warning_s": ZERO_OR_MORE,
    "outbox_max_bytes": AT_LEAST_ONE,
    "replay_max_events": ZERO_OR_MORE,
    "replay_max_bytes": ZERO_OR_MORE,
    "request_ttl_s": POSITIVE,
    "rest_s": ZERO_OR_MORE,
    "occupants_interval_s": ZERO_OR_MORE,
    "cluster_heartbeat_s": POSITIVE,
    "cluster_dead_after_s": POSITIVE,
    "drain_timeout_s": POSITIVE,
    "close_timeout_s": POSITIVE,
}
DEFAULT_RANGE = ZERO_OR_MORE


def env_var(name: str) -> str:
    """The environment variable of the setting ``name``: ``grace_s`` -> ``MYTHOS_RT_GRACE_S``."""
    return ENV_PREFIX + name.upper()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def range_of(name: str) -> Range | None:
    """The range of a numeric setting; None for the others (text, paths, lists, booleans)."""
    if setting_types()[name] not in (int, float):
        return None
    return RANGES.get(name, DEFAULT_RANGE)


def range_problem(settings: Settings, only: Collection[str] | None = None) -> str | None:
    """The first setting out of its range, as one line naming its flag and variable; or None.

    ``only`` restricts the check to the settings a command reads.
    """
    for field in setting_fields():
        allowed = range_of(field.name)
        if allowed is None or (only is not None and field.name not in only):
            continue
        value = getattr(settings, field.name)
        if not allowed.admits(value):
            finite = "a finite number " if isinstance(value, float) else ""
            return (
                f"setting {flag(field.name)} ({env_var(field.name)}) must be"
                f" {finite}{allowed.describe()}, not {value!r}"
            )
    return None


def setting_fields() -> tuple[attrs.Attribute[Any], ...]:
    return attrs.fields(Settings)


@functools.cache
def setting_types() -> dict[str, Any]:
    """Each field's type.  This module postpones annotations, so attrs holds them as strings."""
    return typing.get_type_hints(Settings)


class SecretFileError(Exception):
    """The JWT secret file could not be read or created; ``str(exc)`` names the path."""


def load_or_create_secret(data_dir: Path, from_env: str | None) -> tuple[str, bool]:
    """Return ``(secret, created)``: the env secret, else the data directory's, else a new one.

    Raises :class:`SecretFileError` (one line naming the path) when the file cannot be read or
    the data directory does not take the new file.
    """
    if from_env:
        return from_env, False
    path = data_dir / JWT_SECRET_FILE
    try:
        if path.exists():
            return path.read_text(encoding="utf-8").strip(), False
    except OSError as exc:
        raise SecretFileError(f"{path}: cannot read the JWT secret: {_reason(exc)}") from exc
    try:
        return _create_secret(data_dir, path)
    except OSError as exc:
        raise SecretFileError(
            f"{data_dir}: cannot create the JWT secret in the data directory: {_reason(exc)}"
            f" (make it writable, or set {JWT_SECRET_ENV})"
        ) from exc


def _create_secret(data_dir: Path, path: Path) -> tuple[str, bool]:
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Written in full under a private name, then linked into place: link() fails if the file
    # exists, so a server and a CLI starting together agree on one secret, never a half one.
    fd, temp_name = tempfile.mkstemp(dir=data_dir, prefix=".jwt_secret.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(secret + "\n")
        os.link(temp_name, path)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip(), False
    finally:
        os.unlink(temp_name)
    return secret, True


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
