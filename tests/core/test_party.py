"""Parties as pure rules (PROTOCOL.md section 11): invite, the invite response, list, leave,
kick, party chat and the ``party_update`` a member gets on every change.

The builders (:class:`Game` and friends) come from ``test_social.py``.
"""

from __future__ import annotations

import pytest

from mythos_rt.core.effects import Emit
from mythos_rt.core.social import Party, Request, leave_party
from tests.core.test_social import (
    BAD_INVITE,
    EXPIRED_INVITE,
    INVITE_SENT,
    NOW,
    TIMESTAMP,
    TTL,
    Game,
    chat_recipients,
    ids,
    party_payload,
    pid,
    received_by,
    references,
    say_to,
    uid,
)

NOT_IN_PARTY = "You are not in a party."


def update(party_id: str, leader: str, members: list[str], change: str, *to: str) -> Emit:
    return Emit("party_update", party_payload(party_id, leader, members, change), ids(*to))


# --- invite --------------------------------------------------------------------------------


def test_first_invite_creates_the_party() -> None:
    game = Game()
    effects = game.run("Alice", "party", "invite", "bob")
    assert effects == [
        update(uid(1), "Alice", ["Alice"], "created", "Alice"),
        say_to("Alice", INVITE_SENT),
        Emit(
            "party_invite",
            {"invite_id": uid(2), "inviter_name": "Alice", "inviter_id": pid("Alice")},
            ids("Bob"),
            player_id=pid("Alice"),
        ),
    ]
    assert game.social.parties == {uid(1): Party(uid(1), pid("Alice"), [pid("Alice")])}
    assert game.social.party_of == {pid("Alice"): uid(1)}
    assert game.social.requests == {
        uid(2): Request(uid(2), "party", pid("Alice"), pid("Bob"), NOW + TTL, uid(1))
    }


def test_a_leaders_next_invite_reuses_the_party() -> None:
    game = Game()
    game.invite("Alice", "Bob")
    effects = game.run("Alice", "party", "invite", "Carl")
    assert effects == [
        say_to("Alice", INVITE_SENT),
        Emit(
            "party_invite",
            {"invite_id": uid(3), "inviter_name": "Alice", "inviter_id": pid("Alice")},
            ids("Carl"),
            player_id=pid("Alice"),
        ),
    ]
    assert list(game.social.parties) == [uid(1)]
    assert game.social.requests[uid(3)].party_id == uid(1)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        pytest.param(("invite",), "Usage: party invite <player_name>", id="no-name"),
        pytest.param(("invite", "Bob", "Carl"), "Usage: party invite <player_name>", id="two"),
        pytest.param(("invite", "Nobody"), "Player 'Nobody' not found.", id="unknown"),
        pytest.param(("invite", "Olive"), "Player 'Olive' not found.", id="offline"),
        pytest.param(("invite", "alice"), "You cannot invite yourself.", id="self"),
    ],
)
def test_invite_refusals_create_nothing(args: tuple[str, ...], text: str) -> None:
    game = Game()
    assert game.run("Alice", "party", *args) == [say_to("Alice", text)]
    assert game.social.parties == {} and game.social.party_of == {}
    assert game.social.requests == {}


def test_only_the_leader_can_invite() -> None:
    game = Game()
    game.make_party("Alice", "Bob")
    assert game.run("Bob", "party", "invite", "Carl") == [
        say_to("Bob", "Only the party leader can invite.")
    ]
    assert game.social.requests == {}


def test_cannot_invite_someone_already_in_a_party() -> None:
    game = Game()
    game.make_party("Alice", "Bob")
    assert game.run("Carl", "party", "invite", "Bob") == [
        say_to("Carl", "Bob is already in a party.")
    ]
    assert game.run("Carl", "party", "invite", "Alice") == [
        say_to("Carl", "Alice is already in a party.")
    ]
    assert game.social.party_for(pid("Carl")) is None  # no party was created for Carl
    assert game.run("Alice", "party", "invite", "Bob") == [
        say_to("Alice", "Bob is already in a party.")
    ]


