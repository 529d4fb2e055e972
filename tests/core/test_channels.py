"""Chat channels as pure rules (PROTOCOL.md sections 8 and 9): say, local, global, emote, pose,
whisper, reply and the admin ``system``, driven through ``dispatch`` with explicit clocks.

The world is a tiny one with a precise layout: two zones that both have a subzone named
``docks``, so ``local`` can be shown to stay inside the sender's own zone and subzone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

import mythos_rt.core.commands  # noqa: F401  (registers every command)
from mythos_rt.core.chat import ChatLimiter, audience_here, check_message
from mythos_rt.core.effects import Effect, Emit
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.registry import CommandContext, dispatch
from mythos_rt.core.world import World, parse_world
from tests.core.defaults import CHAT_LIMITS

WALL_NOW = 1795635202.9
TIMESTAMP = "2026-11-25T19:33:22Z"
MAX_CHARS = 1000
RATE_LIMITED = (
    "Error sending message: Rate limit exceeded. Please wait before sending another message."
)

PIER = "arkham_docks_pier"  # zone arkham, subzone docks
WAREHOUSE = "arkham_docks_warehouse"  # zone arkham, subzone docks
QUAD = "arkham_campus_quad"  # zone arkham, subzone campus
INNSMOUTH_PIER = "innsmouth_docks_pier"  # zone innsmouth, subzone docks (same subzone name)


def _room(room_id: str, name: str, zone: str, subzone: str, exits: dict[str, str]) -> dict:
    return {
        "id": room_id,
        "name": name,
        "description": f"The {name.lower()}.",
        "zone": zone,
        "subzone": subzone,
        "exits": exits,
    }


WORLD_JSON = json.dumps(
    {
        "name": "Two docks",
        "start_room": PIER,
        "rooms": [
            _room(PIER, "Pier", "arkham", "docks", {"east": WAREHOUSE, "north": QUAD}),
            _room(WAREHOUSE, "Warehouse", "arkham", "docks", {"west": PIER}),
            _room(QUAD, "Quad", "arkham", "campus", {"south": PIER, "east": INNSMOUTH_PIER}),
            _room(INNSMOUTH_PIER, "Innsmouth Pier", "innsmouth", "docks", {"west": QUAD}),
        ],
    }
)

# name -> (room, linkdead, is_admin); insertion order is arrival order.
CAST: dict[str, tuple[str, bool, bool]] = {
    "Alice": (PIER, False, False),  # the usual sender
    "Bob": (PIER, False, False),  # same room
    "Dora": (PIER, True, False),  # same room, linkdead
    "Carl": (WAREHOUSE, False, False),  # same zone and subzone, another room
    "Eve": (QUAD, False, False),  # same zone, another subzone
    "Finn": (INNSMOUTH_PIER, False, False),  # another zone's subzone of the same name
    "Wyatt": (QUAD, False, True),  # an admin
}


def pid(name: str) -> str:
    return f"p-{name.lower()}"


def everyone_but(name: str) -> set[str]:
    return {pid(other) for other in CAST if other != name}


@pytest.fixture
def world() -> World:
    return parse_world(WORLD_JSON, "test")


@pytest.fixture
def presences() -> Presences:
    table = Presences()
    for name, (room, linkdead, is_admin) in CAST.items():
        table.add(
            Presence(
                player_id=pid(name),
                user_id=f"u-{name.lower()}",
                name=name,
                level=1,
                is_admin=is_admin,
                room_id=room,
                session_id=None,
                ward_until=0.0,
                linkdead=linkdead,
            )
        )
    return table


@pytest.fixture
def limiter() -> ChatLimiter:
    return ChatLimiter(CHAT_LIMITS, 60.0)


def run(
    world: World,
    presences: Presences,
    limiter: ChatLimiter,
    actor: str,
    command: str,
    *args: str,
    now: float = 100.0,
    max_chars: int = MAX_CHARS,
) -> list[Effect]:
    presence = presences.find_by_name(actor)
    assert presence is not None
    ctx = CommandContext(
        world, presences, presence, 3, now, WALL_NOW, limiter, new_id=lambda: "id-1"
    )
    return dispatch(ctx, command, tuple(args), max_chars)


def result_of(effects: Sequence[Effect], actor: str = "Alice") -> str:
    """The one ``command_response`` of the reply, sent to the actor only."""
    replies = [e for e in effects if isinstance(e, Emit) and e.event_type == "command_response"]
    assert len(replies) == 1, effects
    assert replies[0].to == (pid(actor),)
    result = replies[0].data["result"]
    assert isinstance(result, str)
    return result


def chats(effects: Sequence[Effect]) -> list[Emit]:
    return [e for e in effects if isinstance(e, Emit) and e.event_type == "chat_message"]


def only_chat(effects: Sequence[Effect]) -> Emit:
    found = chats(effects)
    assert len(found) == 1, effects
    return found[0]


# --- each channel: echo, payload, envelope and audience ------------------------------------

# (actor, command, args, sender's result, channel, message, audience, envelope room_id)
CHANNEL_CASES = [
    pytest.param(
        "Alice",
        "say",
        ("hello", "there"),
        "You say: hello there",
        "say",
        "Alice says: hello there",
        {pid("Bob"), pid("Dora")},
        PIER,
        id="say",
    ),
    pytest.param(
        "Alice",
        "local",
        ("hello there",),
        "You say locally: hello there",
        "local",
        "Alice (local): hello there",
        {pid("Bob"), pid("Dora"), pid("Carl")},
        PIER,
        id="local",
    ),
    pytest.param(
        "Alice",
        "l",
        ("hello there",),
        "You say locally: hello there",
        "local",
        "Alice (local): hello there",
        {pid("Bob"), pid("Dora"), pid("Carl")},
        PIER,
        id="l",
    ),
    pytest.param(
        "Finn",
        "local",
        ("ahoy",),
        "You say locally: ahoy",
        "local",
        "Finn (local): ahoy",
        set(),  # nobody else is in innsmouth/docks, though arkham/docks is full
        INNSMOUTH_PIER,
        id="local-other-zone-same-subzone-name",
    ),
    pytest.param(
        "Alice",
        "global",
        ("hello there",),
        "You say (global): hello there",
        "global",
        "Alice (global): hello there",
        everyone_but("Alice"),
        None,
        id="global",
    ),
    pytest.param(
        "Alice",
        "g",
        ("hello there",),
        "You say (global): hello there",
        "global",
        "Alice (global): hello there",
        everyone_but("Alice"),
        None,
        id="g",
    ),
    pytest.param(
        "Alice",
        "emote",
        ("waves", "slowly"),
        "Alice waves slowly",
        "emote",
        "Alice waves slowly",
        {pid("Bob"), pid("Dora")},
        PIER,
        id="emote",
    ),
    pytest.param(
        "Alice",
        "me",
        ("waves slowly",),
        "Alice waves slowly",
        "emote",
        "Alice waves slowly",
        {pid("Bob"), pid("Dora")},
        PIER,
        id="me",
    ),
    pytest.param(
        "Alice",
        "pose",
        ("leans", "on", "a", "piling"),
        "Your pose is now: leans on a piling",
        "pose",
        "Alice leans on a piling",
        {pid("Bob"), pid("Dora")},
        PIER,
        id="pose",
    ),
    pytest.param(
        "Wyatt",
        "system",
        ("The", "stars", "are", "right"),
        "You system: The stars are right",
        "system",
        "[SYSTEM] The stars are right",
        everyone_but("Wyatt"),
        None,
        id="system",
    ),
]


@pytest.mark.parametrize(
    ("actor", "command", "args", "echo", "channel", "message", "audience", "room_id"),
    CHANNEL_CASES,
)
def test_channel_echo_payload_and_audience(
    world: World,
    presences: Presences,
    limiter: ChatLimiter,
    actor: str,
    command: str,
    args: tuple[str, ...],
    echo: str,
    channel: str,
    message: str,
    audience: set[str],
    room_id: str | None,
) -> None:
    effects = run(world, presences, limiter, actor, command, *args)

    assert len(effects) == 2
    assert result_of(effects, actor) == echo
    event = only_chat(effects)
    assert dict(event.data) == {
        "sender_id": pid(actor),
        "player_name": actor,
        "channel": channel,
        "message": message,
        "message_id": "id-1",
        "timestamp": TIMESTAMP,
        "original_content": " ".join(args),
    }
    assert event.player_id == pid(actor)
    assert event.room_id == room_id
    assert len(event.to) == len(set(event.to))  # nobody gets it twice
    assert set(event.to) == audience
    assert pid(actor) not in event.to  # the echo is the sender's copy


def test_room_audience_keeps_arrival_order(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    event = only_chat(run(world, presences, limiter, "Bob", "say", "hi"))
    assert event.to == (pid("Alice"), pid("Dora"))


def test_linkdead_players_in_range_are_routed_to(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    dora = presences.find_by_name("Dora")
    assert dora is not None and dora.linkdead
    for command in ("say", "local", "global", "emote", "pose"):
        assert pid("Dora") in only_chat(run(world, presences, limiter, "Alice", command, "x")).to


def test_local_reaches_the_whole_subzone_but_not_another_zones_docks(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    event = only_chat(run(world, presences, limiter, "Carl", "local", "anyone about?"))
    assert set(event.to) == {pid("Alice"), pid("Bob"), pid("Dora")}
    assert pid("Finn") not in event.to  # innsmouth/docks
    assert pid("Eve") not in event.to  # arkham/campus
    assert event.room_id == WAREHOUSE


def test_a_sender_alone_in_the_room_gets_the_echo_and_an_empty_audience(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    effects = run(world, presences, limiter, "Finn", "say", "anyone?")
    assert result_of(effects, "Finn") == "You say: anyone?"
    assert only_chat(effects).to == ()


def test_system_is_admin_only(world: World, presences: Presences, limiter: ChatLimiter) -> None:
    effects = run(world, presences, limiter, "Alice", "system", "I am not an admin")
    assert result_of(effects) == "Unknown command: system. Use 'help' for available commands."
    assert chats(effects) == []


# --- pose ----------------------------------------------------------------------------------


def test_pose_sets_then_clears(world: World, presences: Presences, limiter: ChatLimiter) -> None:
    alice = presences.find_by_name("Alice")
    assert alice is not None
    run(world, presences, limiter, "Alice", "pose", "stares", "at", "the", "sea")
    assert alice.pose == "stares at the sea"

    effects = run(world, presences, limiter, "Alice", "pose")
    assert result_of(effects) == "Your pose has been cleared."
    assert chats(effects) == []
    assert alice.pose is None


@pytest.mark.parametrize("blank", [(), ("",), ("   ",)])
def test_pose_with_blank_text_clears(
    world: World, presences: Presences, limiter: ChatLimiter, blank: tuple[str, ...]
) -> None:
    alice = presences.find_by_name("Alice")
    assert alice is not None
    alice.pose = "old pose"
    effects = run(world, presences, limiter, "Alice", "pose", *blank)
    assert effects == [
        Emit("command_response", {"result": "Your pose has been cleared."}, (pid("Alice"),))
    ]
    assert alice.pose is None


def test_a_refused_pose_leaves_the_old_pose(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    alice = presences.find_by_name("Alice")
    assert alice is not None
    alice.pose = "old pose"
    effects = run(world, presences, limiter, "Alice", "pose", "x" * 501)
    assert result_of(effects).startswith("Error sending message: ")
    assert chats(effects) == []
    assert alice.pose == "old pose"


# --- whisper and reply ---------------------------------------------------------------------


def test_whisper_payload_and_target(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    effects = run(world, presences, limiter, "Alice", "whisper", "bob", "meet", "me", "at", "dawn")
    assert len(effects) == 2
    assert result_of(effects) == "You whisper to Bob: meet me at dawn"
    event = only_chat(effects)
    assert dict(event.data) == {
        "sender_id": pid("Alice"),
        "player_name": "Alice",
        "channel": "whisper",
        "message": "Alice whispers to you: meet me at dawn",
        "message_id": "id-1",
        "timestamp": TIMESTAMP,
        "target_id": pid("Bob"),
        "target_name": "Bob",
        "original_content": "meet me at dawn",
    }
    assert event.to == (pid("Bob"),)
    assert event.player_id == pid("Alice")
    assert event.room_id is None


@pytest.mark.parametrize("name", ["Finn", "finn", "FINN", "fInN"])
def test_whisper_finds_the_target_by_name_in_any_case_and_anywhere(
    world: World, presences: Presences, limiter: ChatLimiter, name: str
) -> None:
    effects = run(world, presences, limiter, "Alice", "whisper", name, "psst")
    assert result_of(effects) == "You whisper to Finn: psst"
    assert only_chat(effects).to == (pid("Finn"),)


def test_whisper_reaches_a_linkdead_player(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    effects = run(world, presences, limiter, "Alice", "whisper", "Dora", "are you there?")
    assert result_of(effects) == "You whisper to Dora: are you there?"
    assert only_chat(effects).to == (pid("Dora"),)


@pytest.mark.parametrize("name", ["Alice", "alice", "ALICE"])
def test_whisper_to_yourself(
    world: World, presences: Presences, limiter: ChatLimiter, name: str
) -> None:
    effects = run(world, presences, limiter, "Alice", "whisper", name, "hello me")
    assert result_of(effects) == "You cannot whisper to yourself"
    assert chats(effects) == []


def test_whisper_to_an_unknown_name(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    effects = run(world, presences, limiter, "Alice", "whisper", "Nyarlathotep", "hello")
    assert effects == [
        Emit("command_response", {"result": "You whisper into the aether."}, (pid("Alice"),))
    ]


def test_whisper_to_a_player_who_went_offline(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    assert presences.remove(pid("Bob")) is not None
    effects = run(world, presences, limiter, "Alice", "whisper", "Bob", "hello")
    assert result_of(effects) == "You whisper into the aether."
    assert chats(effects) == []


def test_reply_with_no_previous_whisperer(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    effects = run(world, presences, limiter, "Alice", "reply", "hello?")
    assert effects == [
        Emit(
            "command_response",
            {"result": "No one has whispered to you recently."},
            (pid("Alice"),),
        )
    ]


def test_reply_goes_to_the_last_whisperer(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    run(world, presences, limiter, "Carl", "whisper", "Bob", "first")
    run(world, presences, limiter, "Alice", "whisper", "Bob", "second")

    effects = run(world, presences, limiter, "Bob", "reply", "got", "it")
    assert result_of(effects, "Bob") == "You whisper to Alice: got it"
    event = only_chat(effects)
    assert event.to == (pid("Alice"),)
    assert event.data["channel"] == "whisper"
    assert event.data["message"] == "Bob whispers to you: got it"
    assert event.data["target_id"] == pid("Alice")
    assert event.data["target_name"] == "Alice"
    assert event.data["original_content"] == "got it"

    # ...and the reply made Bob Alice's last whisperer, so she can answer back.
    back = run(world, presences, limiter, "Alice", "reply", "good")
    assert result_of(back) == "You whisper to Bob: good"
    assert only_chat(back).to == (pid("Bob"),)


def test_a_failed_whisper_does_not_set_the_last_whisperer(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    run(world, presences, limiter, "Alice", "whisper", "Bob", "   ")
    effects = run(world, presences, limiter, "Bob", "reply", "what?")
    assert result_of(effects, "Bob") == "No one has whispered to you recently."


def test_reply_after_the_whisperer_left(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    run(world, presences, limiter, "Alice", "whisper", "Bob", "bye")
    presences.remove(pid("Alice"))
    effects = run(world, presences, limiter, "Bob", "reply", "wait")
    assert result_of(effects, "Bob") == "You whisper into the aether."
    assert chats(effects) == []


# --- message checks: length at the boundary, emptiness, trimming ---------------------------

# (actor, command words before the message, limit)
LENGTH_CASES = [
    pytest.param("Alice", ("say",), 500, id="say"),
    pytest.param("Alice", ("local",), 500, id="local"),
    pytest.param("Alice", ("l",), 500, id="l"),
    pytest.param("Alice", ("emote",), 200, id="emote"),
    pytest.param("Alice", ("me",), 200, id="me"),
    pytest.param("Alice", ("pose",), 500, id="pose"),
    pytest.param("Alice", ("whisper", "Bob"), 500, id="whisper"),
    pytest.param("Wyatt", ("system",), 500, id="system"),
]


@pytest.mark.parametrize(("actor", "words", "limit"), LENGTH_CASES)
def test_length_limit_at_the_boundary(
    world: World,
    presences: Presences,
    limiter: ChatLimiter,
    actor: str,
    words: tuple[str, ...],
    limit: int,
) -> None:
    command, *head = words
    fits = run(world, presences, limiter, actor, command, *head, "x" * limit)
    assert len(chats(fits)) == 1
    assert only_chat(fits).data["original_content"] == "x" * limit

    too_long = run(world, presences, limiter, actor, command, *head, "x" * (limit + 1))
    assert result_of(too_long, actor).startswith("Error sending message: ")
    assert chats(too_long) == []


@pytest.mark.parametrize("command", ["say", "local", "emote", "pose", "whisper"])
def test_length_counts_after_trimming(
    world: World, presences: Presences, limiter: ChatLimiter, command: str
) -> None:
    head = ("Bob",) if command == "whisper" else ()
    limit = 200 if command == "emote" else 500
    effects = run(world, presences, limiter, "Alice", command, *head, "  " + "y" * limit + "\n ")
    assert only_chat(effects).data["original_content"] == "y" * limit


def test_global_length_limit_at_the_boundary(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    # A command-line cap large enough that only the channel's own limit is in play.
    fits = run(world, presences, limiter, "Alice", "global", "x" * 1000, max_chars=2000)
    assert result_of(fits) == "You say (global): " + "x" * 1000
    too_long = run(world, presences, limiter, "Alice", "global", "x" * 1001, max_chars=2000)
    assert result_of(too_long).startswith("Error sending message: ")
    assert chats(too_long) == []


def test_channel_limits_of_the_checker() -> None:
    assert check_message("global", "x" * 1000) is None
    assert check_message("global", "x" * 1001) is not None
    assert check_message("say", "x" * 500) is None
    assert check_message("say", "x" * 501) is not None
    assert check_message("emote", "x" * 200) is None
    assert check_message("emote", "x" * 201) is not None


# (actor, command words before the message)
EMPTY_CASES = [
    pytest.param("Alice", ("say",), id="say"),
    pytest.param("Alice", ("local",), id="local"),
    pytest.param("Alice", ("l",), id="l"),
    pytest.param("Alice", ("global",), id="global"),
    pytest.param("Alice", ("g",), id="g"),
    pytest.param("Alice", ("emote",), id="emote"),
    pytest.param("Alice", ("me",), id="me"),
    pytest.param("Wyatt", ("system",), id="system"),
]


@pytest.mark.parametrize(("actor", "words"), EMPTY_CASES)
@pytest.mark.parametrize("blank", [(), ("",), ("   ",), ("\t", "\n")])
def test_empty_or_whitespace_only_is_refused(
    world: World,
    presences: Presences,
    limiter: ChatLimiter,
    actor: str,
    words: tuple[str, ...],
    blank: tuple[str, ...],
) -> None:
    command, *head = words
    effects = run(world, presences, limiter, actor, command, *head, *blank)
    assert len(effects) == 1
    assert result_of(effects, actor).startswith("Error sending message: ")


@pytest.mark.parametrize("blank", [(), ("  ",), ("\t", "\n")])
def test_reply_with_an_empty_message_is_the_usage(
    world: World, presences: Presences, limiter: ChatLimiter, blank: tuple[str, ...]
) -> None:
    run(world, presences, limiter, "Alice", "whisper", "Bob", "hi")
    effects = run(world, presences, limiter, "Bob", "reply", *blank)
    assert effects == [
        Emit("command_response", {"result": "Say what? Usage: reply <message>"}, (pid("Bob"),))
    ]


@pytest.mark.parametrize(
    "args",
    [(), ("Bob",), ("Bob", "  "), ("Bob", "\t", "\n"), ("Nobody",), ("Alice",)],
)
def test_whisper_without_a_message_is_the_usage(
    world: World, presences: Presences, limiter: ChatLimiter, args: tuple[str, ...]
) -> None:
    """v1.1 section 9, exactly; before the name is looked up (offline or oneself alike)."""
    effects = run(world, presences, limiter, "Alice", "whisper", *args)
    usage = "Say what? Usage: whisper <player> <message>"
    assert effects == [Emit("command_response", {"result": usage}, (pid("Alice"),))]


def test_message_is_trimmed(world: World, presences: Presences, limiter: ChatLimiter) -> None:
    effects = run(world, presences, limiter, "Alice", "say", "   hello there  ")
    assert result_of(effects) == "You say: hello there"
    event = only_chat(effects)
    assert event.data["message"] == "Alice says: hello there"
    assert event.data["original_content"] == "hello there"


# --- per-channel rate limits ---------------------------------------------------------------

# (command words before the message, limit)
RATE_CASES = [
    pytest.param(("say",), 15, id="say"),
    pytest.param(("local",), 20, id="local"),
    pytest.param(("global",), 10, id="global"),
    pytest.param(("emote",), 15, id="emote"),
    pytest.param(("pose",), 15, id="pose"),
    pytest.param(("whisper", "Bob"), 5, id="whisper"),
]


@pytest.mark.parametrize(("words", "limit"), RATE_CASES)
def test_channel_rate_limit(
    world: World,
    presences: Presences,
    limiter: ChatLimiter,
    words: tuple[str, ...],
    limit: int,
) -> None:
    command, *head = words
    for i in range(limit):
        sent = run(world, presences, limiter, "Alice", command, *head, f"m{i}", now=100.0 + i)
        assert len(chats(sent)) == 1, i
    refused = run(world, presences, limiter, "Alice", command, *head, "one more", now=130.0)
    assert refused == [Emit("command_response", {"result": RATE_LIMITED}, (pid("Alice"),))]


def test_whisper_rate_limit_window(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    def whisper(actor: str, target: str, now: float) -> list[Effect]:
        return run(world, presences, limiter, actor, "whisper", target, "psst", now=now)

    for i in range(5):
        assert len(chats(whisper("Alice", "Bob", 100.0 + i))) == 1

    assert result_of(whisper("Alice", "Bob", 110.0)) == RATE_LIMITED
    assert result_of(whisper("Alice", "Carl", 110.0)) == RATE_LIMITED  # per sender, not per target
    assert result_of(whisper("Alice", "Bob", 159.9)) == RATE_LIMITED

    # Other channels of the same player and other players' whispers are unaffected.
    for command in ("say", "local", "global", "emote", "pose"):
        effects = run(world, presences, limiter, "Alice", command, "still here", now=110.0)
        assert len(chats(effects)) == 1, command
    assert len(chats(whisper("Bob", "Alice", 110.0))) == 1

    # The first whisper (t=100) leaves the 60 s window at t=160: one more is allowed.
    assert result_of(whisper("Alice", "Bob", 160.0)) == "You whisper to Bob: psst"
    assert result_of(whisper("Alice", "Bob", 160.5)) == RATE_LIMITED
    assert result_of(whisper("Alice", "Bob", 161.0)) == "You whisper to Bob: psst"


def test_reply_shares_the_whisper_limit(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    run(world, presences, limiter, "Bob", "whisper", "Alice", "hi")
    for i in range(5):
        run(world, presences, limiter, "Alice", "whisper", "Carl", "x", now=100.0 + i)
    effects = run(world, presences, limiter, "Alice", "reply", "hello", now=110.0)
    assert result_of(effects) == RATE_LIMITED
    assert chats(effects) == []


def test_aliases_share_their_channel_limit(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    for i in range(15):
        command = "emote" if i % 2 else "me"
        assert len(chats(run(world, presences, limiter, "Alice", command, "nods", now=100.0 + i)))
    assert result_of(run(world, presences, limiter, "Alice", "me", "nods", now=120.0)) == (
        RATE_LIMITED
    )


def test_a_rate_limited_pose_is_not_set(
    world: World, presences: Presences, limiter: ChatLimiter
) -> None:
    alice = presences.find_by_name("Alice")
    assert alice is not None
    for i in range(15):
        run(world, presences, limiter, "Alice", "pose", f"pose {i}", now=100.0)
    assert alice.pose == "pose 14"
    assert result_of(run(world, presences, limiter, "Alice", "pose", "new", now=101.0)) == (
        RATE_LIMITED
    )
    assert alice.pose == "pose 14"


# --- lines from the bus: who, of the players held here, hears them --------------------------


@pytest.mark.parametrize(
    ("channel", "scope", "heard"),
    [
        pytest.param("say", (PIER, None, None), {"Bob", "Dora"}, id="say-room"),
        pytest.param("emote", (WAREHOUSE, None, None), {"Carl"}, id="emote-room"),
        pytest.param("local", (PIER, "docks", None), {"Bob", "Dora", "Carl"}, id="local-room"),
        pytest.param(
            "local", (None, "docks", None), {"Bob", "Dora", "Carl", "Finn"}, id="local-by-name"
        ),
        pytest.param("whisper", (None, None, "p-eve"), {"Eve"}, id="whisper"),
        pytest.param("global", (None, None, None), set(CAST) - {"Alice"}, id="global"),
        pytest.param("party", (None, None, None), set(), id="party-never-by-scope"),
    ],
)
def test_a_line_from_the_bus_reaches_the_players_held_here_in_its_scope(
    world: World,
    presences: Presences,
    channel: str,
    scope: tuple[str | None, str | None, str | None],
    heard: set[str],
) -> None:
    replica = presences.get(pid("Bob"))
    assert replica is not None
    replica.instance_id = "elsewhere"  # Bob is held by another instance: not ours to deliver
    expected = {pid(name) for name in heard - {"Bob"}}
    assert set(audience_here(presences, world, channel, scope, pid("Alice"))) == expected
