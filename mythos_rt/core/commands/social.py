"""mute, unmute, mutes, mute_global, unmute_global, follow, unfollow, following, party, and the
follow/party responses (PROTOCOL.md sections 10 and 11)."""

from __future__ import annotations

import math
import uuid

from mythos_rt.core.chat import ChatLine
from mythos_rt.core.commands.channels import send_line
from mythos_rt.core.effects import Effect, Emit, FindPlayer, PartyAtOwner, Persist, reply
from mythos_rt.core.presence import Presence
from mythos_rt.core.registry import REGISTRY, CommandContext, whole_number
from mythos_rt.core.social import (
    KnownPlayer,
    Party,
    Request,
    follow_state,
    leave_party,
    party_update,
)
from mythos_rt.core.writes import DeleteGlobalMute, DeleteMute, SetGlobalMute, SetMute, Write

MUTE_USAGE = "Usage: mute <player_name> [duration_in_minutes]"
NOT_IN_PARTY = "You are not in a party."


# --- lookups -----------------------------------------------------------------------------


def _known(ctx: CommandContext, name: str) -> KnownPlayer | None:
    online = ctx.presences.find_by_name(name)
    if online is not None:
        return KnownPlayer(online.player_id, online.name, online.is_admin)
    return ctx.directory.get(name.casefold())


def _not_found(ctx: CommandContext, name: str) -> list[Effect]:
    return [reply(ctx.actor.player_id, f"Player '{name}' not found.")]


def _unknown(ctx: CommandContext, name: str) -> list[Effect]:
    """A name of a player who may be offline: ask the store before saying it does not exist."""
    return _not_found(ctx, name) if ctx.store_consulted else [FindPlayer(name)]


def _persist(ctx: CommandContext, write: Write, confirmation: str) -> list[Effect]:
    """Confirm only after the store commits (section 10); the hub applies the change then."""
    confirm = reply(ctx.actor.player_id, confirmation)
    return [Persist(write, ctx.actor.player_id, (confirm,))]


MAX_MUTE_MINUTES = 10 * 365 * 24 * 60  # ten years; longer is what "permanent" is for


def _minutes(args: tuple[str, ...]) -> int | str | None:
    """Duration in minutes, None for permanent, or "bad" for unusable input."""
    if len(args) == 1:
        return None
    minutes = whole_number(args[1], 1, MAX_MUTE_MINUTES) if len(args) == 2 else None
    return "bad" if minutes is None else minutes


def _duration_text(minutes: int | None) -> str:
    return "permanently" if minutes is None else f"for {minutes} minutes"


# --- mute --------------------------------------------------------------------------------


def _mute_target(ctx: CommandContext, args: tuple[str, ...]) -> KnownPlayer | list[Effect]:
    target = _known(ctx, args[0])
    if target is None:
        return _unknown(ctx, args[0])
    if target.player_id == ctx.actor.player_id:
        return [reply(ctx.actor.player_id, "You cannot mute yourself.")]
    if target.is_admin:
        return [reply(ctx.actor.player_id, "Admins cannot be muted.")]
    return target


