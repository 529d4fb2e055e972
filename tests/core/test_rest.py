"""``rest`` as pure rules (PROTOCOL.md v1.1 section 9): the texts, the countdown effect, rest
locations, interruption by movement (also as a follower), and the countdown's ticks."""

from __future__ import annotations

import pytest

from mythos_rt.core.commands.session import rest_tick
from mythos_rt.core.effects import Disconnect, Emit, RestCountdown
from tests.core.test_social import QUAD, Game, emits, pid, results_for

BOARDING_HOUSE = "earth_arkhamcity_merchant_pell_boarding_house"
SQUARE = "earth_arkhamcity_merchant_independence_square"
MARINERS_REST = "earth_innsmouth_waterfront_mariners_rest"
LIBRARY = "earth_arkhamcity_campus_library_hall"
STARTED = (
    "You settle into a seated position and begin to rest. You will disconnect in 10 seconds. "
    "Any movement, combat, or spellcasting will interrupt your rest."
)
INTERRUPTED = "Your rest is interrupted as you begin to move."
GOODBYE = Disconnect(pid("Alice"), 1000, "Goodbye", retire_sessions=True)


def test_rest_sits_down_and_starts_the_countdown() -> None:
    game = Game({"Alice": QUAD, "Bob": QUAD})
    effects = game.run("Alice", "rest")
    assert results_for(effects, "Alice") == [STARTED]
    assert effects[1:] == [RestCountdown(pid("Alice"), 10)]
    assert game.presence("Alice").position == "sitting"
    assert results_for(effects, "Bob") == []  # the room hears nothing until the player leaves


def test_rest_again_while_resting() -> None:
    game = Game({"Alice": QUAD})
    game.run("Alice", "rest")
    effects = game.run("Alice", "rest")
    assert results_for(effects, "Alice") == [
        "You are already resting. The countdown will complete shortly."
    ]
    assert not [e for e in effects if isinstance(e, RestCountdown)]  # the countdown runs on


@pytest.mark.parametrize("room", [BOARDING_HOUSE, MARINERS_REST])
def test_rest_in_a_rest_location_disconnects_at_once(room: str) -> None:
    game = Game({"Alice": room})
    effects = game.run("Alice", "rest")
    assert results_for(effects, "Alice") == ["You rest peacefully and disconnect from the game."]
    assert effects[1:] == rest_tick(pid("Alice"), 0)  # the countdown's end, at once
    assert effects[-1] == GOODBYE


@pytest.mark.parametrize(
    ("remaining", "text"),
    [
        (9, "You will disconnect in 9 seconds..."),
        (2, "You will disconnect in 2 seconds..."),
        (1, "You will disconnect in 1 second..."),
    ],
)
def test_countdown_notices(remaining: int, text: str) -> None:
    assert rest_tick(pid("Alice"), remaining) == [
        Emit("command_response", {"result": text}, (pid("Alice"),))
    ]


def test_countdown_at_zero_is_an_intentional_disconnect_then_goodbye() -> None:
    message = {"message": "You have rested and disconnected from the game."}
    assert rest_tick(pid("Alice"), 0) == [
        Emit("intentional_disconnect", message, (pid("Alice"),), player_id=pid("Alice")),
        GOODBYE,
    ]


def test_moving_interrupts_the_rest_first_then_moves_as_usual() -> None:
    game = Game({"Alice": QUAD})
    game.run("Alice", "rest")
    effects = game.run("Alice", "north")
    assert results_for(effects, "Alice")[:2] == [INTERRUPTED, "You go north."]
    assert effects[1] == RestCountdown(pid("Alice"), None)
    assert game.presence("Alice").position == "standing"
    assert game.presence("Alice").room_id == LIBRARY


def test_no_exit_does_not_interrupt_the_rest() -> None:
    game = Game({"Alice": QUAD})
    game.run("Alice", "rest")
    effects = game.run("Alice", "up")
    assert results_for(effects, "Alice") == ["You can't go that way."]
    assert game.presence("Alice").resting


def test_a_resting_follower_is_interrupted_when_the_leader_moves() -> None:
    game = Game({"Alice": QUAD, "Bob": QUAD})
    game.make_follow("Alice", "Bob")
    game.run("Alice", "rest")
    effects = game.run("Bob", "north")
    assert results_for(effects, "Alice")[:2] == [INTERRUPTED, "You follow Bob north."]
    first_for_alice = next(e for e in emits(effects, "command_response") if pid("Alice") in e.to)
    assert first_for_alice.data["result"] == INTERRUPTED
    assert RestCountdown(pid("Alice"), None) in effects
    assert game.presence("Alice").position == "standing"
    assert game.presence("Bob").position == "standing"


def test_the_inns_are_reachable_both_ways() -> None:
    game = Game({"Alice": SQUARE})
    world = game.world
    assert world.rooms[SQUARE].exits["west"] == BOARDING_HOUSE
    assert world.rooms[BOARDING_HOUSE].exits == {"east": SQUARE}
    wharf = world.rooms[MARINERS_REST].exits["north"]
    assert world.rooms[wharf].exits["south"] == MARINERS_REST
    assert not world.rooms[SQUARE].rest_location
