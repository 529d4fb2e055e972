"""Chat as data: channel rules, message checks, who hears what, and the chat_message payload.

PROTOCOL.md section 9.  Routing is computed here, purely, from the presences; the hub only
delivers.  Linkdead players are still in their rooms, so they are routed to like anyone else:
what they miss goes into their replay buffer and a resume delivers it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attrs

from mythos_rt.core.effects import Emit
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.protocol import format_timestamp
from mythos_rt.core.ratelimit import KeyedSlidingWindow
from mythos_rt.core.world import World

DEFAULT_MAX_CHARS = 500
MAX_CHARS = {"global": 1000, "emote": 200}
RATE_LIMITED = (
    "Error sending message: Rate limit exceeded. Please wait before sending another message."
)
CHANNELS = ("say", "local", "global", "party", "whisper", "emote", "pose")


def check_message(channel: str, text: str) -> str | None:
    """The reason a message cannot be sent, or None.  Lengths count after trimming."""
    trimmed = text.strip()
    limit = MAX_CHARS.get(channel, DEFAULT_MAX_CHARS)
    if not trimmed:
        return "Message cannot be empty"
    if len(trimmed) > limit:
        return f"Message too long (max {limit} characters)"
    return None


class ChatLimiter:
    """Per player, per channel sliding windows (section 8)."""

    def __init__(self, per_channel: Mapping[str, int], window_s: float) -> None:
        self._windows = {
            channel: KeyedSlidingWindow(limit, window_s) for channel, limit in per_channel.items()
        }

    def allow(self, player_id: str, channel: str, now: float) -> bool:
        window = self._windows.get(channel)
        return window is None or window.allow(player_id, now)

    def forget(self, player_id: str) -> None:
        for window in self._windows.values():
            window.forget(player_id)


# --- who hears what ------------------------------------------------------------------------


def room_audience(presences: Presences, sender: Presence) -> tuple[str, ...]:
    return presences.ids_in_room(sender.room_id, excluding=sender.player_id)


def subzone_audience(presences: Presences, world: World, sender: Presence) -> tuple[str, ...]:
    """Everyone in the sender's zone and subzone (subzone names may repeat across zones)."""
    here = world.rooms[sender.room_id]
    return tuple(
        p.player_id
        for p in presences
        if p.player_id != sender.player_id
        and _same_subzone(world, p.room_id, here.zone, here.subzone)
    )


def _same_subzone(world: World, room_id: str, zone: str, subzone: str) -> bool:
    room = world.rooms.get(room_id)
    return room is not None and room.zone == zone and room.subzone == subzone


def audience_here(
    presences: Presences,
    world: World,
    channel: str,
    scope: tuple[str | None, str | None, str | None],
    sender_id: str | None,
) -> list[str]:
    """Who, of the players this instance holds, hears a line that came over the bus.

    ``scope`` is ``(room_id, subzone, target_id)`` as the line carries them; an outside
    publisher may name a subzone without a room.  Replicas are left out: their own instance
    resolves the same line for them.
    """
    room_id, subzone, target_id = scope
    if channel in ("say", "emote", "pose"):
        candidates = presences.in_room(room_id or "")
    else:
        candidates = list(presences)
    here = [p for p in candidates if not p.remote and p.player_id != sender_id]
    room = world.rooms.get(room_id or "")
    if channel in ("say", "emote", "pose", "global", "system", "admin"):
        return [p.player_id for p in here]
    if channel == "local" and room is not None:
        return [
            p.player_id for p in here if _same_subzone(world, p.room_id, room.zone, room.subzone)
        ]
    if channel == "local" and subzone is not None:
        return [p.player_id for p in here if _subzone_of(world, p.room_id) == subzone]
    if channel == "whisper":
        return [p.player_id for p in here if p.player_id == target_id]
    return []


def _subzone_of(world: World, room_id: str) -> str | None:
    room = world.rooms.get(room_id)
    return None if room is None else room.subzone


def everyone_but(presences: Presences, sender: Presence) -> tuple[str, ...]:
    return tuple(p.player_id for p in presences if p.player_id != sender.player_id)


# --- the event -----------------------------------------------------------------------------


@attrs.frozen
class ChatLine:
    channel: str
    original: str
    formatted: str
    to: tuple[str, ...]
    room_id: str | None = None
    target: Presence | None = None


def chat_event(
    sender: Presence, line: ChatLine, *, wall_now: float, new_id: Callable[[], str]
) -> Emit:
    data: dict[str, object] = {
        "sender_id": sender.player_id,
        "player_name": sender.name,
        "channel": line.channel,
        "message": line.formatted,
        "message_id": new_id(),
        "timestamp": format_timestamp(wall_now),
        "original_content": line.original,
    }
    if line.target is not None:
        data["target_id"] = line.target.player_id
        data["target_name"] = line.target.name
    return Emit("chat_message", data, line.to, room_id=line.room_id, player_id=sender.player_id)
