"""Command normalisation and the informational and session commands (PROTOCOL.md section 9):
lower-casing, the leading ``/``, whole lines, the length cap, control characters, empty and
unknown commands; look, who, whoami, help, time, quit and logout."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import mythos_rt.core.commands  # noqa: F401  (registers every command)
from mythos_rt.core.chat import ChatLimiter
from mythos_rt.core.effects import Disconnect, Effect, Emit
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.registry import REGISTRY, CommandContext, dispatch, normalize
from mythos_rt.core.world import World
from mythos_rt.world import load_world
from tests.core.defaults import CHAT_LIMITS

NOW = 100.0
WALL_NOW = 1795635202.9
SOCKET_ID = 7

QUAD = "earth_arkhamcity_campus_quad"
WEST_STREET = "earth_arkhamcity_frenchhill_west_street"
COAST_ROAD = "earth_innsmouth_outskirts_coast_road"
GILMAN_ROOM = "earth_innsmouth_towncenter_gilman_house_room"

UNKNOWN = "Unknown command: {}. Use 'help' for available commands."

# name -> (room, level, linkdead, ward_until, is_admin)
CAST: dict[str, tuple[str, int, bool, float, bool]] = {
    "Alice": (QUAD, 3, False, 0.0, False),
    "Bob": (QUAD, 5, False, 0.0, False),
    "Dora": (QUAD, 2, True, 0.0, False),
    "Eve": (QUAD, 4, False, NOW + 5.0, False),  # just logged in: warded
    "Carl": (WEST_STREET, 1, False, 0.0, False),
    "Finn": (COAST_ROAD, 1, False, 0.0, False),
    "Wyatt": (GILMAN_ROOM, 9, False, 0.0, True),
}

WHO_ENTRIES = {
    "Alice": "Alice [3] - Arkham: Miskatonic University: Miskatonic Quadrangle",
    "Bob": "Bob [5] - Arkham: Miskatonic University: Miskatonic Quadrangle",
    "Carl": "Carl [1] - Arkham: French Hill: West Street",
    "Dora": "Dora (linkdead) [2] - Arkham: Miskatonic University: Miskatonic Quadrangle",
    "Eve": "Eve (warded) [4] - Arkham: Miskatonic University: Miskatonic Quadrangle",
    "Finn": "Finn [1] - Innsmouth: Outskirts: Coast Road",
    "Wyatt": "Wyatt [9] - Innsmouth: Town Center: Gilman House Upper Room",
}


def pid(name: str) -> str:
    return f"p-{name.lower()}"


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(None)


@pytest.fixture
def presences() -> Presences:
    table = Presences()
    for name, (room, level, linkdead, ward_until, is_admin) in CAST.items():
        table.add(
            Presence(
                player_id=pid(name),
                user_id=f"u-{name.lower()}",
                name=name,
                level=level,
                is_admin=is_admin,
                room_id=room,
                session_id="s-1",
                ward_until=ward_until,
                linkdead=linkdead,
            )
        )
    return table


def run(
    world: World,
    presences: Presences,
    command: str,
    *args: str,
    actor: str = "Alice",
    max_chars: int = 1000,
) -> list[Effect]:
    presence = presences.find_by_name(actor)
    assert presence is not None
    ctx = CommandContext(
        world,
        presences,
        presence,
        SOCKET_ID,
        NOW,
        WALL_NOW,
        ChatLimiter(CHAT_LIMITS, 60.0),
        new_id=lambda: "id-1",
    )
    return dispatch(ctx, command, tuple(args), max_chars)


def answer(text: str, actor: str = "Alice", **extra: object) -> Emit:
    return Emit("command_response", {"result": text, **extra}, (pid(actor),))


def result_of(effects: Sequence[Effect], actor: str = "Alice") -> str:
    assert len(effects) >= 1
    first = effects[0]
    assert isinstance(first, Emit)
    assert first.event_type == "command_response"
    assert first.to == (pid(actor),)
    result = first.data["result"]
    assert isinstance(result, str)
    return result


# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        pytest.param("say", ("hello",), "You say: hello", id="plain"),
        pytest.param("SAY", ("hello",), "You say: hello", id="upper"),
        pytest.param("SaY", ("hello",), "You say: hello", id="mixed"),
        pytest.param("/say", ("hello",), "You say: hello", id="slash"),
        pytest.param("/SAY", ("hello",), "You say: hello", id="slash-upper"),
        pytest.param("say", ("HeLLo", "THERE"), "You say: HeLLo THERE", id="args-verbatim"),
        pytest.param("say hello there", (), "You say: hello there", id="whole-line"),
        pytest.param("SAY Hello There", (), "You say: Hello There", id="whole-line-case"),
        pytest.param("/say hello", ("there",), "You say: hello there", id="line-plus-args"),
        pytest.param("  say hello  ", (), "You say: hello", id="line-padded"),
        pytest.param("\tlook\n", (), None, id="tab-newline-around-name"),
        pytest.param("g hi", (), "You say (global): hi", id="whole-line-alias"),
    ],
)
def test_normalisation(
    world: World,
    presences: Presences,
    command: str,
    args: tuple[str, ...],
    expected: str | None,
) -> None:
    effects = run(world, presences, command, *args)
    if expected is None:  # look
        assert result_of(effects).startswith("Miskatonic Quadrangle\n")
    else:
        assert result_of(effects) == expected


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("say", ("a",), ("say", ("a",))),
        ("/WHO", (), ("who", ())),
        ("whisper Bob  hi  there", (), ("whisper", ("Bob", "hi", "there"))),
        ("whisper Bob", ("hi  there",), ("whisper", ("Bob", "hi  there"))),
        ("", (), ("", ())),
        ("   ", (), ("", ())),
        ("/", (), ("", ())),
    ],
)
def test_normalize(command: str, args: tuple[str, ...], expected: object) -> None:
    assert normalize(command, args, 1000) == expected


@pytest.mark.parametrize(
    ("command", "args"),
    [
        pytest.param("global", ("x" * 993,), id="args"),
        pytest.param("global " + "x" * 993, (), id="whole-line"),
        pytest.param("global", ("x" * 496, "y" * 496), id="two-args"),
        pytest.param("/global", ("x" * 992,), id="slash-counts"),
        pytest.param("g", ("x" * 998,), id="alias"),
    ],
)
def test_a_1000_char_line_passes(
    world: World, presences: Presences, command: str, args: tuple[str, ...]
) -> None:
    # global, because its messages may be up to 1,000 characters long
    assert len(" ".join((command, *args))) == 1000
    effects = run(world, presences, command, *args)
    assert result_of(effects).startswith("You say (global): ")
    assert any(isinstance(e, Emit) and e.event_type == "chat_message" for e in effects)


@pytest.mark.parametrize(
    ("command", "args"),
    [
        pytest.param("global", ("x" * 994,), id="args"),
        pytest.param("global " + "x" * 994, (), id="whole-line"),
        pytest.param("global", ("x" * 497, "y" * 496), id="two-args"),
        pytest.param("x" * 1001, (), id="unknown-word"),
        pytest.param("look", (" " * 996,), id="spaces-count"),
    ],
)
def test_a_1001_char_line_is_too_long(
    world: World, presences: Presences, command: str, args: tuple[str, ...]
) -> None:
    assert len(" ".join((command, *args))) == 1001
    assert run(world, presences, command, *args) == [
        answer("Command too long (max 1000 characters)")
    ]


CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\r", "\x1b", "\x1f", "\x7f"]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
@pytest.mark.parametrize("where", ["command", "whole-line", "args"])
def test_control_characters_are_refused(
    world: World, presences: Presences, char: str, where: str
) -> None:
    if where == "command":
        command, args = f"sa{char}y", ("hi",)
    elif where == "whole-line":
        command, args = f"say hi{char}there", ()
    else:
        command, args = "say", ("hi", f"the{char}re")
    assert run(world, presences, command, *args) == [answer("Invalid command format")]


@pytest.mark.parametrize("char", ["\x85", "\x9b"], ids=["U+0085", "U+009B"])
def test_c1_control_characters_are_refused(world: World, presences: Presences, char: str) -> None:
    assert run(world, presences, "say", f"hi{char}[31mthere") == [answer("Invalid command format")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("a\tb",), "You say: a\tb"),
        (("line one\nline two",), "You say: line one\nline two"),
        (("tab\tand\nnewline",), "You say: tab\tand\nnewline"),
    ],
)
def test_tab_and_newline_pass(
    world: World, presences: Presences, args: tuple[str, ...], expected: str
) -> None:
    effects = run(world, presences, "say", *args)
    assert result_of(effects) == expected


@pytest.mark.parametrize("command", ["", " ", "   ", "\t", "\n", "/"])
def test_an_empty_command_gets_an_empty_result(
    world: World, presences: Presences, command: str
) -> None:
    assert run(world, presences, command) == [answer("")]


@pytest.mark.parametrize(
    ("command", "args", "shown"),
    [
        ("xyzzy", (), "xyzzy"),
        ("XYZZY", ("plugh",), "xyzzy"),
        ("/Xyzzy", (), "xyzzy"),
        ("xyzzy plugh", (), "xyzzy"),
        ("sayhello", (), "sayhello"),
        ("system", ("hello",), "system"),  # admin only: hidden from others
        ("/SYSTEM", ("hello",), "system"),
        ("mute_global", ("Bob",), "mute_global"),
        ("unmute_global", ("Bob",), "unmute_global"),
    ],
)
def test_unknown_command(
    world: World, presences: Presences, command: str, args: tuple[str, ...], shown: str
) -> None:
    assert run(world, presences, command, *args) == [answer(UNKNOWN.format(shown))]


# --- look ----------------------------------------------------------------------------------


def test_look_with_others_present(world: World, presences: Presences) -> None:
    room = world.rooms[QUAD]
    expected = "\n".join(
        [
            "Miskatonic Quadrangle",
            room.description,
            "Also here: Bob, Dora (linkdead), Eve (warded)",
            "Exits: north, east, west, south",
        ]
    )
    assert run(world, presences, "look") == [answer(expected)]


def test_look_alone(world: World, presences: Presences) -> None:
    room = world.rooms[COAST_ROAD]
    expected = "\n".join(["Coast Road", room.description, "Exits: southwest, east"])
    effects = run(world, presences, "LOOK", actor="Finn")
    assert effects == [answer(expected, actor="Finn")]
    assert "Also here" not in result_of(effects, "Finn")


def test_look_as_another_player_lists_the_actor(world: World, presences: Presences) -> None:
    text = result_of(run(world, presences, "/look", actor="Bob"), "Bob")
    assert "\nAlso here: Alice, Dora (linkdead), Eve (warded)\n" in text


# --- who -----------------------------------------------------------------------------------


def who_text(names: list[str]) -> str:
    return f"Online Players ({len(names)}): " + ", ".join(WHO_ENTRIES[n] for n in names)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        ((), ["Alice", "Bob", "Carl", "Dora", "Eve", "Finn", "Wyatt"]),
        (("   ",), ["Alice", "Bob", "Carl", "Dora", "Eve", "Finn", "Wyatt"]),
        (("bob",), ["Bob"]),
        (("BOB",), ["Bob"]),
        (("o",), ["Bob", "Dora"]),
        (("dora",), ["Dora"]),  # the linkdead player is online and shown so
        (("eve",), ["Eve"]),
        (("wy",), ["Wyatt"]),
        (("in",), ["Finn"]),
    ],
)
def test_who(world: World, presences: Presences, args: tuple[str, ...], names: list[str]) -> None:
    assert run(world, presences, "who", *args) == [answer(who_text(names))]


@pytest.mark.parametrize("wanted", ["zed", "Zed", "alice bob"])
def test_who_with_no_match(world: World, presences: Presences, wanted: str) -> None:
    expected = f"No players found matching '{wanted}'. Try 'who' to see all online players."
    assert run(world, presences, "who", wanted) == [answer(expected)]


def test_who_after_a_player_leaves(world: World, presences: Presences) -> None:
    presences.remove(pid("Bob"))
    assert run(world, presences, "who") == [
        answer(who_text(["Alice", "Carl", "Dora", "Eve", "Finn", "Wyatt"]))
    ]


# --- whoami, help, time --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("Alice", "You are Alice, level 3, in Miskatonic Quadrangle."),
        ("Wyatt", "You are Wyatt (admin), level 9, in Gilman House Upper Room."),
        ("Dora", "You are Dora, level 2, in Miskatonic Quadrangle."),
    ],
)
def test_whoami(world: World, presences: Presences, actor: str, expected: str) -> None:
    assert run(world, presences, "whoami", actor=actor) == [answer(expected, actor=actor)]


@pytest.mark.parametrize("actor", ["Alice", "Wyatt"])
def test_help_lists_the_visible_commands(world: World, presences: Presences, actor: str) -> None:
    lines = result_of(run(world, presences, "help", actor=actor), actor).split("\n")
    assert lines[0] == "Available commands:"
    is_admin = actor == "Wyatt"
    visible = [spec for spec in REGISTRY if (is_admin or not spec.admin) and spec.listed]
    assert lines[1:] == [f"  {spec.usage} - {spec.summary}" for spec in visible]
    for line in (
        "  say <message> - Speak to the room.",
        "  look - Describe the room you are in.",
        "  go <direction> - Walk through an exit (or just: n, s, e, w, ne, u, d ...).",
        "  quit - Leave the game.",
        "  logout - Log out everywhere.",
    ):
        assert line in lines
    assert "  north - Go north." not in lines  # directions are listed once, under go
    assert ("  system <message> - Announce to everyone." in lines) is is_admin


@pytest.mark.parametrize(
    ("args", "actor", "expected"),
    [
        (("say",), "Alice", "say <message>\nSpeak to the room."),
        (("SAY",), "Alice", "say <message>\nSpeak to the room."),
        (("/say",), "Alice", "say <message>\nSpeak to the room."),
        (("l",), "Alice", "local <message> (also: l)\nSpeak to your whole subzone."),
        (("me",), "Alice", "emote <action> (also: me)\nAct something out."),
        (("n",), "Alice", "north (also: n)\nGo north."),
        (("whisper",), "Alice", "whisper <name> <message>\nSpeak to one player."),
        (("xyzzy",), "Alice", "No help for 'xyzzy'."),
        (("system",), "Alice", "No help for 'system'."),  # admin only
        (("system",), "Wyatt", "system <message>\nAnnounce to everyone."),
    ],
)
def test_help_for_one_command(
    world: World, presences: Presences, args: tuple[str, ...], actor: str, expected: str
) -> None:
    assert run(world, presences, "help", *args, actor=actor) == [answer(expected, actor=actor)]


def test_time(world: World, presences: Presences) -> None:
    assert run(world, presences, "time") == [
        answer(
            "The time is 2026-11-25 19:33:22 UTC.\n"
            "In the Mythos it is 06:13 on Sunday, August 7, 1927 (morning)."
        )
    ]


# --- quit and logout -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["quit", "QUIT", "/quit"])
def test_quit_closes_every_socket_and_retires_their_sessions(
    world: World, presences: Presences, command: str
) -> None:
    """v1.1 section 9: quit closes every socket of the player; section 3: sessions retired."""
    assert run(world, presences, command) == [
        answer("Goodbye! You have been disconnected from the game."),
        Disconnect(pid("Alice"), 1000, "Goodbye", retire_sessions=True),
    ]


@pytest.mark.parametrize("command", ["logout", "Logout", "/logout"])
def test_logout_closes_every_socket(world: World, presences: Presences, command: str) -> None:
    effects = run(world, presences, command)
    assert effects == [
        answer("Logged out successfully", session_terminated=True),
        Disconnect(pid("Alice"), 1000, "Goodbye", retire_sessions=True),
    ]
    response = effects[0]
    assert isinstance(response, Emit)
    assert dict(response.data) == {"result": "Logged out successfully", "session_terminated": True}


def test_quit_and_logout_leave_the_presences_to_the_runtime(
    world: World, presences: Presences
) -> None:
    run(world, presences, "quit")
    run(world, presences, "logout", actor="Bob")
    assert {p.name for p in presences.in_room(QUAD)} == {"Alice", "Bob", "Dora", "Eve"}
