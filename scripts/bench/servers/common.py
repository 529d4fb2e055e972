"""What the three benchmark-only baselines share: the JWT check, rooms, and the frames they send.

All of it is pure (no I/O), so the servers differ only in how they move bytes, and the test
``tests/test_bench_baselines.py`` covers the behaviour once for all three.

A baseline does what mythos_rt does on the measured paths, and no more:

- handshake: the token (query ``token``) is checked like mythos_rt checks it (HS256 with the
  secret in ``MYTHOSMUD_JWT_SECRET``, audience ``fastapi-users:auth``, ``sub``/``exp``/``aud``
  required); its ``sub`` is the player's name (a baseline has no database).  A bad token is refused
  401 before the upgrade.  The room comes from the query (``room``), standing in for the database;
  default: the start room;
- on connect: the newcomer gets game_state, room_update, room_occupants, welcome (the room's
  list, as mythos_rt sends it); the rest of the room gets player_entered_game (and
  player_left_game on the way out).  Unlike mythos_rt, the baselines do not send the whole
  occupant list to the whole room on every arrival: that is O(N) frames of O(N) bytes per
  arrival, O(N^3) bytes for a storm of N into one room (about 5 GB for 1,000, tens of seconds
  for every server and for the client), which is what issue 12 asks mythos_rt to coalesce away;
- ``say``: a command_response to the speaker and one chat_message to the rest of the room, encoded
  once for all recipients; ``ping`` (bare or wrapped): pong; anything else: a command_response.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

import jwt

SECRET_ENV = "MYTHOSMUD_JWT_SECRET"
AUDIENCE = "fastapi-users:auth"
START_ROOM = "earth_arkhamcity_campus_quad"
WS_PATHS = ("/v1/api/ws", "/api/ws")

Conn = TypeVar("Conn")


def player_from_token(token: str, secret: str) -> str | None:
    """The player name (``sub``) of a valid token, or None; the same claims as mythos_rt."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "aud"]},
        )
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) and sub else None


@dataclass(frozen=True)
class Admission:
    name: str
    room: str


def admit(path: str, secret: str) -> Admission | None:
    """Who may connect on this request target (path + query), and into which room; None: 401."""
    parts = urlsplit(path)
    if parts.path not in WS_PATHS:
        return None
    query = parse_qs(parts.query)
    name = player_from_token(query.get("token", [""])[0], secret)
    if name is None:
        return None
    return Admission(name, query.get("room", [START_ROOM])[0])


@dataclass
class Rooms(Generic[Conn]):
    """room -> {connection: player name}; the one owner of who is where."""

    members: dict[str, dict[Conn, str]] = field(default_factory=dict)

    def join(self, room: str, conn: Conn, name: str) -> None:
        self.members.setdefault(room, {})[conn] = name

    def leave(self, room: str, conn: Conn) -> None:
        self.members.get(room, {}).pop(conn, None)

    def others(self, room: str, conn: Conn) -> list[Conn]:
        return [other for other in self.members.get(room, {}) if other is not conn]

    def names(self, room: str) -> list[str]:
        return sorted(self.members.get(room, {}).values())


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Encoder:
    """mythos_rt's event envelope, one sequence counter per server (wall clock in µs at start)."""

    def __init__(self) -> None:
        self.sequence = time.time_ns() // 1000

    def event(
        self, event_type: str, data: dict[str, object], room_id: str = "", player_id: str = ""
    ) -> str:
        self.sequence += 1
        envelope: dict[str, object] = {
            "event_type": event_type,
            "timestamp": utc_now(),
            "sequence_number": self.sequence,
            "data": data,
        }
        if room_id:
            envelope["room_id"] = room_id
        if player_id:
            envelope["player_id"] = player_id
        return json.dumps(envelope, separators=(",", ":"))


def _room_info(room: str, names: list[str]) -> dict[str, object]:
    return {"id": room, "name": room, "description": "A room.", "exits": {}, "players": names}


def _occupants(names: list[str]) -> dict[str, object]:
    return {"players": names, "npcs": [], "occupants": names, "count": len(names)}


def connect_burst(enc: Encoder, name: str, room: str, names: list[str]) -> list[str]:
    """What the newcomer gets, in mythos_rt's order (``names``: the room, newcomer included)."""
    player = {"id": name, "name": name, "level": 1, "room_id": room, "is_admin": False}
    state = {"player": player, "room": _room_info(room, names), "occupants": names}
    update = {"room": _room_info(room, names), "entities": [], "occupants": names}
    welcome = {"message": "Connected to MythosMUD", "resumed": False}
    return [
        enc.event("game_state", state, room, name),
        enc.event("room_update", update, room),
        enc.event("room_occupants", _occupants(names), room),
        enc.event("welcome", welcome, player_id=name),
    ]


def room_notice(enc: Encoder, kind: str, name: str, room: str) -> str:
    """What the rest of the room gets when ``name`` arrives or leaves (``kind``)."""
    return enc.event(kind, {"player_id": name, "player_name": name}, room, name)


@dataclass(frozen=True)
class Outcome:
    """The frames one client frame causes: to its sender, and one to the rest of the room."""

    to_sender: list[str]
    to_room: str | None = None


def _unwrap(text: str) -> dict[str, object]:
    frame = json.loads(text)
    if not isinstance(frame, dict):
        return {}
    inner = frame.get("message")
    if isinstance(inner, str):
        unwrapped = json.loads(inner)
        return unwrapped if isinstance(unwrapped, dict) else {}
    return frame


def _command(data: object) -> tuple[str, str]:
    if not isinstance(data, dict):
        return "", ""
    args = data.get("args") or []
    text = " ".join(str(arg) for arg in args) if isinstance(args, list) else ""
    return str(data.get("command", "")).lower(), text


def _say(enc: Encoder, name: str, room: str, text: str) -> Outcome:
    chat = {
        "sender_id": name,
        "player_name": name,
        "channel": "say",
        "message": f"{name} says: {text}",
        "message_id": str(uuid.uuid4()),
        "timestamp": utc_now(),
        "original_content": text,
    }
    reply = enc.event("command_response", {"result": f"You say: {text}"}, player_id=name)
    return Outcome([reply], enc.event("chat_message", chat, room, name))


def handle_frame(enc: Encoder, name: str, room: str, text: str) -> Outcome:
    """The reply to one client frame (mythos_rt's shapes; no validation beyond parsing)."""
    try:
        frame = _unwrap(text)
    except ValueError:
        frame = {}
    kind = frame.get("type")
    if kind == "ping":
        return Outcome([enc.event("pong", {}, player_id=name)])
    if kind in ("command", "game_command"):
        command, args = _command(frame.get("data"))
        if command == "say":
            return _say(enc, name, room, args)
        result = f"Unknown command: {command}. Use 'help' for available commands."
        return Outcome([enc.event("command_response", {"result": result}, player_id=name)])
    error = {"type": "error", "error_type": "invalid_command", "message": f"Unknown: {kind}"}
    return Outcome([json.dumps(error)])
