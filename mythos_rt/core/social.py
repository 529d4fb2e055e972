"""Mutes, follows, parties and pending requests as data (PROTOCOL.md sections 10 and 11).

Owned by the hub like the presences.  Mute expiries are wall-clock epoch seconds (they are stored
and survive restarts); request expiries are trio time (they live only in memory).

Teardown lives here too, as two pure functions the hub calls on every path:
:func:`cancel_requests` when a player's last socket closes, :func:`end_presence` when the
presence ends (grace expiry, quit, logout, shutdown).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from mythos_rt.core.effects import Effect, Emit, reply
from mythos_rt.core.presence import Presences
from mythos_rt.core.writes import DeleteGlobalMute, DeleteMute, SetGlobalMute, SetMute, Write


@attrs.frozen
class KnownPlayer:
    """A player the server knows of, online or not (for mutes of offline players)."""

    player_id: str
    name: str
    is_admin: bool


@attrs.define
class Request:
    request_id: str
    kind: str  # "follow" or "party"
    from_id: str
    to_id: str
    expires_at: float  # trio time
    party_id: str | None = None


@attrs.define
class Party:
    party_id: str
    leader_id: str
    members: list[str]
    # None: this instance owns the party (it holds the leader's presence) and runs every change
    # to it.  Otherwise the owner's instance id, and this is a read-only replica (docs/NATS.md).
    owner: str | None = None
    # Raised by the owner at each change it publishes, and by a new owner taking the party
    # over: a record with a version not above the one held is stale.
    version: int = 0

    @property
    def remote(self) -> bool:
        return self.owner is not None


@attrs.frozen
class SocialSnapshot:
    """Social's relations as they were before a rule ran (core/rollback.py)."""

    following: dict[str, str]
    requests: dict[str, Request]
    parties: dict[str, Party]
    party_of: dict[str, str]
    changed_parties: dict[str, Party]
    party_fields: list[tuple[Party, str, list[str], str | None, int]]


