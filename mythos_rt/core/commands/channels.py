"""say, local, global, emote, pose, whisper, reply and the admin ``system`` (section 9).

Every channel follows the same steps: check the text, check the sender's channel limit, route,
then echo to the sender as a ``command_response``.  The sender never receives their own
room/global ``chat_message``; the echo is theirs.
"""

from __future__ import annotations

import attrs

from mythos_rt.core.chat import (
    RATE_LIMITED,
    ChatLine,
    chat_event,
    check_message,
    everyone_but,
    room_audience,
    subzone_audience,
)
from mythos_rt.core.effects import Effect, reply
from mythos_rt.core.presence import Presence
from mythos_rt.core.registry import REGISTRY, CommandContext

GLOBALLY_MUTED = "You are globally muted and cannot send messages"


@attrs.frozen
class Sent:
    """What sending one chat line produced, and whether the speaker was heard."""

    effects: list[Effect]
    accepted: bool = False  # passed every check; the speaker gets their echo
    reached: tuple[str, ...] = ()  # who actually receives the line


def send_line(ctx: CommandContext, line: ChatLine, echo: str) -> Sent:
    """The one path of every channel: check, limit, apply mutes, deliver, echo."""
    actor = ctx.actor
    problem = check_message(line.channel, line.original)
    if problem is not None:
        return Sent([reply(actor.player_id, f"Error sending message: {problem}")])
    if not ctx.chat.allow(actor.player_id, line.channel, ctx.now):
        return Sent([reply(actor.player_id, RATE_LIMITED)])
    line = attrs.evolve(line, to=_audience(ctx, line.to))
    if ctx.social.globally_muted(actor.player_id, ctx.wall_now):
        # The speaker is refused, but admins in range still see the line, for moderation.
        line = attrs.evolve(line, to=tuple(p for p in line.to if _is_admin(ctx, p)))
        event = chat_event(actor, line, wall_now=ctx.wall_now, new_id=ctx.new_id)
        return Sent([reply(actor.player_id, GLOBALLY_MUTED), event], reached=line.to)
    event = chat_event(actor, line, wall_now=ctx.wall_now, new_id=ctx.new_id)
    return Sent([reply(actor.player_id, echo), event], accepted=True, reached=line.to)


def _send(ctx: CommandContext, line: ChatLine, echo: str) -> list[Effect]:
    return send_line(ctx, line, echo).effects


def _audience(ctx: CommandContext, to: tuple[str, ...]) -> tuple[str, ...]:
    """Mutes are receiver-side and apply to every channel."""
    sender, social, now = ctx.actor.player_id, ctx.social, ctx.wall_now
    return tuple(receiver for receiver in to if not social.has_muted(receiver, sender, now))


def _is_admin(ctx: CommandContext, player_id: str) -> bool:
    presence = ctx.presences.get(player_id)
    return presence is not None and presence.is_admin


def _text(args: tuple[str, ...]) -> str:
    return " ".join(args).strip()


@REGISTRY.command("say", usage="say <message>", summary="Speak to the room.")
def say(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = _text(args), ctx.actor
    to = room_audience(ctx.presences, actor)
    line = ChatLine("say", text, f"{actor.name} says: {text}", to, room_id=actor.room_id)
    return _send(ctx, line, f"You say: {text}")


@REGISTRY.command("local", "l", usage="local <message>", summary="Speak to your whole subzone.")
def local(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = _text(args), ctx.actor
    to = subzone_audience(ctx.presences, ctx.world, actor)
    line = ChatLine("local", text, f"{actor.name} (local): {text}", to, room_id=actor.room_id)
    return _send(ctx, line, f"You say locally: {text}")


@REGISTRY.command("global", "g", usage="global <message>", summary="Speak to everyone online.")
def global_(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = _text(args), ctx.actor
    to = everyone_but(ctx.presences, actor)
    line = ChatLine("global", text, f"{actor.name} (global): {text}", to)
    return _send(ctx, line, f"You say (global): {text}")


@REGISTRY.command("emote", "me", usage="emote <action>", summary="Act something out.")
def emote(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = _text(args), ctx.actor
    shown = f"{actor.name} {text}"
    to = room_audience(ctx.presences, actor)
    return _send(ctx, ChatLine("emote", text, shown, to, room_id=actor.room_id), shown)


@REGISTRY.command("pose", usage="pose [text]", summary="Set or clear your pose.")
def pose(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = _text(args), ctx.actor
    if not text:
        actor.pose = None
        return [reply(actor.player_id, "Your pose has been cleared.")]
    to = room_audience(ctx.presences, actor)
    line = ChatLine("pose", text, f"{actor.name} {text}", to, room_id=actor.room_id)
    sent = send_line(ctx, line, f"Your pose is now: {text}")
    if sent.accepted:
        actor.pose = text
    return sent.effects


def _whisper_to(ctx: CommandContext, target: Presence | None, text: str) -> list[Effect]:
    actor = ctx.actor
    if target is None:
        return [reply(actor.player_id, "You whisper into the aether.")]
    if target.player_id == actor.player_id:
        return [reply(actor.player_id, "You cannot whisper to yourself")]
    formatted = f"{actor.name} whispers to you: {text}"
    line = ChatLine("whisper", text, formatted, (target.player_id,), target=target)
    sent = send_line(ctx, line, f"You whisper to {target.name}: {text}")
    if target.player_id in sent.reached:  # an undelivered whisper must not reveal itself
        target.last_whisperer = actor.player_id
    return sent.effects


WHISPER_USAGE = "Say what? Usage: whisper <player> <message>"
REPLY_USAGE = "Say what? Usage: reply <message>"


@REGISTRY.command("whisper", usage="whisper <name> <message>", summary="Speak to one player.")
def whisper(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    # No message is a usage error before the name is looked up: it reveals nobody's presence.
    text = _text(args[1:])
    if not text:
        return [reply(ctx.actor.player_id, WHISPER_USAGE)]
    return _whisper_to(ctx, ctx.presences.find_by_name(args[0]), text)


@REGISTRY.command("reply", usage="reply <message>", summary="Whisper back to your last whisperer.")
def reply_(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    last = ctx.actor.last_whisperer
    target = ctx.presences.get(last) if last is not None else None
    if last is None:
        return [reply(ctx.actor.player_id, "No one has whispered to you recently.")]
    text = _text(args)
    if not text:
        return [reply(ctx.actor.player_id, REPLY_USAGE)]
    return _whisper_to(ctx, target, text)


@REGISTRY.command("system", usage="system <message>", summary="Announce to everyone.", admin=True)
def system(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = _text(args), ctx.actor
    to = everyone_but(ctx.presences, actor)
    line = ChatLine("system", text, f"[SYSTEM] {text}", to)
    return _send(ctx, line, f"You system: {text}")
