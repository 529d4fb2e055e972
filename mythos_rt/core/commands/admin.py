"""The admin commands of issue 10: ``kick``, ``ban``, ``unban`` and ``wall``.

Non-admins get the unknown-command text (the registry's rule for every admin command).

- ``kick <name> [reason]`` ends an online player's presence as ``logout`` does: every socket
  closed 4008, the sessions retired (so a client that reconnects on every close is refused 4409
  instead of walking back in); a new login is allowed.
- ``ban <name> [reason]`` persists the ban first (the admin hears of it only after the commit,
  PROTOCOL.md section 10), then closes the player's sockets 4403 the same way; while banned the
  player is refused at every handshake and HTTP login.  Offline players can be banned too.
- ``unban <name>`` lifts a ban (persisted the same way).
- ``wall <message>`` is an announcement on the ``admin`` channel: "[ADMIN] <Name>: <message>" to
  everyone online, on every instance.
"""

from __future__ import annotations

from mythos_rt.core.chat import ChatLine, everyone_but
from mythos_rt.core.commands.channels import send_line
from mythos_rt.core.effects import AdminAction, Disconnect, Effect, Emit, FindPlayer, Persist, reply
from mythos_rt.core.handshake import MAX_CLOSE_REASON_BYTES, truncate_utf8
from mythos_rt.core.registry import REGISTRY, CommandContext
from mythos_rt.core.social import KnownPlayer
from mythos_rt.core.writes import DeleteBan, SetBan

KICK_CLOSE = (4008, "Kicked by an admin")
BAN_CLOSE = (4403, "Banned")


def _reason(args: tuple[str, ...]) -> str | None:
    text = " ".join(args[1:]).strip()
    return text or None


def _close_reason(base: str, reason: str | None) -> str:
    text = base if reason is None else f"{base}: {reason}"
    return truncate_utf8(text, MAX_CLOSE_REASON_BYTES)


def _sent_away(
    player_id: str, text: str, close: tuple[int, str], reason: str | None
) -> list[Emit | Disconnect]:
    """The player is told why (``intentional_disconnect``: the web client shows it and goes to
    its login screen instead of reconnecting), then every socket closes, sessions retired."""
    message = text if reason is None else f"{text} Reason: {reason}"
    notice = Emit("intentional_disconnect", {"message": message}, (player_id,), player_id=player_id)
    code, base = close
    return [notice, Disconnect(player_id, code, _close_reason(base, reason), retire_sessions=True)]


def _refusal(ctx: CommandContext, target: KnownPlayer, verb: str, done: str) -> list[Effect] | None:
    actor = ctx.actor.player_id
    if target.player_id == actor:
        return [reply(actor, f"You cannot {verb} yourself.")]
    if target.is_admin:  # as with mutes: take the admin rights away first (the CLI)
        return [reply(actor, f"Admins cannot be {done}.")]
    return None


@REGISTRY.command(
    "kick", usage="kick <name> [reason]", summary="Send a player out of the game.", admin=True
)
def kick(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    if not args:
        return [reply(actor.player_id, "Usage: kick <player_name> [reason]")]
    online = ctx.presences.find_by_name(args[0])
    if online is None:
        return [reply(actor.player_id, f"Player '{args[0]}' is not online.")]
    target = KnownPlayer(online.player_id, online.name, online.is_admin)
    refused = _refusal(ctx, target, "kick", "kicked")
    if refused is not None:
        return refused
    reason = _reason(args)
    return [
        reply(actor.player_id, f"You have kicked {target.name}."),
        *_sent_away(
            target.player_id,
            f"You have been kicked from the game by {actor.name}.",
            KICK_CLOSE,
            reason,
        ),
        AdminAction(actor.name, "kick", target.name, reason),
    ]


def _known(ctx: CommandContext, name: str) -> KnownPlayer | list[Effect]:
    """Online or known from the store; an unknown name asks the store first (FindPlayer)."""
    online = ctx.presences.find_by_name(name)
    if online is not None:
        return KnownPlayer(online.player_id, online.name, online.is_admin)
    known = ctx.directory.get(name.casefold())
    if known is not None:
        return known
    if ctx.store_consulted:
        return [reply(ctx.actor.player_id, f"Player '{name}' not found.")]
    return [FindPlayer(name)]


@REGISTRY.command(
    "ban", usage="ban <name> [reason]", summary="Keep a player out for good.", admin=True
)
def ban(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    if not args:
        return [reply(actor.player_id, "Usage: ban <player_name> [reason]")]
    target = _known(ctx, args[0])
    if isinstance(target, list):
        return target
    refused = _refusal(ctx, target, "ban", "banned")
    if refused is not None:
        return refused
    reason = _reason(args)
    # Everything after the commit: the admin's confirmation, and the player sent away (if they
    # are online by then, here or on another instance).
    then = (
        reply(actor.player_id, f"You have banned {target.name}."),
        *_sent_away(target.player_id, f"You have been banned by {actor.name}.", BAN_CLOSE, reason),
        AdminAction(actor.name, "ban", target.name, reason),
    )
    return [Persist(SetBan(target.player_id, None, reason), actor.player_id, then)]


@REGISTRY.command("unban", usage="unban <name>", summary="Lift a player's ban.", admin=True)
def unban(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    if len(args) != 1:
        return [reply(actor.player_id, "Usage: unban <player_name>")]
    target = _known(ctx, args[0])
    if isinstance(target, list):
        return target
    then = (
        reply(actor.player_id, f"You have unbanned {target.name}."),
        AdminAction(actor.name, "unban", target.name),
    )
    return [Persist(DeleteBan(target.player_id), actor.player_id, then)]


@REGISTRY.command(
    "wall", usage="wall <message>", summary="Announce to everyone as admin.", admin=True
)
def wall(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    text, actor = " ".join(args).strip(), ctx.actor
    to = everyone_but(ctx.presences, actor)
    line = ChatLine("admin", text, f"[ADMIN] {actor.name}: {text}", to)
    sent = send_line(ctx, line, f"You wall: {text}")
    if not sent.accepted:
        return sent.effects
    return [*sent.effects, AdminAction(actor.name, "wall", None, text)]