@attrs.define
class Social:
    following: dict[str, str] = attrs.field(factory=dict)  # follower -> followed
    requests: dict[str, Request] = attrs.field(factory=dict)
    parties: dict[str, Party] = attrs.field(factory=dict)
    party_of: dict[str, str] = attrs.field(factory=dict)  # player -> party id
    mutes: dict[str, dict[str, float | None]] = attrs.field(factory=dict)  # muter -> target -> exp
    global_mutes: dict[str, float | None] = attrs.field(factory=dict)  # target -> exp
    # Parties this instance owns that changed (or were disbanded) since the runtime last looked:
    # what other instances need to hear.  Kept as the objects, so a disbanded one is still known.
    changed_parties: dict[str, Party] = attrs.field(factory=dict)

    # --- all or nothing (core/rollback.py) ---------------------------------------------------

    def snapshot(self) -> SocialSnapshot:
        """What a rule may change: the relation dicts (copied) and each party's fields.
        Mute data is changed only by the hub (a committed write, a presence starting or
        ending), never by a rule, so it is left out: the snapshot costs O(relations), not
        O(players)."""
        # Parties are mutable (unhashable): distinct by identity.
        parties = {id(p): p for p in (*self.parties.values(), *self.changed_parties.values())}
        return SocialSnapshot(
            following=dict(self.following),
            requests=dict(self.requests),
            parties=dict(self.parties),
            party_of=dict(self.party_of),
            changed_parties=dict(self.changed_parties),
            party_fields=[
                (party, party.leader_id, list(party.members), party.owner, party.version)
                for party in parties.values()
            ],
        )

    def restore(self, snapshot: SocialSnapshot) -> None:
        self.following = snapshot.following
        self.requests = snapshot.requests
        self.parties = snapshot.parties
        self.party_of = snapshot.party_of
        self.changed_parties = snapshot.changed_parties
        for party, leader_id, members, owner, version in snapshot.party_fields:
            party.leader_id, party.members = leader_id, members
            party.owner, party.version = owner, version

    # --- mutes -----------------------------------------------------------------------------

    def load_mutes(
        self,
        player_id: str,
        personal: Mapping[str, float | None],
        globally_muted: bool,
        global_expires_at: float | None,
    ) -> None:
        self.mutes[player_id] = dict(personal)
        if globally_muted:
            self.global_mutes[player_id] = global_expires_at

    def apply_committed(self, write: Write, presences: Presences) -> None:
        """A mute write has committed: the live state follows it.

        Mute data lives in memory only while its owner's presence does (section 10): a muter who
        left meanwhile has theirs loaded from the store when they come back.
        """
        if isinstance(write, SetMute) and presences.get(write.muter_id) is not None:
            self.mutes.setdefault(write.muter_id, {})[write.target_id] = write.expires_at
        elif isinstance(write, DeleteMute):
            self.mutes.get(write.muter_id, {}).pop(write.target_id, None)
        elif isinstance(write, SetGlobalMute) and _held_here(presences, write.target_id):
            # Not for a replica: only the instance holding the player reads it (the hub tells
            # that instance), and an entry here would outlive an unmute made there.
            self.global_mutes[write.target_id] = write.expires_at
        elif isinstance(write, DeleteGlobalMute):
            self.global_mutes.pop(write.target_id, None)

    @staticmethod
    def mutes_owner(write: Write) -> str:
        """Whose loaded mute data ``write`` changes: the muter's, or the global mute's target."""
        if isinstance(write, SetMute | DeleteMute):
            return write.muter_id
        if isinstance(write, SetGlobalMute | DeleteGlobalMute):
            return write.target_id
        return write.player_id

    def drop_mutes(self, player_id: str) -> None:
        self.mutes.pop(player_id, None)
        self.global_mutes.pop(player_id, None)

    def has_muted(self, receiver_id: str, sender_id: str, wall_now: float) -> bool:
        expires = self.mutes.get(receiver_id, {}).get(sender_id, 0.0)
        return expires is None or expires > wall_now

    def globally_muted(self, player_id: str, wall_now: float) -> bool:
        if player_id not in self.global_mutes:
            return False
        expires = self.global_mutes[player_id]
        return expires is None or expires > wall_now

    def live_mutes(self, player_id: str, wall_now: float) -> dict[str, float | None]:
        return {
            target: expires
            for target, expires in self.mutes.get(player_id, {}).items()
            if expires is None or expires > wall_now
        }

    # --- follows and parties -------------------------------------------------------------

    def followers_of(self, leader_id: str) -> list[str]:
        return [follower for follower, leader in self.following.items() if leader == leader_id]

    def party_for(self, player_id: str) -> Party | None:
        party_id = self.party_of.get(player_id)
        return None if party_id is None else self.parties.get(party_id)

    def party_changed(self, party: Party) -> None:
        if not party.remote:
            self.changed_parties[party.party_id] = party

    def add_party(self, party: Party) -> None:
        self.parties[party.party_id] = party
        for member in party.members:
            self.party_of[member] = party.party_id
        self.party_changed(party)

    def join_party(self, party: Party, player_id: str) -> None:
        party.members.append(player_id)
        self.party_of[player_id] = party.party_id
        self.party_changed(party)

    def remove_party(self, party: Party) -> None:
        for member in party.members:
            if self.party_of.get(member) == party.party_id:
                del self.party_of[member]
        self.parties.pop(party.party_id, None)
        self.party_changed(party)

    def led_by(self, player_id: str) -> list[Party]:
        return [party for party in self.parties.values() if party.leader_id == player_id]

    def live_request(self, request_id: str, kind: str, to_id: str, now: float) -> Request | None:
        request = self.requests.get(request_id)
        if request is None or request.kind != kind or request.to_id != to_id:
            return None
        if request.expires_at <= now:
            del self.requests[request_id]
            return None
        return request

    def pending_for(self, to_id: str, now: float) -> list[Request]:
        """Live requests addressed to ``to_id``, oldest first (the numbering of ``requests``)."""
        live = [r for r in self.requests.values() if r.to_id == to_id and r.expires_at > now]
        return sorted(live, key=lambda request: request.expires_at)

    def expire_requests(self, now: float) -> None:
        for request_id in [r.request_id for r in self.requests.values() if r.expires_at <= now]:
            del self.requests[request_id]


