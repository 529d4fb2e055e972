"""Server events as a telnet player reads them: text lines, ANSI colours, GMCP messages.

Pure.  The hub encodes every event once as WebSocket frame bytes and puts the same bytes in
every recipient's outbox, whatever the socket.  A telnet socket's sender splits its batch back
into frames (:func:`split_text_frames`), parses each envelope once and renders it here, so the
hub's hot path stays the same for everyone and the game logic exists once.

What is shown is decided per event type (docs/TELNET.md): replies, chat, room views, arrivals
and departures, requests, notices.  Bookkeeping events the web client uses to redraw panels
(occupant lists, ticks, token notices) are not printed; nothing ever reaches the screen as JSON.
"""

from __future__ import annotations

import json
import textwrap
import zlib
from collections.abc import Callable, Mapping

import attrs

from mythos_rt.core.views import humanize

RESET = "\x1b[0m"

# One colour per chat channel and per kind of line (SGR codes; 90 is the bright black most
# terminals show as grey).
COLOURS: Mapping[str, str] = {
    "say": "0;37",
    "local": "0;36",
    "global": "1;33",
    "whisper": "1;35",
    "party": "1;32",
    "emote": "0;33",
    "pose": "0;33",
    "system": "1;31",
    "error": "0;31",
    "notice": "1;31",
    "room_name": "1;36",
    "exits": "0;32",
    "arrival": "0;90",
    "request": "1;34",
}

_TEXT_FRAME = 0x81


@attrs.frozen
class Style:
    colour: bool = True
    width: int | None = None  # columns from NAWS; None: the client wraps
    me: str = ""  # the player's own name, left out of "Here:"


_Renderer = Callable[[Mapping[str, object], Style], list[str]]


def paint(text: str, kind: str, style: Style) -> str:
    code = COLOURS.get(kind)
    if not style.colour or code is None or not text:
        return text
    return f"\x1b[{code}m{text}{RESET}"


def split_text_frames(data: bytes) -> list[str]:
    """The payloads of the server's own unmasked WebSocket text frames, back to back.

    Only ever fed what ``wsio.text_frame`` produced; anything else ends the split (and is
    dropped) rather than raising.
    """
    texts: list[str] = []
    at = 0
    while at + 2 <= len(data) and data[at] == _TEXT_FRAME:
        size, at = data[at + 1], at + 2
        if size == 126:
            size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif size == 127:
            size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        texts.append(data[at : at + size].decode("utf-8", errors="replace"))
        at += size
    return texts


def parse_envelope(text: str) -> dict[str, object]:
    try:
        frame = json.loads(text)
    except ValueError:
        return {}
    return frame if isinstance(frame, dict) else {}


# --- text ------------------------------------------------------------------------------------


def render(frame: Mapping[str, object], style: Style) -> list[str]:
    """The lines a player sees for one server frame (often none)."""
    if frame.get("type") == "error":
        text = _str(frame.get("user_friendly")) or _str(frame.get("message"))
        return [paint(text, "error", style)]
    event_type = _str(frame.get("event_type"))
    data = _map(frame.get("data"))
    renderer = _RENDERERS.get(event_type)
    if renderer is not None:
        return renderer(data, style)
    if event_type in _SILENT:
        return []
    message = _str(data.get("message"))  # an event added later: its message, if it has one
    return [message] if message else []


def _reply(data: Mapping[str, object], style: Style) -> list[str]:
    return _str(data.get("result")).splitlines()


def _chat(data: Mapping[str, object], style: Style) -> list[str]:
    channel = _str(data.get("channel"))
    return [paint(line, channel, style) for line in _str(data.get("message")).splitlines()]


def room_view(room: Mapping[str, object], style: Style) -> list[str]:
    """Name, description, who else is here, exits: what ``look`` says, in colour."""
    lines = [paint(_str(room.get("name")), "room_name", style)]
    description = _str(room.get("description"))
    if style.width is not None and style.width >= 20:
        lines += textwrap.wrap(description, style.width - 1) or [""]
    else:
        lines.append(description)
    occupants = [
        name
        for name in _list(room.get("occupants"))
        if isinstance(name, str) and not _is_me(name, style.me)
    ]
    if occupants:
        lines.append("Here: " + ", ".join(occupants))
    exits = ", ".join(_map(room.get("exits"))) or "none"
    lines.append(paint(f"Exits: {exits}", "exits", style))
    return lines


def _is_me(display_name: str, me: str) -> bool:
    """``Lavinia`` or ``Lavinia (warded)``: occupant lists show display names."""
    return bool(me) and (display_name == me or display_name.startswith(f"{me} ("))


def _room_state(data: Mapping[str, object], style: Style) -> list[str]:
    return room_view(_map(data.get("room")), style)


def _message(kind: str | None) -> _Renderer:
    def lines(data: Mapping[str, object], style: Style) -> list[str]:
        text = _str(data.get("message"))
        return [paint(text, kind, style) if kind else text] if text else []

    return lines


