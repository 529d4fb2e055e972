"""What the rules ask the runtime to do.  Rules return effects; the hub carries them out."""

from __future__ import annotations

from collections.abc import Mapping

import attrs


@attrs.frozen
class Emit:
    """One event, encoded once, delivered to every socket of every recipient."""

    event_type: str
    data: Mapping[str, object]
    to: tuple[str, ...]
    room_id: str | None = None
    player_id: str | None = None


@attrs.frozen
class Disconnect:
    """Close every socket of a player on purpose: no disconnect grace follows."""

    player_id: str
    code: int
    reason: str
    retire_sessions: bool = False  # quit, logout, rest: their sessions are refused 4409 a while


@attrs.frozen
class SaveRoom:
    player_id: str
    room_id: str


@attrs.frozen
class StoreWrite:
    """A store method to call with these arguments, in order, off the hub's path."""

    method: str  # "set_mute", "delete_mute", "set_global_mute", "delete_global_mute"
    args: tuple[object, ...]


@attrs.frozen
class ShutdownCountdown:
    """Start (``seconds``) or cancel (None) the admin shutdown countdown (section 14)."""

    requested_by: str
    seconds: int | None


@attrs.frozen
class RestCountdown:
    """Start (``seconds``) or cancel (None) a player's rest countdown (section 9)."""

    player_id: str
    seconds: int | None


Effect = Emit | Disconnect | SaveRoom | StoreWrite | ShutdownCountdown | RestCountdown


def reply(player_id: str, result: str, **extra: object) -> Emit:
    """A ``command_response`` to the sender's sockets."""
    return Emit("command_response", {"result": result, **extra}, (player_id,))
