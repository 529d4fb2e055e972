"""The world map: rooms and their exits as frozen data, parsed and validated from JSON text.

Pure: the caller reads the file and passes its text and a name for it (used in error messages).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

DIRECTIONS: tuple[str, ...] = (
    "north",
    "south",
    "east",
    "west",
    "northeast",
    "northwest",
    "southeast",
    "southwest",
    "up",
    "down",
)

_WORLD_KEYS = frozenset({"name", "start_room", "rooms"})
_ROOM_TEXT_KEYS = ("id", "name", "description", "zone", "subzone")
_ROOM_KEYS = frozenset({*_ROOM_TEXT_KEYS, "exits"})
_ROOM_OPTIONAL_KEYS = frozenset({"rest_location"})


@attrs.frozen
class Room:
    id: str
    name: str
    description: str
    zone: str
    subzone: str
    exits: Mapping[str, str]  # direction -> room id
    rest_location: bool = False  # an inn or the like: ``rest`` disconnects at once (section 9)


@attrs.frozen
class World:
    name: str
    start_room_id: str
    rooms: Mapping[str, Room]

    def room(self, room_id: str) -> Room | None:
        return self.rooms.get(room_id)


class WorldError(Exception):
    """The world data is unusable; the message names the source and the problem."""


def parse_world(text: str, source: str) -> World:
    """Parse and validate a world JSON document; raise :class:`WorldError` on any problem."""
    top = _object(_decode(text, source), source, "the world")
    _check_keys(top, _WORLD_KEYS, source, "the world")
    name = _text(top, "name", source, "the world")
    start = _text(top, "start_room", source, "the world")
    rooms = _parse_rooms(top["rooms"], source)
    _check_exit_targets(rooms, source)
    if start not in rooms:
        raise WorldError(f"{source}: start_room '{start}' is not a room")
    return World(name=name, start_room_id=start, rooms=MappingProxyType(rooms))


def _decode(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, source))
    except json.JSONDecodeError as exc:
        raise WorldError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def _unique_keys(pairs: list[tuple[str, Any]], source: str) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; a repeated exit direction would vanish silently.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WorldError(f"{source}: duplicate key '{key}' in a JSON object")
        result[key] = value
    return result


def _parse_rooms(value: Any, source: str) -> dict[str, Room]:
    if not isinstance(value, list) or not value:
        raise WorldError(f"{source}: 'rooms' must be a non-empty list")
    rooms: dict[str, Room] = {}
    for index, item in enumerate(value):
        room = _parse_room(item, source, f"rooms[{index}]")
        if room.id in rooms:
            raise WorldError(f"{source}: duplicate room id '{room.id}'")
        rooms[room.id] = room
    return rooms


def _parse_room(value: Any, source: str, where: str) -> Room:
    raw = _object(value, source, where)
    # Name the room by its id in later messages once the id is known to be usable.
    where = f"room '{raw['id']}'" if _is_text(raw.get("id")) else where
    _check_keys(raw, _ROOM_KEYS, source, where, _ROOM_OPTIONAL_KEYS)
    texts = {key: _text(raw, key, source, where) for key in _ROOM_TEXT_KEYS}
    rest_location = raw.get("rest_location", False)
    if not isinstance(rest_location, bool):
        raise WorldError(f"{source}: {where} 'rest_location' must be true or false")
    exits = _parse_exits(raw["exits"], source, where)
    return Room(**texts, exits=exits, rest_location=rest_location)


def _parse_exits(value: Any, source: str, where: str) -> Mapping[str, str]:
    if not isinstance(value, dict):
        raise WorldError(f"{source}: {where} 'exits' must be an object")
    for direction, target in value.items():
        if direction not in DIRECTIONS:
            raise WorldError(f"{source}: {where} has an invalid exit direction '{direction}'")
        if not _is_text(target):
            raise WorldError(f"{source}: {where} exit '{direction}' must be a non-empty string")
    return MappingProxyType(dict(value))


def _check_exit_targets(rooms: Mapping[str, Room], source: str) -> None:
    for room in rooms.values():
        for direction, target in room.exits.items():
            if target not in rooms:
                raise WorldError(
                    f"{source}: room '{room.id}' exit '{direction}' "
                    f"leads to unknown room '{target}'"
                )


def _object(value: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WorldError(f"{source}: {where} must be a JSON object")
    return value


def _check_keys(
    raw: Mapping[str, Any],
    expected: frozenset[str],
    source: str,
    where: str,
    optional: frozenset[str] = frozenset(),
) -> None:
    missing = sorted(expected - raw.keys())
    if missing:
        raise WorldError(f"{source}: {where} is missing the key '{missing[0]}'")
    # Unknown keys are refused so that a typo ("exit" for "exits") cannot pass unnoticed.
    unknown = sorted(raw.keys() - expected - optional)
    if unknown:
        raise WorldError(f"{source}: {where} has an unknown key '{unknown[0]}'")


def _text(raw: Mapping[str, Any], key: str, source: str, where: str) -> str:
    value = raw[key]
    if not _is_text(value):
        raise WorldError(f"{source}: {where} '{key}' must be a non-empty string")
    text: str = value
    return text


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