def _presence(verb: str) -> _Renderer:
    def lines(data: Mapping[str, object], style: Style) -> list[str]:
        name = _str(data.get("player_name")) or "Someone"
        return [paint(f"{name} {verb}.", "arrival", style)]

    return lines


def _follow_request(data: Mapping[str, object], style: Style) -> list[str]:
    name = _str(data.get("requestor_name")) or "Someone"
    text = f"{name} asks to follow you. (Answer with 'accept' or 'decline'.)"
    return [paint(text, "request", style)]


def _party_invite(data: Mapping[str, object], style: Style) -> list[str]:
    name = _str(data.get("inviter_name")) or "Someone"
    text = f"{name} invites you to their party. (Answer with 'accept' or 'decline'.)"
    return [paint(text, "request", style)]


def _party_update(data: Mapping[str, object], style: Style) -> list[str]:
    if _str(data.get("change")) in ("disbanded", "list"):
        return []  # the replies say it (and `party` lists on request)
    members = ", ".join(m for m in _list(data.get("members")) if isinstance(m, str))
    text = f"Party (leader {_str(data.get('leader'))}): {members}"
    return [paint(text, "party", style)]


def _welcome(data: Mapping[str, object], style: Style) -> list[str]:
    return [f"{_str(data.get('message')) or 'Connected'}. Type 'help' for the commands."]


_RENDERERS: Mapping[str, _Renderer] = {
    "command_response": _reply,
    "chat_message": _chat,
    "room_state": _room_state,
    "game_state": _room_state,
    "welcome": _welcome,
    "player_entered": _message("arrival"),
    "player_left": _message("arrival"),
    "player_entered_game": _presence("has entered the game"),
    "player_left_game": _presence("has left the game"),
    "follow_request": _follow_request,
    "party_invite": _party_invite,
    "party_update": _party_update,
    "intentional_disconnect": _message(None),
    "shutdown_notification": _message("notice"),
    "shutdown_cancelled": _message("notice"),
}
# The web client redraws panels from these; a reply or another event already said it in words.
_SILENT = frozenset(
    {
        "room_update",
        "room_occupants",
        "game_tick",
        "follow_state",
        "pong",
        "token_refreshed",
        "token_expiring",
    }
)


def close_notice(code: int, reason: str, style: Style) -> list[str]:
    """The last line before the server hangs up (the WebSocket close reason, in words); none
    after a normal close (1000: quit, logout, rest), whose reply already said goodbye."""
    if code == 1000:
        return []
    return [paint(f"*** {reason} ***", "notice", style)]


# --- GMCP ------------------------------------------------------------------------------------


def gmcp_messages(frame: Mapping[str, object]) -> list[tuple[str, object]]:
    """GMCP (package, data) pairs for one server frame: vitals, room info, channel text."""
    event_type = _str(frame.get("event_type"))
    data = _map(frame.get("data"))
    if event_type == "game_state":
        stats = _map(_map(data.get("player")).get("stats"))
        return [("Char.Vitals", vitals(stats)), ("Room.Info", room_info(_map(data.get("room"))))]
    if event_type == "room_state":
        return [("Room.Info", room_info(_map(data.get("room"))))]
    if event_type == "chat_message":
        return [("Comm.Channel.Text", channel_text(data))]
    return []


def room_number(room_id: str) -> int:
    """A stable number for a room id: Mudlet's mapper keys rooms by number (CRC-32 of the id,
    the same on every instance and across restarts)."""
    return zlib.crc32(room_id.encode("utf-8"))


def room_info(room: Mapping[str, object]) -> dict[str, object]:
    room_id = _str(room.get("id"))
    exits = {
        direction: _str(target)
        for direction, target in _map(room.get("exits")).items()
        if isinstance(target, str)
    }
    zone, subzone = _str(room.get("zone")), _str(room.get("subzone"))
    return {
        "num": room_number(room_id),
        "id": room_id,
        "name": _str(room.get("name")),
        "area": humanize(zone),
        "zone": zone,
        "subzone": subzone,
        "exits": {direction: room_number(target) for direction, target in exits.items()},
        "exit_ids": exits,
    }


def vitals(stats: Mapping[str, object]) -> dict[str, object]:
    """The game's vitals: DP (health), lucidity (sanity), magic points, and the position."""
    return {
        "dp": stats.get("current_dp"),
        "maxdp": stats.get("max_dp"),
        "lucidity": stats.get("lucidity"),
        "maxlucidity": stats.get("max_lucidity"),
        "mp": stats.get("magic_points"),
        "maxmp": stats.get("max_magic_points"),
        "position": stats.get("position"),
    }


def channel_text(data: Mapping[str, object]) -> dict[str, object]:
    return {
        "channel": _str(data.get("channel")),
        "talker": _str(data.get("player_name")),
        "text": _str(data.get("message")),
    }


# --- reading untrusted shapes safely ---------------------------------------------------------


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _map(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
