from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from mythos_rt.core.world import DIRECTIONS, World, WorldError, parse_world
from mythos_rt.world import BUNDLED_WORLD, load_world

OPPOSITE = {
    "north": "south",
    "south": "north",
    "east": "west",
    "west": "east",
    "northeast": "southwest",
    "southwest": "northeast",
    "northwest": "southeast",
    "southeast": "northwest",
    "up": "down",
    "down": "up",
}


@pytest.fixture(scope="module")
def bundled() -> World:
    return load_world(None)


def small_world() -> dict[str, Any]:
    return {
        "name": "Test",
        "start_room": "a",
        "rooms": [
            {
                "id": "a",
                "name": "Room A",
                "description": "A.",
                "zone": "z",
                "subzone": "s",
                "exits": {"north": "b"},
            },
            {
                "id": "b",
                "name": "Room B",
                "description": "B.",
                "zone": "z",
                "subzone": "s",
                "exits": {"south": "a"},
            },
        ],
    }


def test_bundled_world_has_the_required_size(bundled: World) -> None:
    rooms = bundled.rooms.values()
    assert len(bundled.rooms) >= 14
    assert len({room.zone for room in rooms}) >= 2
    assert len({(room.zone, room.subzone) for room in rooms}) >= 3


def test_bundled_world_starts_on_the_miskatonic_campus(bundled: World) -> None:
    start = bundled.room(bundled.start_room_id)
    assert start is not None
    assert start.subzone == "miskatonic_university"


def test_bundled_exits_are_two_way(bundled: World) -> None:
    for room in bundled.rooms.values():
        for direction, target in room.exits.items():
            assert bundled.rooms[target].exits.get(OPPOSITE[direction]) == room.id, (
                room.id,
                direction,
            )


def test_bundled_world_is_connected(bundled: World) -> None:
    seen = {bundled.start_room_id}
    queue = deque(seen)
    while queue:
        for target in bundled.rooms[queue.popleft()].exits.values():
            if target not in seen:
                seen.add(target)
                queue.append(target)
    assert seen == set(bundled.rooms)


def test_bundled_world_has_an_up_down_pair(bundled: World) -> None:
    assert any("up" in room.exits for room in bundled.rooms.values())
    assert any("down" in room.exits for room in bundled.rooms.values())


def test_bundled_descriptions_are_one_to_three_sentences(bundled: World) -> None:
    for room in bundled.rooms.values():
        sentences = room.description.count(". ") + 1
        assert 1 <= sentences <= 3, room.id
        assert room.description.endswith((".", "!", "?"))


def test_bundled_world_path_is_the_packaged_file() -> None:
    assert BUNDLED_WORLD.name == "arkham.json"
    assert BUNDLED_WORLD.is_file()


def test_small_world_parses() -> None:
    world = parse_world(json.dumps(small_world()), "small.json")
    assert world.name == "Test"
    assert world.start_room_id == "a"
    room = world.room("a")
    assert room is not None
    assert room.name == "Room A"
    assert dict(room.exits) == {"north": "b"}
    assert world.room("missing") is None


def test_every_direction_is_accepted() -> None:
    data = small_world()
    data["rooms"][0]["exits"] = {direction: "b" for direction in DIRECTIONS}
    world = parse_world(json.dumps(data), "w.json")
    assert set(world.rooms["a"].exits) == set(DIRECTIONS)


def _without(key: str) -> dict[str, Any]:
    data = small_world()
    del data[key]
    return data


def _room_without(key: str) -> dict[str, Any]:
    data = small_world()
    del data["rooms"][1][key]
    return data


def _with_room(**changes: Any) -> dict[str, Any]:
    data = small_world()
    data["rooms"][1].update(changes)
    return data


def _with(**changes: Any) -> dict[str, Any]:
    data = small_world()
    data.update(changes)
    return data


def _duplicate_room() -> dict[str, Any]:
    data = small_world()
    data["rooms"].append(dict(data["rooms"][0]))
    return data


