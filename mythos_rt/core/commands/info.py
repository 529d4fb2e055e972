"""look, who, whoami, help, time."""

from __future__ import annotations

import time

from mythos_rt.core.effects import Effect, reply
from mythos_rt.core.mythos_clock import describe
from mythos_rt.core.presence import Presence
from mythos_rt.core.registry import REGISTRY, CommandContext
from mythos_rt.core.views import humanize


@REGISTRY.command("look", usage="look", summary="Describe the room you are in.")
def look(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    room = ctx.world.rooms[ctx.actor.room_id]
    lines = [room.name, room.description]
    others = [p.display_name(ctx.now) for p in ctx.presences.in_room(room.id) if p is not ctx.actor]
    if others:
        lines.append("Also here: " + ", ".join(others))
    exits = ", ".join(room.exits) if room.exits else "none"
    lines.append(f"Exits: {exits}")
    return [reply(ctx.actor.player_id, "\n".join(lines))]


def who_entry(ctx: CommandContext, presence: Presence) -> str:
    room = ctx.world.rooms.get(presence.room_id)
    where = f"{humanize(room.zone)}: {humanize(room.subzone)}: {room.name}" if room else "Unknown"
    return f"{presence.display_name(ctx.now)} [{presence.level}] - {where}"


@REGISTRY.command("who", usage="who [filter]", summary="List the players online.")
def who(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    wanted = " ".join(args).strip().casefold()
    online = sorted(ctx.presences, key=lambda p: p.name.casefold())
    matches = [p for p in online if wanted in p.name.casefold()]
    if wanted and not matches:
        shown = " ".join(args).strip()
        text = f"No players found matching '{shown}'. Try 'who' to see all online players."
        return [reply(ctx.actor.player_id, text)]
    entries = ", ".join(who_entry(ctx, p) for p in matches)
    return [reply(ctx.actor.player_id, f"Online Players ({len(matches)}): {entries}")]


@REGISTRY.command("whoami", usage="whoami", summary="Show who you are and where.")
def whoami(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    room = ctx.world.rooms[actor.room_id]
    role = " (admin)" if actor.is_admin else ""
    text = f"You are {actor.name}{role}, level {actor.level}, in {room.name}."
    return [reply(actor.player_id, text)]


@REGISTRY.command("help", usage="help [command]", summary="List commands, or explain one.")
def help_(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    visible = [spec for spec in REGISTRY if ctx.actor.is_admin or not spec.admin]
    if args:
        spec = REGISTRY.find(args[0].lstrip("/").lower())
        if spec is None or spec not in visible:
            return [reply(ctx.actor.player_id, f"No help for '{args[0]}'.")]
        aliases = f" (also: {', '.join(spec.aliases)})" if spec.aliases else ""
        return [reply(ctx.actor.player_id, f"{spec.usage}{aliases}\n{spec.summary}")]
    listed = [spec for spec in visible if spec.listed]
    lines = ["Available commands:", *(f"  {s.usage} - {s.summary}" for s in listed)]
    return [reply(ctx.actor.player_id, "\n".join(lines))]


@REGISTRY.command("time", usage="time", summary="Show the server time (UTC) and the Mythos time.")
def time_(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ctx.wall_now))
    return [reply(ctx.actor.player_id, f"The time is {stamp}.\n{describe(ctx.wall_now)}")]