# --- the invite response --------------------------------------------------------------------


def test_accept() -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    effects = game.answer_invite("Bob", invite_id, True)
    assert effects == [
        say_to("Bob", "You have joined Alice's party."),
        say_to("Alice", "Bob has joined your party."),
        update(uid(1), "Alice", ["Alice", "Bob"], "joined", "Alice", "Bob"),
    ]
    assert game.social.parties == {uid(1): Party(uid(1), pid("Alice"), [pid("Alice"), pid("Bob")])}
    assert game.social.party_of == {pid("Alice"): uid(1), pid("Bob"): uid(1)}
    assert game.social.requests == {}
    assert game.answer_invite("Bob", invite_id, True) == [say_to("Bob", EXPIRED_INVITE)]


def test_third_member_joins_and_everyone_hears() -> None:
    game = Game()
    game.make_party("Alice", "Bob")
    invite_id = game.invite("Alice", "Carl")
    effects = game.answer_invite("Carl", invite_id, True)
    assert effects == [
        say_to("Carl", "You have joined Alice's party."),
        say_to("Alice", "Carl has joined your party."),
        say_to("Bob", "Carl has joined your party."),
        update(uid(1), "Alice", ["Alice", "Bob", "Carl"], "joined", "Alice", "Bob", "Carl"),
    ]


def test_decline() -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    effects = game.answer_invite("Bob", invite_id, False)
    assert effects == [
        say_to("Bob", "You declined the party invite."),
        say_to("Alice", "Bob declined your party invite."),
    ]
    assert game.social.requests == {}
    assert game.social.party_for(pid("Bob")) is None
    assert game.social.parties[uid(1)].members == [pid("Alice")]


@pytest.mark.parametrize("invite_id", ["", "nope", "42", "g" * 32])
@pytest.mark.parametrize("accept", [True, False])
def test_malformed_invite_id(invite_id: str, accept: bool) -> None:
    game = Game()
    game.invite("Alice", "Bob")
    assert game.answer_invite("Bob", invite_id, accept) == [say_to("Bob", BAD_INVITE)]
    assert len(game.social.requests) == 1


@pytest.mark.parametrize("accept", [True, False])
def test_unknown_foreign_or_wrong_kind_invite(accept: bool) -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    follow_id = game.request_follow("Carl", "Bob")
    assert game.answer_invite("Bob", uid(999), accept) == [say_to("Bob", EXPIRED_INVITE)]
    assert game.answer_invite("Carl", invite_id, accept) == [say_to("Carl", EXPIRED_INVITE)]
    assert game.answer_invite("Alice", invite_id, accept) == [say_to("Alice", EXPIRED_INVITE)]
    assert game.answer_invite("Bob", follow_id, accept) == [say_to("Bob", EXPIRED_INVITE)]
    assert set(game.social.requests) == {invite_id, follow_id}
    assert game.social.party_for(pid("Bob")) is None


@pytest.mark.parametrize(
    ("offset", "valid"),
    [
        pytest.param(59.999, True, id="just-before"),
        pytest.param(60.0, False, id="exactly-at-expiry"),
        pytest.param(3600.0, False, id="long-after"),
    ],
)
@pytest.mark.parametrize("accept", [True, False])
def test_invite_expires(offset: float, valid: bool, accept: bool) -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    assert game.social.requests[invite_id].expires_at == NOW + 60.0
    game.now = NOW + offset
    effects = game.answer_invite("Bob", invite_id, accept)
    if valid:
        assert effects[0] != say_to("Bob", EXPIRED_INVITE)
        assert (game.social.party_for(pid("Bob")) is not None) is accept
    else:
        assert effects == [say_to("Bob", EXPIRED_INVITE)]
        assert game.social.party_for(pid("Bob")) is None
    assert game.social.requests == {}


def test_invite_to_a_party_that_was_disbanded() -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    game.run("Alice", "party", "leave")
    assert game.answer_invite("Bob", invite_id, True) == [say_to("Bob", EXPIRED_INVITE)]
    assert game.social.parties == {} and game.social.party_of == {}


