"""Presences, how names are shown, the payload views and the per-player replay buffer
(PROTOCOL.md sections 5, 9 and 12)."""

from __future__ import annotations

import pytest

from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.replay import ReplayBuffer
from mythos_rt.core.views import (
    DEFAULT_STATS,
    game_state_payload,
    occupants_payload,
    player_payload,
    room_payload,
    room_state_payload,
)
from mythos_rt.core.world import World
from mythos_rt.world import load_world

QUAD = "earth_arkhamcity_campus_quad"
LIBRARY = "earth_arkhamcity_campus_library_hall"
SCIENCE = "earth_arkhamcity_campus_science_hall"


def make_presence(
    name: str,
    room_id: str = QUAD,
    *,
    linkdead: bool = False,
    ward_until: float = 0.0,
    level: int = 1,
    is_admin: bool = False,
) -> Presence:
    return Presence(
        player_id=f"p-{name.lower()}",
        user_id=f"u-{name.lower()}",
        name=name,
        level=level,
        is_admin=is_admin,
        room_id=room_id,
        session_id=None,
        ward_until=ward_until,
        linkdead=linkdead,
    )


@pytest.fixture(scope="module")
def world() -> World:
    return load_world(None)


# --- Presence ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("linkdead", "ward_until", "now", "shown"),
    [
        pytest.param(False, 0.0, 100.0, "Bob", id="plain"),
        pytest.param(False, 110.0, 100.0, "Bob (warded)", id="warded"),
        pytest.param(False, 110.0, 109.999, "Bob (warded)", id="warded-just-before-expiry"),
        pytest.param(False, 110.0, 110.0, "Bob", id="ward-expires-exactly-at-ward-until"),
        pytest.param(False, 110.0, 110.001, "Bob", id="after-expiry"),
        pytest.param(True, 0.0, 100.0, "Bob (linkdead)", id="linkdead"),
        pytest.param(True, 110.0, 100.0, "Bob (linkdead)", id="linkdead-wins-over-ward"),
    ],
)
def test_display_name(linkdead: bool, ward_until: float, now: float, shown: str) -> None:
    bob = make_presence("Bob", linkdead=linkdead, ward_until=ward_until)
    assert bob.display_name(now) == shown


@pytest.mark.parametrize(
    ("now", "warded", "remaining"),
    [
        (90.0, True, 20.0),
        (100.0, True, 10.0),
        (109.5, True, 0.5),
        (110.0, False, 0.0),
        (200.0, False, 0.0),  # never negative
    ],
)
def test_ward(now: float, warded: bool, remaining: float) -> None:
    bob = make_presence("Bob", ward_until=110.0)
    assert bob.warded(now) is warded
    assert bob.ward_remaining(now) == pytest.approx(remaining)


def test_presence_defaults() -> None:
    bob = make_presence("Bob")
    assert bob.linkdead is False
    assert bob.pose is None
    assert bob.last_whisperer is None


# --- Presences -----------------------------------------------------------------------------


@pytest.fixture
def table() -> Presences:
    presences = Presences()
    for presence in (
        make_presence("Bob"),
        make_presence("Alice"),
        make_presence("Carl", LIBRARY),
        make_presence("Dora", linkdead=True),
    ):
        presences.add(presence)
    return presences


def names(presences: list[Presence]) -> list[str]:
    return [p.name for p in presences]


def test_add_and_get(table: Presences) -> None:
    assert len(table) == 4
    bob = table.get("p-bob")
    assert bob is not None and bob.name == "Bob"
    assert table.get("p-nobody") is None
    assert names(list(table)) == ["Bob", "Alice", "Carl", "Dora"]


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("Alice", "Alice"),
        ("alice", "Alice"),
        ("ALICE", "Alice"),
        ("aLiCe", "Alice"),
        ("dora", "Dora"),  # linkdead players are still present
        ("Alic", None),
        ("Alice ", None),
        ("", None),
        ("Nobody", None),
    ],
)
def test_find_by_name_is_case_insensitive(table: Presences, query: str, found: str | None) -> None:
    presence = table.find_by_name(query)
    assert (presence.name if presence else None) == found


def test_find_by_name_casefolds() -> None:
    presences = Presences()
    presences.add(make_presence("Straße"))
    found = presences.find_by_name("STRASSE")
    assert found is not None and found.name == "Straße"


def test_in_room_keeps_arrival_order(table: Presences) -> None:
    assert names(table.in_room(QUAD)) == ["Bob", "Alice", "Dora"]
    assert names(table.in_room(LIBRARY)) == ["Carl"]
    assert table.in_room(SCIENCE) == []
    assert table.in_room("no-such-room") == []
    assert table.ids_in_room(QUAD) == ("p-bob", "p-alice", "p-dora")
    assert table.ids_in_room(QUAD, excluding="p-alice") == ("p-bob", "p-dora")
    assert table.ids_in_room(QUAD, excluding="p-carl") == ("p-bob", "p-alice", "p-dora")