@REGISTRY.command("mute", usage="mute <name> [minutes]", summary="Stop hearing a player.")
def mute(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    minutes = _minutes(args) if args else "bad"
    if minutes == "bad":
        return [reply(ctx.actor.player_id, MUTE_USAGE)]
    assert not isinstance(minutes, str)
    target = _mute_target(ctx, args)
    if isinstance(target, list):
        return target
    expires = None if minutes is None else ctx.wall_now + minutes * 60
    text = f"You have muted {target.name} {_duration_text(minutes)}."
    return _persist(ctx, SetMute(ctx.actor.player_id, target.player_id, expires), text)


@REGISTRY.command("unmute", usage="unmute <name>", summary="Hear a muted player again.")
def unmute(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    if len(args) != 1:
        return [reply(ctx.actor.player_id, "Usage: unmute <player_name>")]
    target = _known(ctx, args[0])
    if target is None:
        return _unknown(ctx, args[0])
    if not ctx.social.has_muted(ctx.actor.player_id, target.player_id, ctx.wall_now):
        return [reply(ctx.actor.player_id, f"You have not muted {target.name}.")]
    write = DeleteMute(ctx.actor.player_id, target.player_id)
    return _persist(ctx, write, f"You have unmuted {target.name}.")


def _names_by_id(ctx: CommandContext) -> dict[str, str]:
    names = {known.player_id: known.name for known in ctx.directory.values()}
    names.update({p.player_id: p.name for p in ctx.presences})
    return names


@REGISTRY.command("mutes", usage="mutes", summary="List the players you have muted.")
def mutes(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    live = ctx.social.live_mutes(ctx.actor.player_id, ctx.wall_now)
    if not live:
        return [reply(ctx.actor.player_id, "You have not muted anyone.")]
    names = _names_by_id(ctx)
    entries = []
    for target_id, expires in sorted(live.items(), key=lambda item: names.get(item[0], "")):
        left = (
            "permanent"
            if expires is None
            else f"{max(1, round((expires - ctx.wall_now) / 60))} minutes left"
        )
        entries.append(f"{names.get(target_id, target_id)} ({left})")
    return [reply(ctx.actor.player_id, "Muted players: " + ", ".join(entries))]


@REGISTRY.command(
    "mute_global", usage="mute_global <name> [minutes]", summary="Silence a player.", admin=True
)
def mute_global(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    minutes = _minutes(args) if args else "bad"
    if minutes == "bad":
        return [
            reply(ctx.actor.player_id, "Usage: mute_global <player_name> [duration_in_minutes]")
        ]
    assert not isinstance(minutes, str)
    target = _mute_target(ctx, args)
    if isinstance(target, list):
        return target
    expires = None if minutes is None else ctx.wall_now + minutes * 60
    text = f"You have globally muted {target.name} {_duration_text(minutes)}."
    return _persist(ctx, SetGlobalMute(target.player_id, ctx.actor.player_id, expires), text)


@REGISTRY.command(
    "unmute_global", usage="unmute_global <name>", summary="Let a player speak again.", admin=True
)
def unmute_global(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    if len(args) != 1:
        return [reply(ctx.actor.player_id, "Usage: unmute_global <player_name>")]
    target = _known(ctx, args[0])
    if target is None:
        return _unknown(ctx, args[0])
    write = DeleteGlobalMute(target.player_id)
    return _persist(ctx, write, f"You have globally unmuted {target.name}.")


# --- follow ------------------------------------------------------------------------------


def _online(ctx: CommandContext, name: str) -> Presence | None:
    """A player who can answer a request now: online and not linkdead."""
    presence = ctx.presences.find_by_name(name)
    return None if presence is None or presence.linkdead else presence


@REGISTRY.command("follow", usage="follow <name>", summary="Ask to follow a player.")
def follow(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    if len(args) != 1:
        return [reply(actor.player_id, "Usage: follow <player_name>")]
    target = _online(ctx, args[0])
    if target is None:
        return _not_found(ctx, args[0])
    if target.player_id == actor.player_id:
        return [reply(actor.player_id, "You cannot follow yourself.")]
    if actor.player_id in ctx.social.following:
        return [reply(actor.player_id, "You are already following someone. Use /unfollow first.")]
    if ctx.social.has_muted(target.player_id, actor.player_id, ctx.wall_now):
        return [reply(actor.player_id, "They are not accepting follow requests.")]
    request = _open_request(ctx, "follow", target)
    data = {
        "request_id": request.request_id,
        "requestor_name": actor.name,
        "requestor_id": actor.player_id,
    }
    return [
        reply(actor.player_id, "Follow request sent. Waiting for them to accept."),
        Emit("follow_request", data, (target.player_id,), player_id=actor.player_id),
    ]


def _open_request(
    ctx: CommandContext, kind: str, target: Presence, party_id: str | None = None
) -> Request:
    """A pending follow request or party invite from the actor, alive for REQUEST_TTL_S."""
    expires_at = ctx.now + ctx.request_ttl_s
    request = Request(
        ctx.new_id(), kind, ctx.actor.player_id, target.player_id, expires_at, party_id
    )
    ctx.social.requests[request.request_id] = request
    return request


def _valid_id(raw: str) -> bool:
    try:
        uuid.UUID(raw)
    except ValueError:
        return False
    return True


def respond_to_follow(ctx: CommandContext, request_id: str, accept: bool) -> list[Effect]:
    actor = ctx.actor
    if not _valid_id(request_id):
        return [reply(actor.player_id, "Invalid follow response.")]
    request = ctx.social.live_request(request_id, "follow", actor.player_id, ctx.now)
    requester = ctx.presences.get(request.from_id) if request is not None else None
    if request is None or requester is None:
        return [reply(actor.player_id, "Invalid or expired follow request.")]
    del ctx.social.requests[request_id]
    if not accept:
        return [
            reply(actor.player_id, "You declined the follow request."),
            reply(requester.player_id, "Your follow request was declined."),
            Emit("follow_state", follow_state(None), (requester.player_id,)),
        ]
    if requester.player_id in ctx.social.following:
        return [reply(actor.player_id, "Invalid or expired follow request.")]
    ctx.social.following[requester.player_id] = actor.player_id
    return [
        reply(actor.player_id, f"You are now being followed by {requester.name}."),
        reply(requester.player_id, f"You are now following {actor.name}."),
        Emit("follow_state", follow_state(actor.name), (requester.player_id,)),
    ]


@REGISTRY.command("unfollow", usage="unfollow", summary="Stop following.")
def unfollow(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    leader_id = ctx.social.following.pop(actor.player_id, None)
    if leader_id is None:
        return [reply(actor.player_id, "You are not following anyone.")]
    leader = ctx.presences.get(leader_id)
    leader_name = leader.name if leader is not None else "them"
    effects: list[Effect] = [
        reply(actor.player_id, f"You are no longer following {leader_name}."),
        Emit("follow_state", follow_state(None), (actor.player_id,)),
    ]
    if leader is not None:
        effects.append(reply(leader_id, f"{actor.name} is no longer following you."))
    return effects


@REGISTRY.command("following", usage="following", summary="Who you follow, who follows you.")
def following(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    leader = ctx.presences.get(ctx.social.following.get(actor.player_id, ""))
    lines = [f"You are following {leader.name}." if leader else "You are not following anyone."]
    followers = [ctx.presences.get(f) for f in ctx.social.followers_of(actor.player_id)]
    names = [f.name for f in followers if f is not None]
    if names:
        lines.append("Followed by: " + ", ".join(names))
    return [reply(actor.player_id, "\n".join(lines))]


# --- party -------------------------------------------------------------------------------


def _party_invite(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor, social = ctx.actor, ctx.social
    if len(args) != 1:
        return [reply(actor.player_id, "Usage: party invite <player_name>")]
    target = _online(ctx, args[0])
    if target is None:
        return _not_found(ctx, args[0])
    if target.player_id == actor.player_id:
        return [reply(actor.player_id, "You cannot invite yourself.")]
    party = social.party_for(actor.player_id)
    if party is not None and party.leader_id != actor.player_id:
        return [reply(actor.player_id, "Only the party leader can invite.")]
    if social.party_for(target.player_id) is not None:
        return [reply(actor.player_id, f"{target.name} is already in a party.")]
    if social.has_muted(target.player_id, actor.player_id, ctx.wall_now):
        return [reply(actor.player_id, "They are not accepting party invites.")]
    effects: list[Effect] = []
    if party is None:
        party = Party(ctx.new_id(), actor.player_id, [actor.player_id])
        social.add_party(party)
        effects.append(
            Emit("party_update", party_update(party, ctx.presences, "created"), (actor.player_id,))
        )
    invite = _open_request(ctx, "party", target, party.party_id)
    data = {
        "invite_id": invite.request_id,
        "inviter_name": actor.name,
        "inviter_id": actor.player_id,
    }
    return [
        *effects,
        reply(actor.player_id, "Party invite sent. Waiting for them to accept."),
        Emit("party_invite", data, (target.player_id,), player_id=actor.player_id),
    ]


def respond_to_party_invite(ctx: CommandContext, invite_id: str, accept: bool) -> list[Effect]:
    actor, social = ctx.actor, ctx.social
    if not _valid_id(invite_id):
        return [reply(actor.player_id, "Invalid party invite response.")]
    invite = social.live_request(invite_id, "party", actor.player_id, ctx.now)
    party = social.parties.get(invite.party_id or "") if invite is not None else None
    if invite is None or party is None:
        return [reply(actor.player_id, "Invalid or expired party invite.")]
    del social.requests[invite_id]
    if party.owner is not None:
        # A mirror of an invite made on the party's instance: the answer is that instance's.
        return [PartyAtOwner(party.owner, actor.player_id, invite_id=invite_id, accept=accept)]
    if not accept:
        return [
            reply(actor.player_id, "You declined the party invite."),
            reply(invite.from_id, f"{actor.name} declined your party invite."),
        ]
    if social.party_for(actor.player_id) is not None:
        return [reply(actor.player_id, "You are already in a party.")]
    others = tuple(party.members)
    social.join_party(party, actor.player_id)
    leader = ctx.presences.get(party.leader_id)
    leader_name = leader.name if leader is not None else "the leader"
    return [
        reply(actor.player_id, f"You have joined {leader_name}'s party."),
        *(reply(member, f"{actor.name} has joined your party.") for member in others),
        Emit("party_update", party_update(party, ctx.presences, "joined"), tuple(party.members)),
    ]


def _party_list(ctx: CommandContext) -> list[Effect]:
    party = ctx.social.party_for(ctx.actor.player_id)
    if party is None:
        return [reply(ctx.actor.player_id, NOT_IN_PARTY)]
    update = party_update(party, ctx.presences, "list")
    members = update["members"]
    assert isinstance(members, list)
    text = f"Party (leader: {update['leader']}): {', '.join(members)}"
    return [reply(ctx.actor.player_id, text)]


def _party_leave(ctx: CommandContext) -> list[Effect]:
    if ctx.social.party_for(ctx.actor.player_id) is None:
        return [reply(ctx.actor.player_id, NOT_IN_PARTY)]
    effects = leave_party(ctx.social, ctx.presences, ctx.actor.player_id)
    return [reply(ctx.actor.player_id, "You left the party."), *effects]


def _party_kick(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor, social = ctx.actor, ctx.social
    party = social.party_for(actor.player_id)
    if party is None:
        return [reply(actor.player_id, NOT_IN_PARTY)]
    if party.leader_id != actor.player_id:
        return [reply(actor.player_id, "Only the party leader can kick.")]
    if len(args) != 1:
        return [reply(actor.player_id, "Usage: party kick <player_name>")]
    target = ctx.presences.find_by_name(args[0])  # a linkdead member can be kicked too
    if target is None or target.player_id not in party.members:
        return [reply(actor.player_id, f"{args[0]} is not in your party.")]
    if target.player_id == actor.player_id:
        return [reply(actor.player_id, "You cannot kick yourself. Use party leave.")]
    effects = leave_party(social, ctx.presences, target.player_id, change="kicked")
    return [
        reply(actor.player_id, f"You kicked {target.name} from the party."),
        reply(target.player_id, "You have been kicked from the party."),
        *effects,
    ]


def _party_chat(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    actor = ctx.actor
    party = ctx.social.party_for(actor.player_id)
    if party is None:
        return [reply(actor.player_id, NOT_IN_PARTY)]
    text = " ".join(args).strip()
    # Members, the sender included, get the chat_message (section 9).
    line = ChatLine("party", text, f"{actor.name} (party): {text}", tuple(party.members))
    return send_line(ctx, line, "Sent.").effects


PARTY_USAGE = "Usage: party [list | invite <name> | leave | kick <name> | <message>]"
# What changes a party: run by the instance owning it.  Listing and chat only read the party,
# so they run wherever the actor is, on the replica.
_CHANGES = frozenset({"invite", "leave", "kick"})


def _owner_elsewhere(ctx: CommandContext, sub: str) -> str | None:
    party = ctx.social.party_for(ctx.actor.player_id)
    if sub not in _CHANGES or party is None:
        return None  # an invite by someone in no party creates the party here
    return party.owner


@REGISTRY.command("party", usage="party [list|invite|leave|kick|<message>]", summary="Parties.")
def party(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    sub = args[0].lower() if args else "list"
    owner = _owner_elsewhere(ctx, sub)
    if owner is not None:
        return [PartyAtOwner(owner, ctx.actor.player_id, args)]
    if sub == "list" and len(args) <= 1:
        return _party_list(ctx)
    if sub == "invite":
        return _party_invite(ctx, args[1:])
    if sub == "leave" and len(args) == 1:
        return _party_leave(ctx)
    if sub == "kick":
        return _party_kick(ctx, args[1:])
    return _party_chat(ctx, args)


# --- accept, decline, requests -----------------------------------------------------------
# So that follow and party work from any text client: the pending follow requests and party
# invites addressed to the player, by number, answered through the very functions the
# follow_response / party_invite_response frames use.

NO_REQUESTS = "You have no pending requests."


def _answerable(ctx: CommandContext) -> list[Request]:
    """Pending requests that can still be answered, oldest first: number 1 is the oldest."""
    pending = ctx.social.pending_for(ctx.actor.player_id, ctx.now)
    return [
        request
        for request in pending
        if ctx.presences.get(request.from_id) is not None
        and (request.kind == "follow" or request.party_id in ctx.social.parties)
    ]


def _describe_request(ctx: CommandContext, number: int, request: Request) -> str:
    sender = ctx.presences.get(request.from_id)
    name = sender.name if sender is not None else "Someone"
    what = "asks to follow you" if request.kind == "follow" else "invites you to their party"
    seconds_left = max(1, math.ceil(request.expires_at - ctx.now))
    return f"{number}. {name} {what} ({seconds_left} s left)."


@REGISTRY.command(
    "requests", usage="requests", summary="List follow requests and party invites to answer."
)
def requests(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    pending = _answerable(ctx)
    if not pending:
        return [reply(ctx.actor.player_id, NO_REQUESTS)]
    lines = [
        "Pending requests:",
        *(_describe_request(ctx, n, request) for n, request in enumerate(pending, 1)),
        "Answer with 'accept <number>' or 'decline <number>'.",
    ]
    return [reply(ctx.actor.player_id, "\n".join(lines))]


def _answer(ctx: CommandContext, args: tuple[str, ...], accept: bool) -> list[Effect]:
    verb = "accept" if accept else "decline"
    number = whole_number(args[0], 1, 10**9) if len(args) == 1 else None
    if len(args) > 1 or (args and number is None):
        return [reply(ctx.actor.player_id, f"Usage: {verb} [number]")]
    pending = _answerable(ctx)
    if not pending:
        return [reply(ctx.actor.player_id, NO_REQUESTS)]
    if number is not None and number > len(pending):
        count = "one request" if len(pending) == 1 else f"{len(pending)} requests"
        text = f"There is no request {number}: you have {count}. Type 'requests' to list them."
        return [reply(ctx.actor.player_id, text)]
    request = pending[-1] if number is None else pending[number - 1]  # default: the newest
    if request.kind == "follow":
        return respond_to_follow(ctx, request.request_id, accept)
    return respond_to_party_invite(ctx, request.request_id, accept)


@REGISTRY.command(
    "accept",
    usage="accept [number]",
    summary="Accept a follow request or party invite (the newest, or number N of 'requests').",
)
def accept(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    return _answer(ctx, args, accept=True)


@REGISTRY.command(
    "decline",
    usage="decline [number]",
    summary="Decline a follow request or party invite (the newest, or number N of 'requests').",
)
def decline(ctx: CommandContext, args: tuple[str, ...]) -> list[Effect]:
    return _answer(ctx, args, accept=False)
