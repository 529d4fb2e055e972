"""Who is in the world and where: presences, room occupancy and how names are shown.

Pure data owned by the hub.  Times are trio times passed in by the caller (``now``).
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from mythos_rt.core.rollback import note_undo, record_field


# Field assignments are journaled while a rule runs, so a rule that raises is undone.
@attrs.define(on_setattr=record_field)
class Presence:
    """One player's presence in the world, from first socket until teardown."""

    player_id: str
    user_id: str
    name: str
    level: int
    is_admin: bool
    room_id: str
    session_id: str | None
    ward_until: float
    linkdead: bool = False
    pose: str | None = None
    last_whisperer: str | None = None  # player id, for ``reply``
    resting: bool = False  # the ``rest`` countdown runs (section 9)
    # None: this instance holds the player's sockets.  Otherwise the instance that does, and
    # this presence is a replica fed by its messages (core/cluster.py).
    instance_id: str | None = None
    # Which start of this player's presence this is, ordered across the cluster (a Lamport
    # clock, see Hub._generation): a message about an older one is stale and is ignored.
    generation: int = 0

    @property
    def remote(self) -> bool:
        return self.instance_id is not None

    @property
    def position(self) -> str:
        """What ``stats.position`` shows: resting players sit."""
        return "sitting" if self.resting else "standing"

    def warded(self, now: float) -> bool:
        return now < self.ward_until

    def ward_remaining(self, now: float) -> float:
        return max(0.0, self.ward_until - now)

    def display_name(self, now: float) -> str:
        if self.linkdead:
            return f"{self.name} (linkdead)"
        if self.warded(now):
            return f"{self.name} (warded)"
        return self.name


@attrs.define
class Presences:
    """Every presence on this instance, indexed by id, by name and by room."""

    _by_id: dict[str, Presence] = attrs.field(factory=dict)
    _by_name: dict[str, str] = attrs.field(factory=dict)
    # Rooms map to insertion-ordered dicts so occupant lists keep arrival order.
    _rooms: dict[str, dict[str, None]] = attrs.field(factory=dict)
    # Players added, moved or removed since the runtime last looked (what other instances need
    # to hear about); the hub adds the changes it makes to a presence's fields itself.
    changed: set[str] = attrs.field(factory=set)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Presence]:
        return iter(list(self._by_id.values()))

    def get(self, player_id: str) -> Presence | None:
        return self._by_id.get(player_id)

    def find_by_name(self, name: str) -> Presence | None:
        player_id = self._by_name.get(name.casefold())
        return None if player_id is None else self._by_id[player_id]

    def add(self, presence: Presence) -> None:
        self.changed.add(presence.player_id)
        self._by_id[presence.player_id] = presence
        self._by_name[presence.name.casefold()] = presence.player_id
        self._rooms.setdefault(presence.room_id, {})[presence.player_id] = None

    def remove(self, player_id: str) -> Presence | None:
        presence = self._by_id.pop(player_id, None)
        self.changed.add(player_id)
        if presence is not None:
            self._by_name.pop(presence.name.casefold(), None)
            self._leave_room(presence)
        return presence

    def move(self, player_id: str, room_id: str) -> None:
        presence = self._by_id[player_id]
        old_room = presence.room_id
        left_behind = dict(self._rooms.get(old_room, {}))  # arrival order, for an undo
        self.changed.add(player_id)
        self._leave_room(presence)
        presence.room_id = room_id
        self._rooms.setdefault(room_id, {})[player_id] = None
        note_undo(lambda: self._unmove(player_id, room_id, old_room, left_behind))

    def _unmove(
        self, player_id: str, new_room: str, old_room: str, old_members: dict[str, None]
    ) -> None:
        """Undo a move in the room index (the field is restored by its own journal)."""
        members = self._rooms.get(new_room, {})
        members.pop(player_id, None)
        if not members:
            self._rooms.pop(new_room, None)
        self._rooms[old_room] = old_members

    def in_room(self, room_id: str) -> list[Presence]:
        return [self._by_id[pid] for pid in self._rooms.get(room_id, {})]

    def ids_in_room(self, room_id: str, *, excluding: str | None = None) -> tuple[str, ...]:
        return tuple(pid for pid in self._rooms.get(room_id, {}) if pid != excluding)

    def occupant_names(self, room_id: str, now: float) -> list[str]:
        return [presence.display_name(now) for presence in self.in_room(room_id)]

    def _leave_room(self, presence: Presence) -> None:
        members = self._rooms.get(presence.room_id)
        if members is None:
            return
        members.pop(presence.player_id, None)
        if not members:
            del self._rooms[presence.room_id]
