"""Several instances, one world: what instances tell each other, as data (docs/NATS.md).

Each instance owns the presences of the players whose sockets it holds and keeps replicas of
everyone else's, fed by these messages.  Nothing here does I/O or reads a clock: times are
passed in, and the runtime (``runtime/cluster.py``) publishes and receives.

Subjects (the project's own; MythosMUD's chat subjects are in ``core/bus_messages.py``):
- ``mythos_rt.heartbeat``: every few seconds, the sender's id and all its presences.  It is the
  liveness signal, the snapshot a joining instance needs, and the repair after a broker outage.
- ``mythos_rt.hello``: a new instance asks the others for a heartbeat now.
- ``mythos_rt.presence``: one presence changed (up) or ended (down), as it happens.
- ``mythos_rt.deliver``: an event for players another instance holds, with the ids it is for.
- ``mythos_rt.retired``: a session was superseded or ended on purpose (PROTOCOL.md section 3):
  every instance refuses it for RETIRED_SESSION_S from when it hears of it.
- ``mythos_rt.party``: a party the sender owns changed or was disbanded (the full record).
- ``mythos_rt.party_command``: a party change asked on one instance, for the party's owner.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs

from mythos_rt.core.presence import Presence
from mythos_rt.core.social import Party

HEARTBEAT = "mythos_rt.heartbeat"
HELLO = "mythos_rt.hello"
PRESENCE = "mythos_rt.presence"
DELIVER = "mythos_rt.deliver"
RETIRED = "mythos_rt.retired"
PARTY = "mythos_rt.party"
PARTY_COMMAND = "mythos_rt.party_command"
SUBJECTS = (HEARTBEAT, HELLO, PRESENCE, DELIVER, RETIRED, PARTY, PARTY_COMMAND)
T = TypeVar("T")


class ClusterMessageError(ValueError):
    """An instance message that does not have the expected shape."""


@attrs.frozen
class PresenceRecord:
    """What other instances need to show, route to and find a player."""

    player_id: str
    user_id: str
    name: str
    level: int
    is_admin: bool
    room_id: str
    session_id: str | None
    linkdead: bool
    ward_remaining_s: float
    generation: int  # Presence.generation: newer presences win over stale messages

    @classmethod
    def of(cls, presence: Presence, now: float) -> PresenceRecord:
        return cls(
            player_id=presence.player_id,
            user_id=presence.user_id,
            name=presence.name,
            level=presence.level,
            is_admin=presence.is_admin,
            room_id=presence.room_id,
            session_id=presence.session_id,
            linkdead=presence.linkdead,
            ward_remaining_s=presence.ward_remaining(now),
            generation=presence.generation,
        )

    def replica(self, instance_id: str, now: float) -> Presence:
        return Presence(
            player_id=self.player_id,
            user_id=self.user_id,
            name=self.name,
            level=self.level,
            is_admin=self.is_admin,
            room_id=self.room_id,
            session_id=self.session_id,
            ward_until=now + self.ward_remaining_s,
            linkdead=self.linkdead,
            instance_id=instance_id,
            generation=self.generation,
        )

    def same_as(self, other: PresenceRecord) -> bool:
        """Equal for replication (the ward's remaining time always differs a little)."""
        return attrs.evolve(self, ward_remaining_s=0.0) == attrs.evolve(
            other, ward_remaining_s=0.0
        ) and (self.ward_remaining_s > 0) == (other.ward_remaining_s > 0)


@attrs.frozen
class PartyRecord:
    """A party as its owner holds it."""

    party_id: str
    leader_id: str
    members: tuple[str, ...]
    version: int

    @classmethod
    def of(cls, party: Party) -> PartyRecord:
        return cls(party.party_id, party.leader_id, tuple(party.members), party.version)

    def replica(self, owner: str) -> Party:
        return Party(self.party_id, self.leader_id, list(self.members), owner, self.version)


@attrs.frozen
class Heartbeat:
    instance_id: str
    presences: tuple[PresenceRecord, ...]
    parties: tuple[PartyRecord, ...] = ()  # the parties the sender owns


@attrs.frozen
class PartyChange:
    """A party the sender owns, as it is now (``disbanded``: it ended)."""

    instance_id: str
    party: PartyRecord
    disbanded: bool = False
    # False when the owner delivered nothing (it was shutting down): each instance then tells
    # the members it holds that the party was disbanded.
    members_told: bool = True


@attrs.frozen
class PartyCommand:
    """A party change asked on another instance (``PartyAtOwner``), for ``to_instance``."""

    to_instance: str
    actor_id: str
    args: tuple[str, ...] = ()
    invite_id: str | None = None
    accept: bool | None = None


@attrs.frozen
class PresenceChange:
    instance_id: str
    up: PresenceRecord | None = None  # the presence as it is now
    down: str | None = None  # the player id whose presence ended


@attrs.frozen
class Delivery:
    """An event for players held by other instances; each delivers to its own sockets."""

    event_type: str
    data: Mapping[str, Any]
    to: tuple[str, ...]
    room_id: str | None = None
    player_id: str | None = None
    sender_id: str | None = None  # receivers who muted this player do not get it


@attrs.frozen
class RetiredSession:
    instance_id: str
    player_id: str
    session_id: str


def _strict_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)

    def exact(kind: type) -> Any:
        def check(value: Any, _: type) -> Any:
            if type(value) is not kind and not (kind is float and type(value) is int):
                raise ClusterMessageError(f"expected {kind.__name__}, got {type(value).__name__}")
            return value

        return check

    for kind in (str, int, float, bool):
        converter.register_structure_hook(kind, exact(kind))
    converter.register_structure_hook_func(
        lambda kind: kind == Mapping[str, Any], lambda value, _: _mapping(value)
    )
    # A JSON array only: cattrs would otherwise take a string for a tuple of its characters.
    converter.register_structure_hook_func(
        _is_tuple,
        lambda value, kind: tuple(
            converter.structure(item, typing.get_args(kind)[0]) for item in _array(value)
        ),
    )
    return converter


