"""quit, logout, shutdown and rest: intentional ends, without disconnect grace.

``quit`` and ``logout`` close every socket of the player and end the presence; the sessions of
those sockets are retired (v1.1 section 3), so the web client's automatic reconnect is refused
4409 instead of walking back in.
"""

from __future__ import annotations

from mythos_rt.core.effects import Disconnect, Effect, Emit, RestCountdown, ShutdownCountdown, reply
from mythos_rt.core.presence import Presence
from mythos_rt.core.registry import REGISTRY, CommandContext, whole_number

REST_INTERRUPTED = "Your rest is interrupted as you begin to move."
RESTED = "You have rested and disconnected from the game."


def goodbye(player_id: str) -> Disconnect:
    """Every socket closed 1000 "Goodbye", no grace, the sessions retired."""
    return Disconnect(player_id, 1000, "Goodbye", retire_sessions=True)


@REGISTRY.command("quit", usage="quit", summary="Leave the game.")
def quit_(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    player_id = ctx.actor.player_id
    return [
        reply(player_id, "Goodbye! You have been disconnected from the game."),
        goodbye(player_id),
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
        goodbye(player_id),
    ]


# --- rest (v1.1 section 9) -----------------------------------------------------------------


def _seconds(n: int) -> str:
    return f"{n} second" if n == 1 else f"{n} seconds"


@REGISTRY.command("rest", usage="rest", summary="Sit down to rest, then leave the game.")
def rest(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    player_id = actor.player_id
    if ctx.world.rooms[actor.room_id].rest_location:
        # The countdown's end, at once: intentional_disconnect tells the web client to log
        # out instead of reconnecting.
        return [
            reply(player_id, "You rest peacefully and disconnect from the game."),
            *rest_tick(player_id, 0),
        ]
    if actor.resting:
        return [reply(player_id, "You are already resting. The countdown will complete shortly.")]
    actor.resting = True
    text = (
        "You settle into a seated position and begin to rest. "
        f"You will disconnect in {_seconds(ctx.rest_s)}. "
        "Any movement, combat, or spellcasting will interrupt your rest."
    )
    return [reply(player_id, text), RestCountdown(player_id, ctx.rest_s)]


def rest_tick(player_id: str, remaining: int) -> list[Effect]:
    """One second of the countdown: a notice, or at zero the goodbye (run by the hub's timer)."""
    if remaining > 0:
        return [reply(player_id, f"You will disconnect in {_seconds(remaining)}...")]
    message = {"message": RESTED}
    event = Emit("intentional_disconnect", message, (player_id,), player_id=player_id)
    return [event, goodbye(player_id)]


def interrupt_rest(presence: Presence) -> list[Effect]:
    """Moving stands a resting player up and cancels the countdown (nothing if not resting)."""
    if not presence.resting:
        return []
    presence.resting = False
    player_id = presence.player_id
    return [reply(player_id, REST_INTERRUPTED), RestCountdown(player_id, None)]


def stand_up(presence: Presence) -> list[Effect]:
    """A new login (a new session) while resting: the player is back, so the countdown ends
    quietly; the new socket's burst shows them standing."""
    if not presence.resting:
        return []
    presence.resting = False
    return [RestCountdown(presence.player_id, None)]
