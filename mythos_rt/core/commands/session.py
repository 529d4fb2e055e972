"""quit and logout: intentional ends, without disconnect grace.

``quit`` closes the socket it came from (the presence ends when that was the player's last
socket); ``logout`` closes every socket of the player and ends the presence.
"""

from __future__ import annotations

from mythos_rt.core.effects import Disconnect, Effect, ShutdownCountdown, reply
from mythos_rt.core.registry import REGISTRY, CommandContext, whole_number

GOODBYE = (1000, "Goodbye")


@REGISTRY.command("quit", usage="quit", summary="Leave the game from this window.")
def quit_(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    player_id = ctx.actor.player_id
    return [
        reply(player_id, "Goodbye! You have been disconnected from the game."),
        Disconnect(player_id, *GOODBYE, socket_id=ctx.socket_id),
    ]


SHUTDOWN_USAGE = "Usage: shutdown [seconds] | shutdown cancel"
DEFAULT_SHUTDOWN_S = 10
MAX_SHUTDOWN_S = 24 * 3600


@REGISTRY.command(
    "shutdown", usage="shutdown [seconds]|cancel", summary="Shut the server down.", admin=True
)
def shutdown(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    player_id = ctx.actor.player_id
    if not args:  # section 9 writes the seconds as optional; MythosMUD's default is 10
        return [ShutdownCountdown(player_id, DEFAULT_SHUTDOWN_S)]
    if len(args) != 1:
        return [reply(player_id, SHUTDOWN_USAGE)]
    if args[0].lower() == "cancel":
        return [ShutdownCountdown(player_id, None)]
    seconds = whole_number(args[0], 0, MAX_SHUTDOWN_S)
    if seconds is None:
        return [reply(player_id, SHUTDOWN_USAGE)]
    return [ShutdownCountdown(player_id, seconds)]


@REGISTRY.command("logout", usage="logout", summary="Log out everywhere.")
def logout(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    return logout_effects(ctx.actor.player_id)


def logout_effects(player_id: str) -> list[Effect]:
    """What ``logout`` does, also for ``POST /v1/command`` (PROTOCOL.md section 18)."""
    return [
        reply(player_id, "Logged out successfully", session_terminated=True),
        Disconnect(player_id, *GOODBYE),
    ]
