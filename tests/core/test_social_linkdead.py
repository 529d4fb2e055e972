"""Requests need someone who can answer them now: a linkdead player gets none (section 11).

A linkdead player's pending requests are cancelled when their last socket closes; new ones
would only sit until grace expiry, so follow and party invite treat them as not found.  A
linkdead party member can still be kicked.
"""

from __future__ import annotations

import pytest

from tests.core.test_social import Game, ids, pid, say_to


@pytest.mark.parametrize(
    ("command", "args"),
    [("follow", ("Bob",)), ("party", ("invite", "Bob"))],
)
def test_requests_to_a_linkdead_player_are_refused(command: str, args: tuple[str, ...]) -> None:
    game = Game(linkdead=["Bob"])
    assert game.run("Alice", command, *args) == [say_to("Alice", "Player 'Bob' not found.")]
    assert game.social.requests == {}


def test_a_linkdead_member_can_be_kicked() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob")
    game.presence("Bob").linkdead = True
    effects = game.run("Alice", "party", "kick", "Bob")
    assert effects[0] == say_to("Alice", "You kicked Bob from the party.")
    assert pid("Bob") not in game.social.parties[party_id].members
    assert game.social.parties[party_id].members == list(ids("Alice"))
