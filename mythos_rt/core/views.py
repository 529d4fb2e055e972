"""Event payloads built from the world and the presences (PROTOCOL.md sections 5 and 9)."""

from __future__ import annotations

from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.world import Room

Payload = dict[str, object]

# v1.1 section 5: the MythosMUD client's character panel reads ``profession_name`` and
# ``player.stats``.  The store keeps no character sheet yet, so every player shows these
# defaults (one place, documented in docs/PROTOCOL_NOTES.md).  DP and lucidity are full;
# the nine attributes are the average of MythosMUD's 15-90 rolls; magic points are POW / 5.
DEFAULT_PROFESSION_NAME = "Scholar"
DEFAULT_STATS: dict[str, int] = {
    "current_dp": 100,
    "max_dp": 100,
    "lucidity": 100,
    "max_lucidity": 100,
    "strength": 50,
    "dexterity": 50,
    "constitution": 50,
    "size": 50,
    "intelligence": 50,
    "power": 50,
    "education": 50,
    "charisma": 50,
    "luck": 50,
    "occult": 0,
    "corruption": 0,
    "magic_points": 10,
    "max_magic_points": 10,
}


def room_payload(room: Room, presences: Presences, now: float) -> Payload:
    names = presences.occupant_names(room.id, now)
    return {
        "id": room.id,
        "name": room.name,
        "description": room.description,
        "zone": room.zone,
        "sub_zone": room.subzone,  # MythosMUD's name for it (v1.1)
        "subzone": room.subzone,
        "exits": dict(room.exits),
        "players": names,
        "npcs": [],
        "occupants": names,
    }


def occupants_payload(room_id: str, presences: Presences, now: float) -> Payload:
    names = presences.occupant_names(room_id, now)
    return {"players": names, "npcs": [], "occupants": names, "count": len(names)}


def room_state_payload(room: Room, presences: Presences, now: float) -> Payload:
    room_data = room_payload(room, presences, now)
    occupants = room_data["occupants"]
    assert isinstance(occupants, list)
    return {"room": room_data, "occupants": occupants, "occupant_count": len(occupants)}


def player_payload(presence: Presence) -> Payload:
    return {
        "id": presence.player_id,
        "name": presence.name,
        "level": presence.level,
        "room_id": presence.room_id,
        "is_admin": presence.is_admin,
        "profession_name": DEFAULT_PROFESSION_NAME,
        "stats": {**DEFAULT_STATS, "position": presence.position},
    }


def game_state_payload(
    presence: Presence, room: Room, presences: Presences, now: float, following: object = None
) -> Payload:
    room_data = room_payload(room, presences, now)
    occupants = room_data["occupants"]
    assert isinstance(occupants, list)
    return {
        "player": player_payload(presence),
        "room": room_data,
        "occupants": occupants,
        "occupant_count": len(occupants),
        "login_grace_period_active": presence.warded(now),
        "login_grace_period_remaining": round(presence.ward_remaining(now), 1),
        "following": following,
    }


def presence_event_payload(presence: Presence) -> Payload:
    return {"player_id": presence.player_id, "player_name": presence.name}


def humanize(identifier: str) -> str:
    """``miskatonic_university`` -> ``Miskatonic University`` for player-facing text."""
    return identifier.replace("_", " ").title()