MALFORMED: list[tuple[str, str | dict[str, Any] | list[Any], str]] = [
    ("bad-json", '{"name": "x",\n  "rooms": [}', "invalid JSON at line 2 column 13"),
    ("not-an-object", [1, 2], "the world must be a JSON object"),
    ("missing-name", _without("name"), "the world is missing the key 'name'"),
    ("missing-start", _without("start_room"), "missing the key 'start_room'"),
    ("missing-rooms", _without("rooms"), "missing the key 'rooms'"),
    ("unknown-top-key", _with(extra=1), "the world has an unknown key 'extra'"),
    ("empty-rooms", _with(rooms=[]), "'rooms' must be a non-empty list"),
    ("room-not-object", _with(rooms=["a"]), "rooms[0] must be a JSON object"),
    ("room-missing-zone", _room_without("zone"), "room 'b' is missing the key 'zone'"),
    ("room-missing-id", _room_without("id"), "rooms[1] is missing the key 'id'"),
    ("room-unknown-key", _with_room(exit={}), "room 'b' has an unknown key 'exit'"),
    ("empty-name", _with_room(name="  "), "room 'b' 'name' must be a non-empty string"),
    ("number-name", _with_room(name=5), "room 'b' 'name' must be a non-empty string"),
    ("exits-not-object", _with_room(exits=["a"]), "room 'b' 'exits' must be an object"),
    ("bad-direction", _with_room(exits={"sideways": "a"}), "invalid exit direction 'sideways'"),
    ("exit-not-string", _with_room(exits={"south": 1}), "exit 'south' must be a non-empty"),
    (
        "exit-to-unknown",
        _with_room(exits={"south": "nowhere"}),
        "room 'b' exit 'south' leads to unknown room 'nowhere'",
    ),
    ("duplicate-id", _duplicate_room(), "duplicate room id 'a'"),
    (
        "duplicate-key",
        '{"name": "x", "name": "y", "start_room": "a", "rooms": []}',
        "duplicate key 'name'",
    ),
    ("unknown-start", _with(start_room="void"), "start_room 'void' is not a room"),
    ("empty-world-name", _with(name=""), "the world 'name' must be a non-empty string"),
]


@pytest.mark.parametrize(
    ("document", "problem"),
    [pytest.param(doc, problem, id=case) for case, doc, problem in MALFORMED],
)
def test_malformed_world_is_refused(
    document: str | dict[str, Any] | list[Any], problem: str
) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(WorldError) as exc_info:
        parse_world(text, "broken.json")
    message = str(exc_info.value)
    assert message.startswith("broken.json: ")
    assert problem in message


def test_load_world_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(small_world()), encoding="utf-8")
    assert load_world(path).start_room_id == "a"


def test_load_world_names_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(WorldError, match=r"absent\.json: cannot read the world file"):
        load_world(path)


def test_load_world_names_the_file_in_parse_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(WorldError) as exc_info:
        load_world(path)
    assert str(exc_info.value).startswith(f"{path}: invalid JSON at line 1 column 2")


# --- rest locations (v1.1 section 9) ---------------------------------------------------------


def test_rest_location_defaults_to_false() -> None:
    world = parse_world(json.dumps(small_world()), "small.json")
    assert not any(room.rest_location for room in world.rooms.values())


def test_rest_location_true_is_loaded() -> None:
    data = small_world()
    data["rooms"][1]["rest_location"] = True
    world = parse_world(json.dumps(data), "small.json")
    assert [room.id for room in world.rooms.values() if room.rest_location] == ["b"]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_rest_location_must_be_a_boolean(value: object) -> None:
    data = small_world()
    data["rooms"][0]["rest_location"] = value
    with pytest.raises(WorldError, match="room 'a' 'rest_location' must be true or false"):
        parse_world(json.dumps(data), "small.json")


def test_bundled_world_has_an_inn_in_each_zone(bundled: World) -> None:
    inns = [room for room in bundled.rooms.values() if room.rest_location]
    assert {room.zone for room in inns} == {"arkham", "innsmouth"}
