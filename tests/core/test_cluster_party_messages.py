"""The party subjects are checked as strictly as the other instance subjects (docs/NATS.md)."""

from __future__ import annotations

import json

import pytest

from mythos_rt.core import cluster
from mythos_rt.core.cluster import ClusterMessageError, PartyChange, PartyCommand, PartyRecord

RECORD = PartyRecord("p-1", "leader", ("leader", "member"), 3)


def test_a_party_change_and_a_party_command_survive_the_trip() -> None:
    change = PartyChange("A", RECORD, disbanded=True, members_told=False)
    assert cluster.decode_party_change(cluster.encode(change)) == change
    command = PartyCommand("A", "member", ("kick", "Dyer"))
    assert cluster.decode_party_command(cluster.encode(command)) == command
    answer = PartyCommand("A", "member", invite_id="i-1", accept=True)
    assert cluster.decode_party_command(cluster.encode(answer)) == answer


def test_a_heartbeat_carries_the_parties_its_sender_owns() -> None:
    heartbeat = cluster.Heartbeat("A", (), (RECORD,))
    assert cluster.decode_heartbeat(cluster.encode(heartbeat)).parties == (RECORD,)


@pytest.mark.parametrize(
    "payload",
    [
        {
            "instance_id": "A",
            "party": {**json.loads(cluster.encode(PartyChange("A", RECORD)))["party"], "extra": 1},
        },
        {
            "instance_id": "A",
            "party": {"party_id": "p", "leader_id": "l", "members": [5], "version": 1},
        },
        {
            "instance_id": "A",
            "party": {"party_id": "p", "leader_id": "l", "members": [], "version": "1"},
        },
        {"instance_id": "A"},
    ],
)
def test_a_malformed_party_change_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ClusterMessageError):
        cluster.decode_party_change(json.dumps(payload).encode())


@pytest.mark.parametrize(
    "payload",
    [
        {"to_instance": "A", "actor_id": "x", "invite_id": "i-1"},  # an answer without accept
        {"to_instance": "A", "actor_id": "x", "accept": True},
        {"to_instance": "A", "actor_id": "x", "args": "leave"},
        {"to_instance": "A", "actor_id": "x", "args": ["leave"], "sender": "B"},
    ],
)
def test_a_malformed_party_command_is_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ClusterMessageError):
        cluster.decode_party_command(json.dumps(payload).encode())