# --- payloads ----------------------------------------------------------------------------


def follow_state(leader_name: str | None) -> dict[str, object]:
    following = (
        None if leader_name is None else {"target_name": leader_name, "target_type": "player"}
    )
    return {"following": following}


def party_update(party: Party, presences: Presences, change: str) -> dict[str, object]:
    return {
        "party_id": party.party_id,
        "leader": _name(presences, party.leader_id),
        "members": [_name(presences, member) for member in party.members],
        "change": change,
    }


def _name(presences: Presences, player_id: str) -> str:
    presence = presences.get(player_id)
    return presence.name if presence is not None else "someone"


# --- party membership changes (shared by commands and teardown) ------------------------


def leave_party(
    social: Social, presences: Presences, player_id: str, change: str = "left"
) -> list[Effect]:
    """Take a player out of their party; a leader leaving disbands it.  Nothing for a party
    owned by another instance: its owner takes them out (the hub asks it, or it sees the
    presence end)."""
    party = social.party_for(player_id)
    if party is None or party.remote:
        return []
    if party.leader_id == player_id:
        return disband(social, presences, party)
    everyone = tuple(party.members)
    party.members.remove(player_id)
    del social.party_of[player_id]
    social.party_changed(party)
    return [Emit("party_update", party_update(party, presences, change), everyone)]


def disband(social: Social, presences: Presences, party: Party) -> list[Effect]:
    """The party ends; every member hears it.  Also for a replica whose leader's presence
    ended everywhere (the hub then delivers only to the members it holds)."""
    everyone = tuple(party.members)
    update = party_update(party, presences, "disbanded")
    social.remove_party(party)
    notices = [reply(m, "The party has been disbanded.") for m in everyone if m != party.leader_id]
    return [Emit("party_update", update, everyone), *notices]


# --- teardown ----------------------------------------------------------------------------

_CANCELLED = {
    "follow": "Follow request was cancelled (player disconnected).",
    "party": "Party invite was cancelled (player disconnected).",
}


def cancel_requests(social: Social, player_id: str) -> list[Effect]:
    """The player's last socket closed: pending requests to or from them are cancelled."""
    effects: list[Effect] = []
    for request in [r for r in social.requests.values() if player_id in (r.from_id, r.to_id)]:
        del social.requests[request.request_id]
        other = request.to_id if request.from_id == player_id else request.from_id
        effects.append(reply(other, _CANCELLED[request.kind]))
    return effects


def stop_following(social: Social, presences: Presences, leader_id: str) -> list[Effect]:
    """The leader is gone: whoever followed them stops.  Call while the leader is present."""
    name = _name(presences, leader_id)
    effects: list[Effect] = []
    for follower in social.followers_of(leader_id):
        del social.following[follower]
        effects.append(reply(follower, f"You are no longer following {name}."))
        effects.append(Emit("follow_state", follow_state(None), (follower,)))
    return effects


def end_presence(
    social: Social, presences: Presences, player_id: str, handed_over: bool = False
) -> list[Effect]:
    """Everything social a presence holds ends with it.  Call before removing the presence.

    ``handed_over``: the presence lives on at another instance, so the player stays in their
    party (whose owner, if it was this instance, the hub has already handed over too) and
    whoever follows them here goes on following (the player's replica walks for them now)."""
    effects = cancel_requests(social, player_id)
    name = _name(presences, player_id)
    leader = social.following.pop(player_id, None)
    if leader is not None:
        effects.append(reply(leader, f"{name} is no longer following you."))
    if not handed_over:
        effects += stop_following(social, presences, player_id)
        effects += leave_party(social, presences, player_id)
    social.drop_mutes(player_id)
    return effects


def _held_here(presences: Presences, player_id: str) -> bool:
    presence = presences.get(player_id)
    return presence is not None and not presence.remote