def test_occupant_names(table: Presences) -> None:
    alice = table.get("p-alice")
    assert alice is not None
    alice.ward_until = 105.0
    assert table.occupant_names(QUAD, 100.0) == ["Bob", "Alice (warded)", "Dora (linkdead)"]
    assert table.occupant_names(QUAD, 105.0) == ["Bob", "Alice", "Dora (linkdead)"]
    assert table.occupant_names(SCIENCE, 100.0) == []


def test_move(table: Presences) -> None:
    table.move("p-bob", LIBRARY)
    bob = table.get("p-bob")
    assert bob is not None and bob.room_id == LIBRARY
    assert names(table.in_room(QUAD)) == ["Alice", "Dora"]
    assert names(table.in_room(LIBRARY)) == ["Carl", "Bob"]  # the newcomer comes last

    table.move("p-bob", QUAD)
    assert names(table.in_room(QUAD)) == ["Alice", "Dora", "Bob"]
    assert names(table.in_room(LIBRARY)) == ["Carl"]


def test_moving_the_last_occupant_empties_the_room(table: Presences) -> None:
    table.move("p-carl", SCIENCE)
    assert table.in_room(LIBRARY) == []
    assert table.ids_in_room(LIBRARY) == ()
    assert names(table.in_room(SCIENCE)) == ["Carl"]


def test_remove(table: Presences) -> None:
    alice = table.remove("p-alice")
    assert alice is not None and alice.name == "Alice"
    assert len(table) == 3
    assert table.get("p-alice") is None
    assert table.find_by_name("alice") is None
    assert names(table.in_room(QUAD)) == ["Bob", "Dora"]
    assert "Alice" not in names(list(table))
    assert table.remove("p-alice") is None  # removing twice is harmless
    assert table.remove("p-nobody") is None
    assert len(table) == 3


def test_remove_then_add_again(table: Presences) -> None:
    table.remove("p-bob")
    table.add(make_presence("Bob", SCIENCE))
    assert names(table.in_room(QUAD)) == ["Alice", "Dora"]
    assert names(table.in_room(SCIENCE)) == ["Bob"]
    found = table.find_by_name("BOB")
    assert found is not None and found.room_id == SCIENCE


def test_iteration_is_a_snapshot(table: Presences) -> None:
    for presence in table:
        table.remove(presence.player_id)
    assert len(table) == 0
    assert table.in_room(QUAD) == []


# --- views ---------------------------------------------------------------------------------


def test_occupants_payload(table: Presences) -> None:
    assert occupants_payload(QUAD, table, 100.0) == {
        "players": ["Bob", "Alice", "Dora (linkdead)"],
        "npcs": [],
        "occupants": ["Bob", "Alice", "Dora (linkdead)"],
        "count": 3,
    }
    assert occupants_payload(SCIENCE, table, 100.0) == {
        "players": [],
        "npcs": [],
        "occupants": [],
        "count": 0,
    }


def test_room_and_room_state_payloads(world: World, table: Presences) -> None:
    room = world.rooms[LIBRARY]
    expected_room = {
        "id": LIBRARY,
        "name": "Orne Library Entrance Hall",
        "description": room.description,
        "zone": "arkham",
        "sub_zone": "miskatonic_university",
        "subzone": "miskatonic_university",
        "exits": {"south": QUAD, "up": "earth_arkhamcity_campus_library_restricted"},
        "players": ["Carl"],
        "npcs": [],
        "occupants": ["Carl"],
    }
    assert room_payload(room, table, 100.0) == expected_room
    assert room_state_payload(room, table, 100.0) == {
        "room": expected_room,
        "occupants": ["Carl"],
        "occupant_count": 1,
    }


def test_game_state_payload(world: World) -> None:
    presences = Presences()
    presences.add(make_presence("Bob"))
    alice = make_presence("Alice", ward_until=107.5, level=4, is_admin=True)
    presences.add(alice)
    room = world.rooms[QUAD]

    payload = game_state_payload(alice, room, presences, 100.0)

    names_here = ["Bob", "Alice (warded)"]
    assert payload == {
        "player": {
            "id": "p-alice",
            "name": "Alice",
            "level": 4,
            "room_id": QUAD,
            "is_admin": True,
            "profession_name": "Scholar",
            "stats": {**DEFAULT_STATS, "position": "standing"},
        },
        "room": {
            "id": QUAD,
            "name": "Miskatonic Quadrangle",
            "description": room.description,
            "zone": "arkham",
            "sub_zone": "miskatonic_university",
            "subzone": "miskatonic_university",
            "exits": {
                "north": LIBRARY,
                "east": SCIENCE,
                "west": "earth_arkhamcity_frenchhill_west_street",
                "south": "earth_arkhamcity_merchant_independence_square",
            },
            "players": names_here,
            "npcs": [],
            "occupants": names_here,
        },
        "occupants": names_here,
        "occupant_count": 2,
        "login_grace_period_active": True,
        "login_grace_period_remaining": 7.5,
        "following": None,
    }
    assert player_payload(alice) == payload["player"]


