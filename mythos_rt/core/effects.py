"""What the rules ask the runtime to do.  Rules return effects; the hub carries them out."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from mythos_rt.core.writes import SaveRoom, Write


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
class Persist:
    """A change that must be durable before anyone hears of it (PROTOCOL.md section 10).

    The hub queues ``write``; after it commits, the hub applies it to the live state and carries
    out ``then`` (the confirmation).  If it cannot be committed, ``requested_by`` is told so and
    nothing changes.
    """

    write: Write
    requested_by: str
    then: tuple[Emit | Disconnect | AdminAction, ...]


@attrs.frozen
class FindPlayer:
    """The command names a player this instance has not met (added by the CLI or another
    instance since start-up): look the name up in the store, then run the command again."""

    name: str


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


@attrs.frozen
class AdminAction:
    """An admin changed someone's standing (kick, ban, unban, wall): one INFO log line."""

    admin: str  # the admin's name
    action: str
    target: str | None = None  # the player's name, if the action names one
    detail: str | None = None


@attrs.frozen
class PartyAtOwner:
    """A party change asked here for a party another instance owns (docs/NATS.md): that
    instance runs the same rule with the actor's replica.  ``args`` are the ``party`` command's;
    an invite answer carries ``invite_id`` and ``accept`` instead."""

    owner: str
    actor_id: str
    args: tuple[str, ...] = ()
    invite_id: str | None = None
    accept: bool | None = None


Effect = (
    Emit
    | Disconnect
    | SaveRoom
    | Persist
    | FindPlayer
    | ShutdownCountdown
    | RestCountdown
    | AdminAction
    | PartyAtOwner
)

NOT_SAVED = "That could not be saved right now. Please try again."


def reply(player_id: str, result: str, **extra: object) -> Emit:
    """A ``command_response`` to the sender's sockets."""
    return Emit("command_response", {"result": result, **extra}, (player_id,))
