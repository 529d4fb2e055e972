"""go and the direction shortcuts (section 9): the mover's bundle and both rooms' events."""

from __future__ import annotations

import attrs

from mythos_rt.core.commands.session import interrupt_rest
from mythos_rt.core.effects import Effect, Emit, reply
from mythos_rt.core.presence import Presence
from mythos_rt.core.registry import REGISTRY, CommandContext
from mythos_rt.core.views import occupants_payload, room_state_payload
from mythos_rt.core.world import DIRECTIONS
from mythos_rt.core.writes import SaveRoom

SHORTCUTS = {
    "n": "north",
    "s": "south",
    "e": "east",
    "w": "west",
    "ne": "northeast",
    "nw": "northwest",
    "se": "southeast",
    "sw": "southwest",
    "u": "up",
    "d": "down",
}


def direction_of(word: str) -> str | None:
    word = word.lower()
    return word if word in DIRECTIONS else SHORTCUTS.get(word)


def move(
    ctx: CommandContext,
    direction: str,
    result: str | None = None,
    moved: frozenset[str] = frozenset(),
) -> list[Effect]:
    """Move the actor, then everyone following them from the same room (chains too)."""
    actor, presences, now = ctx.actor, ctx.presences, ctx.now
    origin = ctx.world.rooms[actor.room_id]
    destination_id = origin.exits.get(direction)
    if destination_id is None:
        return [reply(actor.player_id, "You can't go that way.")]
    destination = ctx.world.rooms[destination_id]
    followers = _followers_here(ctx, origin.id, moved | {actor.player_id})
    left_behind = presences.ids_in_room(origin.id, excluding=actor.player_id)
    presences.move(actor.player_id, destination_id)
    met = presences.ids_in_room(destination_id, excluding=actor.player_id)
    state = room_state_payload(destination, presences, now)
    mover = (actor.player_id,)
    who = {"player_id": actor.player_id, "player_name": actor.name}
    # A resting mover (a follower too) is told first, then moves as usual (section 9).
    effects = interrupt_rest(actor)
    effects += [
        reply(
            actor.player_id,
            result or f"You go {direction}.",
            room_changed=True,
            room_id=destination_id,
            room_state=state,
        ),
        Emit("room_state", state, mover, room_id=destination_id),
        Emit(
            "player_left",
            {**who, "message": f"{actor.name} leaves the room."},
            left_behind,
            room_id=origin.id,
        ),
        Emit(
            "room_occupants",
            occupants_payload(origin.id, presences, now),
            left_behind,
            room_id=origin.id,
        ),
        Emit(
            "player_entered",
            {**who, "message": f"{actor.name} enters the room."},
            met,
            room_id=destination_id,
        ),
        # One encoding serves the mover's bundle and the newcomers' refresh.
        Emit(
            "room_occupants",
            occupants_payload(destination_id, presences, now),
            mover + met,
            room_id=destination_id,
        ),
        SaveRoom(actor.player_id, destination_id),
    ]
    moved = moved | {actor.player_id} | {f.player_id for f in followers}
    for follower in followers:
        follower_ctx = attrs.evolve(ctx, actor=follower)
        effects += move(follower_ctx, direction, f"You follow {actor.name} {direction}.", moved)
    return effects


def _followers_here(ctx: CommandContext, room_id: str, moved: frozenset[str]) -> list[Presence]:
    """Followers standing in the room the leader leaves (linkdead ones stay behind)."""
    candidates = [ctx.presences.get(f) for f in ctx.social.followers_of(ctx.actor.player_id)]
    return [
        f
        for f in candidates
        if f is not None and f.room_id == room_id and not f.linkdead and f.player_id not in moved
    ]


@REGISTRY.command(
    "go",
    usage="go <direction>",
    summary="Walk through an exit (or just: n, s, e, w, ne, u, d ...).",
)
def go(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    direction = direction_of(args[0]) if args else None
    if direction is None:
        return [reply(ctx.actor.player_id, "Go where? Usage: go <direction>")]
    return move(ctx, direction)


def _register_direction(direction: str, shortcut: str) -> None:
    def walk(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
        return move(ctx, direction)

    REGISTRY.command(
        direction, shortcut, usage=direction, summary=f"Go {direction}.", listed=False
    )(walk)


for _shortcut, _direction in SHORTCUTS.items():
    _register_direction(_direction, _shortcut)
