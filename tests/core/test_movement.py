"""Movement as pure rules (PROTOCOL.md section 9): ``go <dir>``, the shortcuts, the full words,
the mover's bundle, both rooms' events, the SaveRoom effect and the presences afterwards."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

import mythos_rt.core.commands  # noqa: F401  (registers every command)
from mythos_rt.core.chat import ChatLimiter
from mythos_rt.core.effects import Disconnect, Effect, Emit, SaveRoom
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.registry import CommandContext, dispatch
from mythos_rt.core.world import DIRECTIONS, World, parse_world
from mythos_rt.world import load_world
from tests.core.defaults import CHAT_LIMITS
from tests.core.test_world import OPPOSITE

NOW = 100.0
WALL_NOW = 1795635202.9

SHORTCUTS = {
    "n": "north",
    "s": "south",
    "e": "east",
    "w": "west",
    "ne": "northeast",
    "nw": "northwest",
    "se": "southeast",
    "sw": "southwest",
    "u": "up",
    "d": "down",
}

# Bundled world rooms.
QUAD = "earth_arkhamcity_campus_quad"
LIBRARY = "earth_arkhamcity_campus_library_hall"
RESTRICTED = "earth_arkhamcity_campus_library_restricted"
SCIENCE = "earth_arkhamcity_campus_science_hall"


def pid(name: str) -> str:
    return f"p-{name.lower()}"


def make_presence(
    name: str, room_id: str, *, linkdead: bool = False, ward_until: float = 0.0
) -> Presence:
    return Presence(
        player_id=pid(name),
        user_id=f"u-{name.lower()}",
        name=name,
        level=1,
        is_admin=False,
        room_id=room_id,
        session_id=None,
        ward_until=ward_until,
        linkdead=linkdead,
    )


def compass_world() -> World:
    """A hub with an exit in every direction; each spoke leads straight back."""
    rooms = [
        {
            "id": "hub",
            "name": "Hub",
            "description": "Roads everywhere.",
            "zone": "z",
            "subzone": "s",
            "exits": {d: f"to_{d}" for d in DIRECTIONS},
        }
    ]
    for d in DIRECTIONS:
        rooms.append(
            {
                "id": f"to_{d}",
                "name": f"The {d} end",
                "description": f"Far to the {d}.",
                "zone": "z",
                "subzone": "s",
                "exits": {OPPOSITE[d]: "hub"},
            }
        )
    return parse_world(json.dumps({"name": "Compass", "start_room": "hub", "rooms": rooms}), "t")


def run(world: World, presences: Presences, actor: str, command: str, *args: str) -> list[Effect]:
    presence = presences.find_by_name(actor)
    assert presence is not None
    ctx = CommandContext(
        world,
        presences,
        presence,
        3,
        NOW,
        WALL_NOW,
        ChatLimiter(CHAT_LIMITS, 60.0),
        new_id=lambda: "id-1",
    )
    return dispatch(ctx, command, tuple(args), 1000)


def emits_to(effects: Sequence[Effect], player_id: str) -> list[Emit]:
    return [e for e in effects if isinstance(e, Emit) and player_id in e.to]


def room_dict(world: World, room_id: str, names: list[str]) -> dict[str, object]:
    room = world.rooms[room_id]
    return {
        "id": room.id,
        "name": room.name,
        "description": room.description,
        "zone": room.zone,
        "sub_zone": room.subzone,
        "subzone": room.subzone,
        "exits": dict(room.exits),
        "players": names,
        "npcs": [],
        "occupants": names,
    }


def occupants_dict(names: list[str]) -> dict[str, object]:
    return {"players": names, "npcs": [], "occupants": names, "count": len(names)}


# --- every way to name a direction ---------------------------------------------------------

DIRECTION_COMMANDS = (
    [pytest.param(short, (), full, id=short) for short, full in SHORTCUTS.items()]
    + [pytest.param(full, (), full, id=full) for full in DIRECTIONS]
    + [pytest.param("go", (short,), full, id=f"go-{short}") for short, full in SHORTCUTS.items()]
    + [pytest.param("go", (full,), full, id=f"go-{full}") for full in DIRECTIONS]
    + [
        pytest.param("GO", ("NORTH",), "north", id="GO-NORTH"),
        pytest.param("/N", (), "north", id="/N"),
        pytest.param("Go", ("Sw",), "southwest", id="Go-Sw"),
        pytest.param("go ne", (), "northeast", id="whole-line-go-ne"),
        pytest.param("up", ("ignored", "words"), "up", id="up-with-extra-args"),
    ]
)


@pytest.mark.parametrize(("command", "args", "direction"), DIRECTION_COMMANDS)
def test_every_direction_command_moves(command: str, args: tuple[str, ...], direction: str) -> None:
    world = compass_world()
    presences = Presences()
    presences.add(make_presence("Alice", "hub"))
    effects = run(world, presences, "Alice", command, *args)

    reply = effects[0]
    assert isinstance(reply, Emit) and reply.event_type == "command_response"
    assert reply.data["result"] == f"You go {direction}."
    assert reply.data["room_id"] == f"to_{direction}"
    assert SaveRoom(pid("Alice"), f"to_{direction}") in effects
    alice = presences.get(pid("Alice"))
    assert alice is not None and alice.room_id == f"to_{direction}"


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_every_way_back(direction: str) -> None:
    world = compass_world()
    presences = Presences()
    presences.add(make_presence("Alice", f"to_{direction}"))
    effects = run(world, presences, "Alice", OPPOSITE[direction])
    assert emits_to(effects, pid("Alice"))[0].data["result"] == f"You go {OPPOSITE[direction]}."
    assert presences.in_room("hub")[0].name == "Alice"


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("go", ()),
        ("go", ("",)),
        ("go", ("sideways",)),
        ("go", ("northnorth",)),
    ],
)
def test_go_without_a_direction(command: str, args: tuple[str, ...]) -> None:
    world = compass_world()
    presences = Presences()
    presences.add(make_presence("Alice", "hub"))
    effects = run(world, presences, "Alice", command, *args)
    assert effects == [
        Emit(
            "command_response",
            {"result": "Go where? Usage: go <direction>"},
            (pid("Alice"),),
        )
    ]
    assert [p.name for p in presences.in_room("hub")] == ["Alice"]


@pytest.mark.parametrize(
    ("command", "args"),
    [("u", ()), ("up", ()), ("go", ("up",)), ("go", ("u",)), ("nw", ()), ("d", ())],
)
def test_blocked_direction(command: str, args: tuple[str, ...]) -> None:
    world = load_world(None)
    presences = Presences()
    presences.add(make_presence("Alice", QUAD))
    presences.add(make_presence("Bob", QUAD))
    effects = run(world, presences, "Alice", command, *args)
    assert effects == [
        Emit("command_response", {"result": "You can't go that way."}, (pid("Alice"),))
    ]
    assert [p.name for p in presences.in_room(QUAD)] == ["Alice", "Bob"]


# --- the whole picture on the bundled world ------------------------------------------------


@pytest.fixture
def world() -> World:
    return load_world(None)


@pytest.fixture
def presences() -> Presences:
    table = Presences()
    table.add(make_presence("Bob", QUAD))
    table.add(make_presence("Alice", QUAD))
    table.add(make_presence("Dora", QUAD, linkdead=True))
    table.add(make_presence("Carl", LIBRARY))
    table.add(make_presence("Eve", SCIENCE))  # elsewhere: hears nothing
    return table


def test_the_movers_bundle_in_order(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "n")
    names_there = ["Carl", "Alice"]
    state = {
        "room": room_dict(world, LIBRARY, names_there),
        "occupants": names_there,
        "occupant_count": 2,
    }

    bundle = emits_to(effects, pid("Alice"))
    assert [e.event_type for e in bundle] == ["command_response", "room_state", "room_occupants"]
    response, room_state, occupants = bundle

    assert dict(response.data) == {
        "result": "You go north.",
        "room_changed": True,
        "room_id": LIBRARY,
        "room_state": state,
    }
    assert response.to == (pid("Alice"),)

    assert dict(room_state.data) == state
    assert room_state.to == (pid("Alice"),)
    assert room_state.room_id == LIBRARY

    assert dict(occupants.data) == occupants_dict(names_there)
    assert occupants.room_id == LIBRARY


def test_room_state_room_is_shaped_like_game_state(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "north")
    room = emits_to(effects, pid("Alice"))[1].data["room"]
    assert isinstance(room, dict)
    assert set(room) == {
        "id",
        "name",
        "description",
        "zone",
        "sub_zone",
        "subzone",
        "exits",
        "players",
        "npcs",
        "occupants",
    }
    assert room["name"] == "Orne Library Entrance Hall"
    assert room["zone"] == "arkham"
    assert room["subzone"] == room["sub_zone"] == "miskatonic_university"
    assert room["exits"] == {"south": QUAD, "up": RESTRICTED}


def test_the_old_room_sees_the_mover_leave(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "go", "north")
    for watcher in ("Bob", "Dora"):  # the linkdead player still gets it (replay buffer)
        seen = emits_to(effects, pid(watcher))
        assert [e.event_type for e in seen] == ["player_left", "room_occupants"], watcher
    left, occupants = emits_to(effects, pid("Bob"))
    assert dict(left.data) == {
        "player_id": pid("Alice"),
        "player_name": "Alice",
        "message": "Alice leaves the room.",
    }
    assert set(left.to) == {pid("Bob"), pid("Dora")}
    assert left.room_id == QUAD
    assert dict(occupants.data) == occupants_dict(["Bob", "Dora (linkdead)"])
    assert set(occupants.to) == {pid("Bob"), pid("Dora")}
    assert occupants.room_id == QUAD


def test_the_new_room_sees_the_mover_enter(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "go", "north")
    entered, occupants = emits_to(effects, pid("Carl"))
    assert entered.event_type == "player_entered"
    assert dict(entered.data) == {
        "player_id": pid("Alice"),
        "player_name": "Alice",
        "message": "Alice enters the room.",
    }
    assert entered.to == (pid("Carl"),)
    assert entered.room_id == LIBRARY
    assert occupants.event_type == "room_occupants"
    assert dict(occupants.data) == occupants_dict(["Carl", "Alice"])
    assert occupants.room_id == LIBRARY


def test_nobody_elsewhere_hears_anything(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "n")
    assert emits_to(effects, pid("Eve")) == []
    assert all(e.to.count(pid("Alice")) <= 1 for e in effects if isinstance(e, Emit))
    assert not any(isinstance(e, Disconnect) for e in effects)


def test_the_mover_gets_neither_left_nor_entered(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "n")
    kinds = {e.event_type for e in emits_to(effects, pid("Alice"))}
    assert "player_left" not in kinds
    assert "player_entered" not in kinds


def test_save_room_and_presences_after_the_move(world: World, presences: Presences) -> None:
    effects = run(world, presences, "Alice", "n")
    assert [e for e in effects if isinstance(e, SaveRoom)] == [SaveRoom(pid("Alice"), LIBRARY)]
    alice = presences.get(pid("Alice"))
    assert alice is not None and alice.room_id == LIBRARY
    assert [p.name for p in presences.in_room(QUAD)] == ["Bob", "Dora"]
    assert [p.name for p in presences.in_room(LIBRARY)] == ["Carl", "Alice"]


def test_moving_into_an_empty_room_and_back(world: World, presences: Presences) -> None:
    run(world, presences, "Alice", "n")
    effects = run(world, presences, "Alice", "u")
    state = emits_to(effects, pid("Alice"))[1]
    assert state.event_type == "room_state"
    assert dict(state.data) == {
        "room": room_dict(world, RESTRICTED, ["Alice"]),
        "occupants": ["Alice"],
        "occupant_count": 1,
    }
    assert emits_to(effects, pid("Carl"))[0].data["message"] == "Alice leaves the room."

    back = run(world, presences, "Alice", "d")
    assert emits_to(back, pid("Alice"))[0].data["result"] == "You go down."
    entered = emits_to(back, pid("Carl"))
    assert [e.event_type for e in entered] == ["player_entered", "room_occupants"]
    assert entered[1].data["occupants"] == ["Carl", "Alice"]


def test_a_warded_mover_is_shown_warded(world: World, presences: Presences) -> None:
    alice = presences.get(pid("Alice"))
    assert alice is not None
    alice.ward_until = NOW + 5
    effects = run(world, presences, "Alice", "n")
    bundle = emits_to(effects, pid("Alice"))
    assert bundle[1].data["occupants"] == ["Carl", "Alice (warded)"]
    assert bundle[2].data["occupants"] == ["Carl", "Alice (warded)"]
    # The event text uses the plain name.
    assert emits_to(effects, pid("Carl"))[0].data["message"] == "Alice enters the room."