def test_accepting_a_second_invite_while_in_a_party() -> None:
    game = Game()
    from_alice = game.invite("Alice", "Bob")
    from_carl = game.invite("Carl", "Bob")
    game.answer_invite("Bob", from_alice, True)
    assert game.answer_invite("Bob", from_carl, True) == [
        say_to("Bob", "You are already in a party.")
    ]
    assert game.social.party_for(pid("Bob")) == game.social.party_for(pid("Alice"))
    assert game.social.party_for(pid("Carl")) is not None
    assert game.social.party_for(pid("Carl")).members == [pid("Carl")]  # type: ignore[union-attr]


# --- list ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("list",), ("LIST",)])
def test_list(args: tuple[str, ...]) -> None:
    game = Game()
    assert game.run("Alice", "party", *args) == [say_to("Alice", NOT_IN_PARTY)]
    game.make_party("Alice", "Bob", "Carl")
    for member in ("Alice", "Bob", "Carl"):
        assert game.run(member, "party", *args) == [
            say_to(member, "Party (leader: Alice): Alice, Bob, Carl")
        ]
    assert game.run("Dora", "party", *args) == [say_to("Dora", NOT_IN_PARTY)]


# --- leave ---------------------------------------------------------------------------------


def test_member_leaves() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob", "Carl")
    effects = game.run("Bob", "party", "leave")
    assert effects == [
        say_to("Bob", "You left the party."),
        update(party_id, "Alice", ["Alice", "Carl"], "left", "Alice", "Bob", "Carl"),
    ]
    assert game.social.parties[party_id].members == [pid("Alice"), pid("Carl")]
    assert game.social.party_of == {pid("Alice"): party_id, pid("Carl"): party_id}
    assert references(game.social, pid("Bob")) == []
    assert game.run("Bob", "party", "leave") == [say_to("Bob", NOT_IN_PARTY)]


def test_leader_leaving_disbands_the_party() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob", "Carl")
    effects = game.run("Alice", "party", "leave")
    assert effects == [
        say_to("Alice", "You left the party."),
        update(party_id, "Alice", ["Alice", "Bob", "Carl"], "disbanded", "Alice", "Bob", "Carl"),
        say_to("Bob", "The party has been disbanded."),
        say_to("Carl", "The party has been disbanded."),
    ]
    assert game.social.parties == {} and game.social.party_of == {}
    for member in ("Alice", "Bob", "Carl"):
        assert game.run(member, "party") == [say_to(member, NOT_IN_PARTY)]


def test_last_member_leaving_keeps_the_leader_alone() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob")
    game.run("Bob", "party", "leave")
    assert game.run("Alice", "party", "list") == [say_to("Alice", "Party (leader: Alice): Alice")]
    effects = game.run("Alice", "party", "leave")
    assert effects == [
        say_to("Alice", "You left the party."),
        update(party_id, "Alice", ["Alice"], "disbanded", "Alice"),
    ]
    assert game.social.parties == {}


def test_leave_party_outside_a_party_is_empty() -> None:
    game = Game()
    assert leave_party(game.social, game.presences, pid("Alice")) == []


# --- kick ----------------------------------------------------------------------------------


def test_kick() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob", "Carl")
    effects = game.run("Alice", "party", "kick", "bob")
    assert effects == [
        say_to("Alice", "You kicked Bob from the party."),
        say_to("Bob", "You have been kicked from the party."),
        update(party_id, "Alice", ["Alice", "Carl"], "kicked", "Alice", "Bob", "Carl"),
    ]
    assert game.social.parties[party_id].members == [pid("Alice"), pid("Carl")]
    assert references(game.social, pid("Bob")) == []
    # Bob can be invited again afterwards.
    game.answer_invite("Bob", game.invite("Alice", "Bob"), True)
    assert game.social.parties[party_id].members == [pid("Alice"), pid("Carl"), pid("Bob")]