def _is_tuple(kind: Any) -> bool:
    origin: Any = typing.get_origin(kind)
    return origin is tuple


def _array(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ClusterMessageError("expected an array")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ClusterMessageError("expected an object")
    return value


_CONVERTER = _strict_converter()


ClusterMessage = Heartbeat | PresenceChange | Delivery | RetiredSession | PartyChange | PartyCommand


def encode(message: ClusterMessage) -> bytes:
    return json.dumps(_CONVERTER.unstructure(message), separators=(",", ":")).encode()


def decode_heartbeat(payload: bytes) -> Heartbeat:
    return _decode(payload, Heartbeat)


def decode_presence_change(payload: bytes) -> PresenceChange:
    return _decode(payload, PresenceChange)


def decode_delivery(payload: bytes) -> Delivery:
    return _decode(payload, Delivery)


def decode_retired(payload: bytes) -> RetiredSession:
    return _decode(payload, RetiredSession)


def decode_party_change(payload: bytes) -> PartyChange:
    return _decode(payload, PartyChange)


def decode_party_command(payload: bytes) -> PartyCommand:
    command = _decode(payload, PartyCommand)
    if (command.invite_id is None) != (command.accept is None):
        raise ClusterMessageError("an invite answer needs both invite_id and accept")
    return command


def _no_constant(name: str) -> Any:
    # json.loads takes NaN and Infinity, which no frame may carry: the encoder of what clients
    # receive refuses them (a delivery holding one raised in the cluster pump), and a ward of
    # NaN or Infinity seconds means nothing.
    raise ValueError(f"{name} is not a JSON number")


def _decode(payload: bytes, kind: type[T]) -> T:
    try:
        raw = json.loads(payload, parse_constant=_no_constant)
        return _CONVERTER.structure(raw, kind)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as exc:
        raise ClusterMessageError(f"not a valid {kind.__name__}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError) and exc.exceptions:
        return _reason(exc.exceptions[0])
    return str(exc) or type(exc).__name__


def lost_instances(last_seen: Mapping[str, float], now: float, timeout_s: float) -> list[str]:
    """The instances not heard from for ``timeout_s`` (they died without saying goodbye)."""
    return [instance for instance, seen in last_seen.items() if now - seen >= timeout_s]


def changed_records(
    published: Mapping[str, PresenceRecord], current: Iterable[PresenceRecord]
) -> tuple[list[PresenceRecord], list[str]]:
    """What to announce: presences new or changed since last published, and ids now gone."""
    now_by_id = {record.player_id: record for record in current}
    changed = [
        record
        for player_id, record in now_by_id.items()
        if player_id not in published or not published[player_id].same_as(record)
    ]
    gone = [player_id for player_id in published if player_id not in now_by_id]
    return changed, gone