def test_game_state_payload_after_the_ward(world: World) -> None:
    presences = Presences()
    alice = make_presence("Alice", ward_until=107.5)
    presences.add(alice)
    payload = game_state_payload(alice, world.rooms[QUAD], presences, 107.5, following="Bob")
    assert payload["login_grace_period_active"] is False
    assert payload["login_grace_period_remaining"] == 0.0
    assert payload["occupants"] == ["Alice"]
    assert payload["occupant_count"] == 1
    assert payload["following"] == "Bob"


# --- ReplayBuffer --------------------------------------------------------------------------


def frame(n: int) -> bytes:
    return f"frame-{n:03d}".encode()  # 9 bytes each


def filled(
    numbers: list[int], *, floor: int, max_events: int = 100, max_bytes: int = 10_000
) -> ReplayBuffer:
    buffer = ReplayBuffer(max_events, max_bytes, start=floor)
    for n in numbers:
        buffer.append(n, frame(n))
    return buffer


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (100, None),  # the presence's start: that client never saw this presence's state
        (101, [102, 103, 104, 105]),
        (103, [104, 105]),
        (104, [105]),
        (105, []),  # nothing missed: an empty replay, not a refusal
        (999, []),
        (99, None),  # from before the presence began
        (0, None),
    ],
)
def test_since_returns_exactly_the_frames_after(since: int, expected: list[int] | None) -> None:
    buffer = filled([101, 102, 103, 104, 105], floor=100)
    replay = buffer.since(since)
    assert replay == (None if expected is None else [frame(n) for n in expected])


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (50, None),
        (59, [60, 75, 90]),
        (60, [75, 90]),
        (61, [75, 90]),  # numbers between a player's events belong to other players
        (89, [90]),
        (90, []),
        (49, None),
    ],
)
def test_since_with_gaps_in_the_numbers(since: int, expected: list[int] | None) -> None:
    buffer = filled([60, 75, 90], floor=50)
    replay = buffer.since(since)
    assert replay == (None if expected is None else [frame(n) for n in expected])


def test_an_empty_buffer() -> None:
    buffer = ReplayBuffer(10, 1000, start=42)
    assert len(buffer) == 0
    assert buffer.since(42) is None  # the presence's start number itself
    assert buffer.since(43) == []
    assert buffer.since(100) == []
    assert buffer.since(41) is None


def test_bounded_by_count_oldest_first() -> None:
    buffer = filled([1, 2, 3, 4, 5], floor=0, max_events=3)
    assert len(buffer) == 3
    assert buffer.floor == 2
    assert buffer.since(2) == [frame(3), frame(4), frame(5)]
    assert buffer.since(4) == [frame(5)]
    assert buffer.since(1) is None  # frame 2 was evicted: a resume from 1 cannot be exact
    assert buffer.since(0) is None


def test_exactly_at_the_count_bound_nothing_is_evicted() -> None:
    buffer = filled([1, 2, 3], floor=0, max_events=3)
    assert len(buffer) == 3
    assert buffer.floor == 0
    assert buffer.since(1) == [frame(2), frame(3)]


def test_bounded_by_bytes_oldest_first() -> None:
    # 9-byte frames, 27 bytes allowed: three fit exactly, the fourth pushes the first out.
    buffer = filled([1, 2, 3], floor=0, max_bytes=27)
    assert len(buffer) == 3
    assert buffer.floor == 0

    buffer.append(4, frame(4))
    assert len(buffer) == 3
    assert buffer.floor == 1
    assert buffer.since(1) == [frame(2), frame(3), frame(4)]
    assert buffer.since(0) is None


def test_a_big_frame_evicts_several_small_ones() -> None:
    buffer = filled([1, 2, 3], floor=0, max_bytes=30)
    buffer.append(4, b"x" * 20)
    assert len(buffer) == 2
    assert buffer.floor == 2
    assert buffer.since(2) == [frame(3), b"x" * 20]
    assert buffer.since(1) is None


def test_a_frame_larger_than_the_whole_buffer() -> None:
    buffer = filled([1, 2], floor=0, max_bytes=30)
    buffer.append(3, b"x" * 31)
    assert len(buffer) == 0
    assert buffer.floor == 3
    assert buffer.since(3) == []
    assert buffer.since(2) is None
    buffer.append(4, frame(4))
    assert buffer.since(3) == [frame(4)]


def test_eviction_keeps_later_frames_in_order() -> None:
    buffer = filled(list(range(1, 21)), floor=0, max_events=5)
    assert buffer.since(15) == [frame(n) for n in (16, 17, 18, 19, 20)]
    assert buffer.since(14) is None
    assert buffer.floor == 15