@pytest.mark.parametrize(
    ("actor", "args", "text"),
    [
        pytest.param("Bob", ("kick", "Carl"), "Only the party leader can kick.", id="member"),
        pytest.param("Dora", ("kick", "Bob"), NOT_IN_PARTY, id="outsider"),
        pytest.param("Alice", ("kick",), "Usage: party kick <player_name>", id="no-name"),
        pytest.param("Alice", ("kick", "B", "C"), "Usage: party kick <player_name>", id="two"),
        pytest.param("Alice", ("kick", "Dora"), "Dora is not in your party.", id="non-member"),
        pytest.param("Alice", ("kick", "Nobody"), "Nobody is not in your party.", id="unknown"),
        pytest.param(
            "Alice",
            ("kick", "Alice"),
            "You cannot kick yourself. Use party leave.",
            id="self",
        ),
    ],
)
def test_kick_refusals(actor: str, args: tuple[str, ...], text: str) -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob", "Carl")
    assert game.run(actor, "party", *args) == [say_to(actor, text)]
    assert game.social.parties[party_id].members == [pid("Alice"), pid("Bob"), pid("Carl")]


# --- party chat ----------------------------------------------------------------------------


def test_party_chat_reaches_every_member_including_the_sender() -> None:
    game = Game()
    game.make_party("Alice", "Bob", "Carl")
    effects = game.run("Bob", "party", "hold", "the", "line")
    assert effects == [
        say_to("Bob", "Sent."),
        Emit(
            "chat_message",
            {
                "sender_id": pid("Bob"),
                "player_name": "Bob",
                "channel": "party",
                "message": "Bob (party): hold the line",
                "message_id": uid(4),  # after party 1 and invites 2 and 3
                "timestamp": TIMESTAMP,
                "original_content": "hold the line",
            },
            ids("Alice", "Bob", "Carl"),
            player_id=pid("Bob"),
        ),
    ]
    assert received_by(effects, "Dora") == [] and received_by(effects, "Wyatt") == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("list", "of", "things"), id="starts-with-list"),
        pytest.param(("leave", "now"), id="starts-with-leave"),
        pytest.param(("hello",), id="one-word"),
    ],
)
def test_party_words_that_are_not_subcommands_are_chat(args: tuple[str, ...]) -> None:
    game = Game()
    game.make_party("Alice", "Bob")
    effects = game.run("Alice", "party", *args)
    assert effects[0] == say_to("Alice", "Sent.")
    assert chat_recipients(effects) == set(ids("Alice", "Bob"))
    assert game.social.party_for(pid("Alice")) is not None  # "leave now" did not leave


def test_party_chat_outside_a_party() -> None:
    game = Game()
    assert game.run("Alice", "party", "hello") == [say_to("Alice", NOT_IN_PARTY)]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        pytest.param(("   ",), "Error sending message: Message cannot be empty", id="blank"),
        pytest.param(
            ("x" * 501,),
            "Error sending message: Message too long (max 500 characters)",
            id="too-long",
        ),
    ],
)
def test_party_chat_checks_the_message(args: tuple[str, ...], text: str) -> None:
    game = Game()
    game.make_party("Alice", "Bob")
    assert game.run("Alice", "party", *args) == [say_to("Alice", text)]


def test_party_chat_rate_limit() -> None:
    game = Game()
    game.make_party("Alice", "Bob")
    for _ in range(30):
        assert game.run("Alice", "party", "hi")[0] == say_to("Alice", "Sent.")
    assert game.run("Alice", "party", "hi") == [
        say_to(
            "Alice",
            "Error sending message: Rate limit exceeded. Please wait before sending another "
            "message.",
        )
    ]


def test_party_chat_after_leaving_reaches_only_the_remaining_members() -> None:
    game = Game()
    game.make_party("Alice", "Bob", "Carl")
    game.run("Carl", "party", "leave")
    assert chat_recipients(game.run("Alice", "party", "hi")) == set(ids("Alice", "Bob"))
    assert game.run("Carl", "party", "hi") == [say_to("Carl", NOT_IN_PARTY)]
