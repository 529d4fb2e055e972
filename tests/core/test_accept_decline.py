"""accept, decline and requests: follow and party answered from any text client (section 11).

The commands must reach the same rules as the ``follow_response`` / ``party_invite_response``
frames, so most cases compare the command's effects with the frame function's on a twin game.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mythos_rt.core.effects import Effect
from tests.core.test_social import Game, pid, results_for, say_to

NO_REQUESTS = "You have no pending requests."


def pending_game() -> tuple[Game, list[tuple[str, str]]]:
    """Alice has two requests: Bob asks to follow her, then (5 s later) Carl invites her."""
    game = Game()
    follow_id = game.request_follow("Bob", "Alice")
    game.now += 5
    invite_id = game.invite("Carl", "Alice")
    return game, [("follow", follow_id), ("party", invite_id)]


def frame_answer(game: Game, kind: str, request_id: str, accept: bool) -> list[Effect]:
    """What the follow_response / party_invite_response frame does with the same request."""
    if kind == "follow":
        return game.answer_follow("Alice", request_id, accept)
    return game.answer_invite("Alice", request_id, accept)


@pytest.mark.parametrize(
    ("command", "args", "request_index", "accept"),
    [
        ("accept", (), 1, True),  # no number: the newest
        ("decline", (), 1, False),
        ("accept", ("1",), 0, True),
        ("accept", ("2",), 1, True),
        ("decline", ("1",), 0, False),
        ("decline", ("2",), 1, False),
        ("ACCEPT", ("01",), 0, True),
    ],
)
def test_accept_and_decline_do_exactly_what_the_frames_do(
    command: str, args: tuple[str, ...], request_index: int, accept: bool
) -> None:
    by_command, requests = pending_game()
    by_frame, _ = pending_game()
    kind, request_id = requests[request_index]
    assert by_command.run("Alice", command, *args) == frame_answer(
        by_frame, kind, request_id, accept
    )
    assert by_command.social.following == by_frame.social.following
    assert by_command.social.party_of == by_frame.social.party_of
    assert list(by_command.social.requests) == list(by_frame.social.requests)


def test_accept_without_a_number_then_again_answers_newest_then_the_rest() -> None:
    game, _ = pending_game()
    assert results_for(game.run("Alice", "accept"), "Alice") == ["You have joined Carl's party."]
    assert results_for(game.run("Alice", "accept"), "Alice") == [
        "You are now being followed by Bob."
    ]
    assert game.social.following == {pid("Bob"): pid("Alice")}
    assert game.run("Alice", "accept") == [say_to("Alice", NO_REQUESTS)]


def test_requests_lists_them_numbered_oldest_first_with_time_left() -> None:
    game, _ = pending_game()
    game.now += 10
    assert game.run("Alice", "requests") == [
        say_to(
            "Alice",
            "Pending requests:\n"
            "1. Bob asks to follow you (45 s left).\n"
            "2. Carl invites you to their party (50 s left).\n"
            "Answer with 'accept <number>' or 'decline <number>'.",
        )
    ]


@pytest.mark.parametrize(
    ("actor", "command", "args", "text"),
    [
        ("Dora", "requests", (), NO_REQUESTS),  # nothing addressed to her
        ("Dora", "accept", (), NO_REQUESTS),
        ("Dora", "decline", ("1",), NO_REQUESTS),
        ("Bob", "accept", (), NO_REQUESTS),  # a request you sent is not yours to answer
        (
            "Alice",
            "accept",
            ("3",),
            "There is no request 3: you have 2 requests. Type 'requests' to list them.",
        ),
        ("Alice", "decline", ("0",), "Usage: decline [number]"),
        ("Alice", "accept", ("-1",), "Usage: accept [number]"),
        ("Alice", "accept", ("first",), "Usage: accept [number]"),
        ("Alice", "accept", ("²",), "Usage: accept [number]"),
        ("Alice", "accept", ("1", "2"), "Usage: accept [number]"),
    ],
)
def test_bad_numbers_and_nothing_pending_get_a_clear_reply_and_change_nothing(
    actor: str, command: str, args: tuple[str, ...], text: str
) -> None:
    game, _ = pending_game()
    before = dict(game.social.requests)
    assert game.run(actor, command, *args) == [say_to(actor, text)]
    assert game.social.requests == before
    assert game.social.following == {}


def test_one_pending_request_is_named_in_the_bad_number_reply() -> None:
    game = Game()
    game.request_follow("Bob", "Alice")
    assert game.run("Alice", "decline", "2") == [
        say_to(
            "Alice", "There is no request 2: you have one request. Type 'requests' to list them."
        )
    ]


def expire(game: Game) -> None:
    game.now += 61


def sender_leaves(game: Game) -> None:
    game.presences.remove(pid("Bob"))


def sender_quits_the_party(game: Game) -> None:
    # Carl's party goes; his invite is left in the table until the hub's teardown clears it.
    game.run("Carl", "party", "leave")


@pytest.mark.parametrize(
    ("change", "still_listed"),
    [
        (expire, []),
        (sender_leaves, ["1. Carl invites you to their party"]),
        (sender_quits_the_party, ["1. Bob asks to follow you"]),
    ],
)
def test_requests_that_can_no_longer_be_answered_are_not_listed(
    change: Callable[[Game], None], still_listed: list[str]
) -> None:
    game, _ = pending_game()
    change(game)
    [response] = results_for(game.run("Alice", "requests"), "Alice")
    assert isinstance(response, str)
    if not still_listed:
        assert response == NO_REQUESTS
        return
    listed = [line.split(" (")[0] for line in response.splitlines()[1:-1]]
    assert listed == still_listed


@pytest.mark.parametrize("command", ["accept", "decline", "requests"])
def test_help_explains_the_new_commands(command: str) -> None:
    [response] = results_for(Game().run("Alice", "help", command), "Alice")
    assert isinstance(response, str) and response.startswith(command)
    assert "No help" not in response
