"""Settings: one frozen object built once in ``__main__`` and handed down.

Every field is a ``serve`` flag (``--grace-s``) and an environment variable
(``MYTHOS_RT_GRACE_S``).  The field's ``metadata["help"]`` is the flag's help text and
``metadata["group"]`` groups flags in ``--help``.  Only ``__main__`` reads the environment.
"""

from __future__ import annotations

import functools
import os
import secrets
import tempfile
import typing
import uuid
from pathlib import Path
from typing import Any

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
    login_rate_name: int = _setting(5, "failed HTTP logins per player name per window", "http")
    login_rate_name_window_s: float = _setting(300.0, "window of the per-name login limit", "http")
    login_rate_ip: int = _setting(20, "failed HTTP logins per client IP per window", "http")
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
