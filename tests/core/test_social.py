"""Mute, follow and teardown as pure rules (PROTOCOL.md sections 9, 10 and 11).

Everything is driven through ``dispatch`` (and the two response functions the hub calls for
``follow_response`` / ``party_invite_response`` frames) with explicit clocks and deterministic
ids, on the bundled world.  Party commands live in ``test_party.py``, which reuses the small
builders defined here.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence

import pytest

import mythos_rt.core.commands  # noqa: F401  (registers every command)
from mythos_rt.core.chat import ChatLimiter
from mythos_rt.core.commands.social import respond_to_follow, respond_to_party_invite
from mythos_rt.core.effects import Effect, Emit, FindPlayer, Persist
from mythos_rt.core.presence import Presence, Presences
from mythos_rt.core.registry import CommandContext, dispatch
from mythos_rt.core.social import (
    KnownPlayer,
    Party,
    Request,
    Social,
    cancel_requests,
    end_presence,
    follow_state,
    party_update,
)
from mythos_rt.core.writes import (
    DeleteGlobalMute,
    DeleteMute,
    SaveRoom,
    SetGlobalMute,
    SetMute,
    Write,
)
from mythos_rt.world import load_world
from tests.core.defaults import CHAT_LIMITS

NOW = 100.0  # trio time: request expiries
WALL_NOW = 1795635202.9  # epoch seconds: mute expiries
TIMESTAMP = "2026-11-25T19:33:22Z"
MAX_CHARS = 1000
TTL = 60.0

WORLD = load_world(None)
QUAD = "earth_arkhamcity_campus_quad"  # miskatonic_university
LIBRARY = "earth_arkhamcity_campus_library_hall"  # north of the quad, same subzone
RESTRICTED = "earth_arkhamcity_campus_library_restricted"  # up from the library
SCIENCE = "earth_arkhamcity_campus_science_hall"  # east of the quad

MUTE_USAGE = "Usage: mute <player_name> [duration_in_minutes]"
GLOBALLY_MUTED = "You are globally muted and cannot send messages"
NOT_ACCEPTING_FOLLOWS = "They are not accepting follow requests."
NOT_ACCEPTING_INVITES = "They are not accepting party invites."
FOLLOW_SENT = "Follow request sent. Waiting for them to accept."
INVITE_SENT = "Party invite sent. Waiting for them to accept."
BAD_FOLLOW = "Invalid follow response."
EXPIRED_FOLLOW = "Invalid or expired follow request."
BAD_INVITE = "Invalid party invite response."
EXPIRED_INVITE = "Invalid or expired party invite."
FOLLOW_CANCELLED = "Follow request was cancelled (player disconnected)."
INVITE_CANCELLED = "Party invite was cancelled (player disconnected)."

# name -> room; Wyatt is the admin.  Insertion order is arrival order.
CAST: dict[str, str] = {
    "Alice": QUAD,
    "Bob": QUAD,
    "Carl": QUAD,
    "Wyatt": QUAD,
    "Dora": LIBRARY,  # same subzone, another room
}
ADMINS = frozenset({"Wyatt", "Orne"})
OFFLINE = ("Olive", "Orne")  # known to the directory only; Orne is an admin


def pid(name: str) -> str:
    return f"p-{name.lower()}"


def uid(n: int) -> str:
    """The n-th id a :class:`Game` hands out."""
    return str(uuid.UUID(int=n))


class Game:
    """A world, its presences, one Social and the clocks, with a deterministic id counter."""

    def __init__(
        self,
        cast: dict[str, str] | None = None,
        *,
        linkdead: Iterable[str] = (),
    ) -> None:
        self.world = WORLD
        self.presences = Presences()
        self.social = Social()
        self.now = NOW
        self.wall_now = WALL_NOW
        self.chat = ChatLimiter(CHAT_LIMITS, 60.0)
        self._ids = itertools.count(1)
        dead = set(linkdead)
        for name, room in (CAST if cast is None else cast).items():
            self.presences.add(
                Presence(
                    player_id=pid(name),
                    user_id=f"u-{name.lower()}",
                    name=name,
                    level=1,
                    is_admin=name in ADMINS,
                    room_id=room,
                    session_id=None,
                    ward_until=0.0,
                    linkdead=name in dead,
                )
            )
        names = [p.name for p in self.presences] + list(OFFLINE)
        self.directory = {
            name.casefold(): KnownPlayer(pid(name), name, name in ADMINS) for name in names
        }
        # Players the store has but this instance never met (added by the CLI since start-up).
        self.store_only = {"lake": KnownPlayer(pid("Lake"), "Lake", False)}

    def new_id(self) -> str:
        return uid(next(self._ids))

    def presence(self, name: str) -> Presence:
        presence = self.presences.get(pid(name))
        assert presence is not None, name
        return presence

    def ctx(self, actor: str, store_consulted: bool = False) -> CommandContext:
        return CommandContext(
            self.world,
            self.presences,
            self.presence(actor),
            1,
            self.now,
            self.wall_now,
            self.chat,
            new_id=self.new_id,
            social=self.social,
            directory=self.directory,
            request_ttl_s=TTL,
            store_consulted=store_consulted,
        )

    def run(self, actor: str, command: str, *args: str) -> list[Effect | Write]:
        """Run a command, then commit what it persists as the hub does once the store has:
        each :class:`Persist` becomes its confirmation followed by the write that landed."""
        effects = dispatch(self.ctx(actor), command, args, MAX_CHARS)
        lookups = [e for e in effects if isinstance(e, FindPlayer)]
        if lookups:  # the hub asks the store, learns what it finds, and runs the command again
            assert effects == lookups[:1], effects
            found = self.store_only.pop(lookups[0].name.casefold(), None)
            if found is not None:
                self.directory[found.name.casefold()] = found
            effects = dispatch(self.ctx(actor, store_consulted=True), command, args, MAX_CHARS)
        return self.commit(effects)

    def commit(self, effects: Sequence[Effect]) -> list[Effect | Write]:
        settled: list[Effect | Write] = []
        for effect in effects:
            if isinstance(effect, Persist):
                self.social.apply_committed(effect.write, self.presences)
                settled += [*effect.then, effect.write]
            else:
                settled.append(effect)
        return settled

    def answer_follow(self, actor: str, request_id: str, accept: bool) -> list[Effect]:
        return respond_to_follow(self.ctx(actor), request_id, accept)

    def answer_invite(self, actor: str, invite_id: str, accept: bool) -> list[Effect]:
        return respond_to_party_invite(self.ctx(actor), invite_id, accept)

    def request_follow(self, follower: str, leader: str) -> str:
        """``follower`` asks to follow ``leader``; returns the request id."""
        effects = self.run(follower, "follow", leader)
        assert effects[0] == say_to(follower, FOLLOW_SENT), effects
        request_id = effects[1].data["request_id"]  # type: ignore[union-attr]
        assert isinstance(request_id, str)
        return request_id

    def make_follow(self, follower: str, leader: str) -> None:
        request_id = self.request_follow(follower, leader)
        effects = self.answer_follow(leader, request_id, True)
        assert effects[1] == say_to(follower, f"You are now following {leader}."), effects

    def invite(self, leader: str, target: str) -> str:
        """``leader`` invites ``target`` to a party; returns the invite id."""
        effects = self.run(leader, "party", "invite", target)
        assert say_to(leader, INVITE_SENT) in effects, effects
        invite = effects[-1]
        assert isinstance(invite, Emit) and invite.event_type == "party_invite"
        invite_id = invite.data["invite_id"]
        assert isinstance(invite_id, str)
        return invite_id

    def make_party(self, leader: str, *members: str) -> str:
        """A party led by ``leader`` with ``members`` joined in order; returns its id."""
        for member in members:
            effects = self.answer_invite(member, self.invite(leader, member), True)
            assert effects[0] == say_to(member, f"You have joined {leader}'s party."), effects
        party_id = self.social.party_of[pid(leader)]
        return party_id


# --- expected effects ------------------------------------------------------------------------


def say_to(name: str, result: str, **extra: object) -> Emit:
    """The ``command_response`` ``name`` gets."""
    return Emit("command_response", {"result": result, **extra}, (pid(name),))


def ids(*names: str) -> tuple[str, ...]:
    return tuple(pid(name) for name in names)


def emits(effects: Sequence[Effect], event_type: str | None = None) -> list[Emit]:
    return [
        e
        for e in effects
        if isinstance(e, Emit) and (event_type is None or e.event_type == event_type)
    ]


def received_by(effects: Sequence[Effect], name: str) -> list[Emit]:
    return [e for e in emits(effects) if pid(name) in e.to]


def results_for(effects: Sequence[Effect], name: str) -> list[object]:
    return [e.data["result"] for e in emits(effects, "command_response") if e.to == ids(name)]


def chat_recipients(effects: Sequence[Effect]) -> set[str]:
    found = emits(effects, "chat_message")
    assert len(found) == 1, effects
    return set(found[0].to)


def store_writes(effects: Sequence[Effect | Write]) -> list[Write]:
    return [e for e in effects if not isinstance(e, Emit) and isinstance(e, Write)]


def following_payload(leader: str | None) -> dict[str, object]:
    return {
        "following": None if leader is None else {"target_name": leader, "target_type": "player"}
    }


def party_payload(party_id: str, leader: str, members: list[str], change: str) -> dict[str, object]:
    return {"party_id": party_id, "leader": leader, "members": members, "change": change}


def references(social: Social, player_id: str) -> list[str]:
    """Every place in a Social that still mentions ``player_id`` as an actor."""
    found = []
    for follower, leader in social.following.items():
        if player_id in (follower, leader):
            found.append(f"following {follower} -> {leader}")
    for request in social.requests.values():
        if player_id in (request.from_id, request.to_id):
            found.append(f"request {request}")
    for party in social.parties.values():
        if player_id == party.leader_id or player_id in party.members:
            found.append(f"party {party}")
    if player_id in social.party_of:
        found.append("party_of")
    if player_id in social.mutes:
        found.append("mutes")
    if player_id in social.global_mutes:
        found.append("global_mutes")
    return found


# === mute ====================================================================================


@pytest.mark.parametrize(
    ("args", "text", "expires"),
    [
        pytest.param(("Bob", "5"), "You have muted Bob for 5 minutes.", WALL_NOW + 300, id="5"),
        pytest.param(("Bob", "1"), "You have muted Bob for 1 minutes.", WALL_NOW + 60, id="1"),
        pytest.param(("bob", "90"), "You have muted Bob for 90 minutes.", WALL_NOW + 5400, id="90"),
        pytest.param(("Bob",), "You have muted Bob permanently.", None, id="permanent"),
        pytest.param(("BOB",), "You have muted Bob permanently.", None, id="any-case"),
    ],
)
def test_mute_online_player(args: tuple[str, ...], text: str, expires: float | None) -> None:
    game = Game()
    effects = game.run("Alice", "mute", *args)
    assert effects == [
        say_to("Alice", text),
        SetMute(pid("Alice"), pid("Bob"), expires),
    ]
    assert game.social.mutes == {pid("Alice"): {pid("Bob"): expires}}
    assert game.social.has_muted(pid("Alice"), pid("Bob"), game.wall_now)
    assert not game.social.has_muted(pid("Bob"), pid("Alice"), game.wall_now)


def test_mute_offline_player_known_from_the_directory() -> None:
    game = Game()
    effects = game.run("Alice", "mute", "olive", "10")
    assert effects == [
        say_to("Alice", "You have muted Olive for 10 minutes."),
        SetMute(pid("Alice"), pid("Olive"), WALL_NOW + 600),
    ]
    assert game.social.mutes == {pid("Alice"): {pid("Olive"): WALL_NOW + 600}}


def test_a_mute_confirms_and_changes_nothing_until_the_store_commits() -> None:
    game = Game()
    effects = dispatch(game.ctx("Alice"), "mute", ("Bob", "5"), MAX_CHARS)
    confirmation = say_to("Alice", "You have muted Bob for 5 minutes.")
    write = SetMute(pid("Alice"), pid("Bob"), WALL_NOW + 300)
    assert effects == [Persist(write, pid("Alice"), (confirmation,))]
    assert game.social.mutes == {}


@pytest.mark.parametrize("command", ["mute", "unmute", "mute_global", "unmute_global"])
def test_a_name_this_instance_never_met_is_asked_of_the_store(command: str) -> None:
    game = Game()
    effects = dispatch(game.ctx("Wyatt"), command, ("Lake",), MAX_CHARS)
    assert effects == [FindPlayer("Lake")]


def test_a_player_only_the_store_knows_can_be_muted_by_name() -> None:
    game = Game()
    effects = game.run("Alice", "mute", "lake")
    assert effects == [
        say_to("Alice", "You have muted Lake permanently."),
        SetMute(pid("Alice"), pid("Lake"), None),
    ]


def test_a_name_the_store_does_not_know_either_is_not_found() -> None:
    game = Game()
    assert game.run("Alice", "mute", "Nobody") == [say_to("Alice", "Player 'Nobody' not found.")]


def test_mute_again_replaces_the_duration() -> None:
    game = Game()
    game.run("Alice", "mute", "Bob", "5")
    effects = game.run("Alice", "mute", "Bob")
    assert effects == [
        say_to("Alice", "You have muted Bob permanently."),
        SetMute(pid("Alice"), pid("Bob"), None),
    ]
    assert game.social.mutes == {pid("Alice"): {pid("Bob"): None}}


@pytest.mark.parametrize(
    ("command", "args", "text"),
    [
        pytest.param("mute", (), MUTE_USAGE, id="no-args"),
        pytest.param("mute", ("Bob", "abc"), MUTE_USAGE, id="minutes-not-a-number"),
        pytest.param("mute", ("Bob", "0"), MUTE_USAGE, id="zero-minutes"),
        pytest.param("mute", ("Bob", "-5"), MUTE_USAGE, id="negative-minutes"),
        pytest.param("mute", ("Bob", "1.5"), MUTE_USAGE, id="fractional-minutes"),
        pytest.param("mute", ("Bob", ""), MUTE_USAGE, id="empty-minutes"),
        pytest.param("mute", ("Bob", "5", "extra"), MUTE_USAGE, id="too-many-args"),
        pytest.param("mute", ("Nobody",), "Player 'Nobody' not found.", id="unknown"),
        pytest.param("mute", ("Nobody", "5"), "Player 'Nobody' not found.", id="unknown-timed"),
        pytest.param("mute", ("Alice",), "You cannot mute yourself.", id="self"),
        pytest.param("mute", ("Wyatt",), "Admins cannot be muted.", id="online-admin"),
        pytest.param("mute", ("orne", "5"), "Admins cannot be muted.", id="offline-admin"),
        pytest.param("unmute", (), "Usage: unmute <player_name>", id="unmute-no-args"),
        pytest.param("unmute", ("Bob", "x"), "Usage: unmute <player_name>", id="unmute-2-args"),
        pytest.param("unmute", ("Nobody",), "Player 'Nobody' not found.", id="unmute-unknown"),
        pytest.param("unmute", ("Bob",), "You have not muted Bob.", id="unmute-not-muted"),
        pytest.param("unmute", ("olive",), "You have not muted Olive.", id="unmute-offline"),
        pytest.param("mutes", (), "You have not muted anyone.", id="mutes-empty"),
    ],
)
def test_mute_refusals_change_nothing(command: str, args: tuple[str, ...], text: str) -> None:
    game = Game()
    assert game.run("Alice", command, *args) == [say_to("Alice", text)]
    assert game.social.mutes == {}


@pytest.mark.parametrize(
    ("command", "minutes"),
    [
        pytest.param("mute", "²", id="mute-superscript-two"),
        pytest.param("mute", "9" * 400, id="mute-huge"),
        pytest.param("mute_global", "²", id="mute_global-superscript-two"),
        pytest.param("mute_global", "9" * 400, id="mute_global-huge"),
    ],
)
def test_unusable_minutes_get_the_usage_text(command: str, minutes: str) -> None:
    game = Game()
    actor = "Wyatt" if command == "mute_global" else "Alice"
    effects = game.run(actor, command, "Bob", minutes)
    assert len(effects) == 1
    assert effects[0].data["result"].startswith("Usage: ")  # type: ignore[union-attr]
    assert game.social.mutes == {} and game.social.global_mutes == {}


def test_unmute() -> None:
    game = Game()
    game.run("Alice", "mute", "Bob", "5")
    game.run("Alice", "mute", "Carl")
    effects = game.run("Alice", "unmute", "bob")
    assert effects == [
        say_to("Alice", "You have unmuted Bob."),
        DeleteMute(pid("Alice"), pid("Bob")),
    ]
    assert game.social.mutes == {pid("Alice"): {pid("Carl"): None}}
    assert game.run("Alice", "unmute", "Bob") == [say_to("Alice", "You have not muted Bob.")]


def test_unmute_offline_player() -> None:
    game = Game()
    game.run("Alice", "mute", "Olive")
    assert game.run("Alice", "unmute", "Olive") == [
        say_to("Alice", "You have unmuted Olive."),
        DeleteMute(pid("Alice"), pid("Olive")),
    ]
    assert game.social.mutes == {pid("Alice"): {}}


def test_unmute_after_expiry_says_not_muted_and_writes_nothing() -> None:
    game = Game()
    game.run("Alice", "mute", "Bob", "1")
    game.wall_now = WALL_NOW + 60
    assert game.run("Alice", "unmute", "Bob") == [say_to("Alice", "You have not muted Bob.")]
    assert not game.social.has_muted(pid("Alice"), pid("Bob"), game.wall_now)


def test_mutes_lists_live_mutes_by_name() -> None:
    game = Game()
    game.run("Alice", "mute", "Olive")
    game.run("Alice", "mute", "Carl", "10")
    game.run("Alice", "mute", "Bob", "5")
    assert game.run("Alice", "mutes") == [
        say_to(
            "Alice",
            "Muted players: Bob (5 minutes left), Carl (10 minutes left), Olive (permanent)",
        )
    ]
    game.wall_now = WALL_NOW + 180
    assert game.run("Alice", "mutes") == [
        say_to(
            "Alice",
            "Muted players: Bob (2 minutes left), Carl (7 minutes left), Olive (permanent)",
        )
    ]
    game.wall_now = WALL_NOW + 300  # Bob's mute ends exactly now
    assert game.run("Alice", "mutes") == [
        say_to("Alice", "Muted players: Carl (5 minutes left), Olive (permanent)")
    ]
    # Mutes are per player: Bob has muted nobody.
    assert game.run("Bob", "mutes") == [say_to("Bob", "You have not muted anyone.")]


def test_mutes_empty_after_everything_expired_or_unmuted() -> None:
    game = Game()
    game.run("Alice", "mute", "Bob", "1")
    game.run("Alice", "mute", "Carl")
    game.run("Alice", "unmute", "Carl")
    game.wall_now = WALL_NOW + 60
    assert game.run("Alice", "mutes") == [say_to("Alice", "You have not muted anyone.")]


# --- receiver-side filtering on every channel ----------------------------------------------

# (command, args, Alice's echo); Alice, Bob, Carl and Wyatt share the quad, Dora is next door.
CHANNELS = [
    pytest.param("say", ("hi",), "You say: hi", id="say"),
    pytest.param("local", ("hi",), "You say locally: hi", id="local"),
    pytest.param("l", ("hi",), "You say locally: hi", id="l"),
    pytest.param("global", ("hi",), "You say (global): hi", id="global"),
    pytest.param("g", ("hi",), "You say (global): hi", id="g"),
    pytest.param("emote", ("waves",), "Alice waves", id="emote"),
    pytest.param("me", ("waves",), "Alice waves", id="me"),
    pytest.param("pose", ("leans",), "Your pose is now: leans", id="pose"),
]
HEARD_BY = {
    "say": {"Bob", "Carl", "Wyatt"},
    "local": {"Bob", "Carl", "Wyatt", "Dora"},
    "l": {"Bob", "Carl", "Wyatt", "Dora"},
    "global": {"Bob", "Carl", "Wyatt", "Dora"},
    "g": {"Bob", "Carl", "Wyatt", "Dora"},
    "emote": {"Bob", "Carl", "Wyatt"},
    "me": {"Bob", "Carl", "Wyatt"},
    "pose": {"Bob", "Carl", "Wyatt"},
}


@pytest.mark.parametrize(("command", "args", "echo"), CHANNELS)
def test_unmuted_channel_reaches_everyone_in_range(
    command: str, args: tuple[str, ...], echo: str
) -> None:
    game = Game()
    effects = game.run("Alice", command, *args)
    assert effects[0] == say_to("Alice", echo)
    assert chat_recipients(effects) == set(ids(*HEARD_BY[command]))


@pytest.mark.parametrize(("command", "args", "echo"), CHANNELS)
@pytest.mark.parametrize("muter", ["Bob", "Dora"])
def test_mute_filters_every_room_and_wide_channel(
    command: str, args: tuple[str, ...], echo: str, muter: str
) -> None:
    game = Game()
    game.run(muter, "mute", "Alice")
    effects = game.run("Alice", command, *args)
    assert effects[0] == say_to("Alice", echo)  # the sender keeps their echo
    assert chat_recipients(effects) == set(ids(*(HEARD_BY[command] - {muter})))
    assert received_by(effects, muter) == []


@pytest.mark.parametrize(("command", "args", "echo"), CHANNELS)
def test_mute_is_one_way(command: str, args: tuple[str, ...], echo: str) -> None:
    """Alice muting Bob does not stop Bob hearing Alice."""
    game = Game()
    game.run("Alice", "mute", "Bob")
    effects = game.run("Alice", command, *args)
    assert chat_recipients(effects) == set(ids(*HEARD_BY[command]))


def test_whisper_to_a_muter_reaches_nobody_but_echoes() -> None:
    game = Game()
    game.run("Bob", "mute", "Alice", "5")
    effects = game.run("Alice", "whisper", "Bob", "psst")
    assert effects[0] == say_to("Alice", "You whisper to Bob: psst")
    assert chat_recipients(effects) == set()
    assert received_by(effects, "Bob") == []


def test_whisper_without_mute_reaches_the_target() -> None:
    game = Game()
    effects = game.run("Alice", "whisper", "Bob", "psst")
    assert effects[0] == say_to("Alice", "You whisper to Bob: psst")
    assert chat_recipients(effects) == {pid("Bob")}


@pytest.mark.parametrize("how", ["muted-by-target", "globally-muted-sender"])
def test_undelivered_whisper_leaves_reply_alone(how: str) -> None:
    game = Game()
    if how == "muted-by-target":
        game.run("Bob", "mute", "Alice")
    else:
        game.run("Wyatt", "mute_global", "Alice")
    game.run("Alice", "whisper", "Bob", "psst")
    assert game.presence("Bob").last_whisperer is None
    assert game.run("Bob", "reply", "what?") == [
        say_to("Bob", "No one has whispered to you recently.")
    ]


def test_muted_sender_is_still_heard_by_others_in_the_exact_payload() -> None:
    game = Game()
    game.run("Bob", "mute", "Alice")
    effects = game.run("Alice", "say", "hello")
    assert effects == [
        say_to("Alice", "You say: hello"),
        Emit(
            "chat_message",
            {
                "sender_id": pid("Alice"),
                "player_name": "Alice",
                "channel": "say",
                "message": "Alice says: hello",
                "message_id": uid(1),
                "timestamp": TIMESTAMP,
                "original_content": "hello",
            },
            ids("Carl", "Wyatt"),
            room_id=QUAD,
            player_id=pid("Alice"),
        ),
    ]


def test_party_chat_respects_mutes() -> None:
    game = Game()
    game.make_party("Alice", "Bob", "Carl")
    game.run("Bob", "mute", "Alice")
    effects = game.run("Alice", "party", "hello", "team")
    assert effects[0] == say_to("Alice", "Sent.")
    assert chat_recipients(effects) == set(ids("Alice", "Carl"))
    assert received_by(effects, "Bob") == []


@pytest.mark.parametrize(
    ("minutes", "offset", "muted"),
    [
        pytest.param("1", 0.0, True, id="at-start"),
        pytest.param("1", 59.9, True, id="just-before-expiry"),
        pytest.param("1", 60.0, False, id="exactly-at-expiry"),
        pytest.param("1", 61.0, False, id="after-expiry"),
        pytest.param(None, 10**9, True, id="permanent"),
    ],
)
def test_timed_mute_stops_at_its_expiry(minutes: str | None, offset: float, muted: bool) -> None:
    game = Game()
    game.run("Bob", "mute", "Alice", *([minutes] if minutes else []))
    game.wall_now = WALL_NOW + offset
    for command, args, _echo in (p.values for p in CHANNELS):
        effects = game.run("Alice", command, *args)
        assert (pid("Bob") in chat_recipients(effects)) is not muted, command
    effects = game.run("Alice", "whisper", "Bob", "psst")
    assert (pid("Bob") in chat_recipients(effects)) is not muted
    assert game.social.has_muted(pid("Bob"), pid("Alice"), game.wall_now) is muted


# --- mutes refuse follow requests and party invites ----------------------------------------


def test_mute_refuses_follow_requests() -> None:
    game = Game()
    game.run("Bob", "mute", "Alice", "1")
    assert game.run("Alice", "follow", "Bob") == [say_to("Alice", NOT_ACCEPTING_FOLLOWS)]
    assert game.social.requests == {}
    game.wall_now = WALL_NOW + 60  # the mute ends
    assert game.run("Alice", "follow", "Bob")[0] == say_to("Alice", FOLLOW_SENT)


def test_mute_refuses_party_invites_and_creates_no_party() -> None:
    game = Game()
    game.run("Bob", "mute", "Alice")
    assert game.run("Alice", "party", "invite", "Bob") == [say_to("Alice", NOT_ACCEPTING_INVITES)]
    assert game.social.requests == {}
    assert game.social.parties == {} and game.social.party_of == {}


def test_muting_the_target_does_not_stop_your_own_requests() -> None:
    """Alice muting Bob does not stop Alice from asking Bob (the mute is Bob-side only)."""
    game = Game()
    game.run("Alice", "mute", "Bob")
    assert game.run("Alice", "follow", "Bob")[0] == say_to("Alice", FOLLOW_SENT)


# --- mute_global ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["mute_global", "unmute_global"])
def test_global_mute_commands_are_unknown_to_non_admins(command: str) -> None:
    game = Game()
    assert game.run("Alice", command, "Bob") == [
        say_to("Alice", f"Unknown command: {command}. Use 'help' for available commands.")
    ]
    assert game.social.global_mutes == {}


@pytest.mark.parametrize(
    ("args", "text", "expires"),
    [
        pytest.param(
            ("Alice", "10"),
            "You have globally muted Alice for 10 minutes.",
            WALL_NOW + 600,
            id="10",
        ),
        pytest.param(("alice",), "You have globally muted Alice permanently.", None, id="perm"),
    ],
)
def test_mute_global(args: tuple[str, ...], text: str, expires: float | None) -> None:
    game = Game()
    effects = game.run("Wyatt", "mute_global", *args)
    assert effects == [
        say_to("Wyatt", text),
        SetGlobalMute(pid("Alice"), pid("Wyatt"), expires),
    ]
    assert game.social.global_mutes == {pid("Alice"): expires}
    assert game.social.mutes == {}


def test_mute_global_of_an_offline_player_is_stored_only() -> None:
    game = Game()
    effects = game.run("Wyatt", "mute_global", "Olive", "5")
    assert effects == [
        say_to("Wyatt", "You have globally muted Olive for 5 minutes."),
        SetGlobalMute(pid("Olive"), pid("Wyatt"), WALL_NOW + 300),
    ]
    assert game.social.global_mutes == {}  # loaded when Olive's presence starts


@pytest.mark.parametrize(
    ("command", "args", "text"),
    [
        pytest.param(
            "mute_global",
            (),
            "Usage: mute_global <player_name> [duration_in_minutes]",
            id="no-args",
        ),
        pytest.param(
            "mute_global",
            ("Alice", "soon"),
            "Usage: mute_global <player_name> [duration_in_minutes]",
            id="bad-minutes",
        ),
        pytest.param(
            "mute_global",
            ("Alice", "5", "x"),
            "Usage: mute_global <player_name> [duration_in_minutes]",
            id="too-many",
        ),
        pytest.param("mute_global", ("Nobody",), "Player 'Nobody' not found.", id="unknown"),
        pytest.param("mute_global", ("Wyatt",), "You cannot mute yourself.", id="self"),
        pytest.param("mute_global", ("Orne",), "Admins cannot be muted.", id="admin"),
        pytest.param("unmute_global", (), "Usage: unmute_global <player_name>", id="un-no-args"),
        pytest.param("unmute_global", ("Nobody",), "Player 'Nobody' not found.", id="un-unknown"),
    ],
)
def test_global_mute_refusals(command: str, args: tuple[str, ...], text: str) -> None:
    game = Game()
    assert game.run("Wyatt", command, *args) == [say_to("Wyatt", text)]
    assert game.social.global_mutes == {}


def test_unmute_global() -> None:
    game = Game()
    game.run("Wyatt", "mute_global", "Alice")
    effects = game.run("Wyatt", "unmute_global", "alice")
    assert effects == [
        say_to("Wyatt", "You have globally unmuted Alice."),
        DeleteGlobalMute(pid("Alice")),
    ]
    assert game.social.global_mutes == {}
    assert game.run("Alice", "say", "free")[0] == say_to("Alice", "You say: free")


# (command, args, who would hear it, which of them are admins)
GLOBALLY_MUTED_CHANNELS = [
    pytest.param("say", ("hi",), {"Wyatt"}, id="say"),
    pytest.param("local", ("hi",), {"Wyatt"}, id="local"),
    pytest.param("global", ("hi",), {"Wyatt"}, id="global"),
    pytest.param("emote", ("waves",), {"Wyatt"}, id="emote"),
    pytest.param("pose", ("leans",), {"Wyatt"}, id="pose"),
    pytest.param("whisper", ("Bob", "psst"), set(), id="whisper-player"),
    pytest.param("whisper", ("Wyatt", "psst"), {"Wyatt"}, id="whisper-admin"),
]


@pytest.mark.parametrize(("command", "args", "admins"), GLOBALLY_MUTED_CHANNELS)
def test_globally_muted_sender_reaches_only_admins_in_range(
    command: str, args: tuple[str, ...], admins: set[str]
) -> None:
    game = Game()
    game.run("Wyatt", "mute_global", "Alice")
    effects = game.run("Alice", command, *args)
    assert effects[0] == say_to("Alice", GLOBALLY_MUTED)
    assert len(effects) == 2
    assert chat_recipients(effects) == set(ids(*admins))


def test_globally_muted_line_misses_an_admin_out_of_range() -> None:
    game = Game({"Alice": QUAD, "Bob": QUAD, "Wyatt": LIBRARY})
    game.run("Wyatt", "mute_global", "Alice")
    effects = game.run("Alice", "say", "hi")
    assert effects[0] == say_to("Alice", GLOBALLY_MUTED)
    assert chat_recipients(effects) == set()
    effects = game.run("Alice", "local", "hi")
    assert chat_recipients(effects) == {pid("Wyatt")}


def test_globally_muted_sender_cannot_party_chat() -> None:
    game = Game()
    game.make_party("Alice", "Bob", "Wyatt")
    game.run("Wyatt", "mute_global", "Alice")
    effects = game.run("Alice", "party", "hi")
    assert effects[0] == say_to("Alice", GLOBALLY_MUTED)
    assert chat_recipients(effects) <= {pid("Wyatt")}


@pytest.mark.parametrize(
    ("offset", "muted"),
    [
        pytest.param(299.9, True, id="before"),
        pytest.param(300.0, False, id="exactly-at-expiry"),
        pytest.param(301.0, False, id="after"),
    ],
)
def test_global_mute_expires(offset: float, muted: bool) -> None:
    game = Game()
    game.run("Wyatt", "mute_global", "Alice", "5")
    game.wall_now = WALL_NOW + offset
    effects = game.run("Alice", "say", "hi")
    expected_echo = GLOBALLY_MUTED if muted else "You say: hi"
    assert effects[0] == say_to("Alice", expected_echo)
    assert chat_recipients(effects) == (
        {pid("Wyatt")} if muted else set(ids("Bob", "Carl", "Wyatt"))
    )


def test_globally_muted_player_can_still_use_other_commands() -> None:
    game = Game()
    game.run("Wyatt", "mute_global", "Alice")
    assert game.run("Alice", "follow", "Bob")[0] == say_to("Alice", FOLLOW_SENT)
    assert game.run("Alice", "mute", "Carl") == [
        say_to("Alice", "You have muted Carl permanently."),
        SetMute(pid("Alice"), pid("Carl"), None),
    ]


# --- mute state loaded and dropped with the presence ---------------------------------------


def test_load_and_drop_mutes() -> None:
    social = Social()
    social.load_mutes(pid("Alice"), {pid("Bob"): None, pid("Carl"): WALL_NOW + 60}, True, None)
    social.load_mutes(pid("Bob"), {}, False, None)
    social.load_mutes(pid("Carl"), {}, True, WALL_NOW + 5)
    assert social.mutes == {
        pid("Alice"): {pid("Bob"): None, pid("Carl"): WALL_NOW + 60},
        pid("Bob"): {},
        pid("Carl"): {},
    }
    assert social.global_mutes == {pid("Alice"): None, pid("Carl"): WALL_NOW + 5}
    assert social.globally_muted(pid("Alice"), WALL_NOW + 10**9)
    assert social.globally_muted(pid("Carl"), WALL_NOW + 4.9)
    assert not social.globally_muted(pid("Carl"), WALL_NOW + 5)
    assert not social.globally_muted(pid("Bob"), WALL_NOW)
    assert social.live_mutes(pid("Alice"), WALL_NOW + 60) == {pid("Bob"): None}
    social.drop_mutes(pid("Alice"))
    social.drop_mutes(pid("Nobody"))  # harmless
    assert pid("Alice") not in social.mutes and pid("Alice") not in social.global_mutes
    assert social.global_mutes == {pid("Carl"): WALL_NOW + 5}


# === follow ==================================================================================


def test_follow_request() -> None:
    game = Game()
    effects = game.run("Alice", "follow", "bob")
    assert effects == [
        say_to("Alice", FOLLOW_SENT),
        Emit(
            "follow_request",
            {"request_id": uid(1), "requestor_name": "Alice", "requestor_id": pid("Alice")},
            ids("Bob"),
            player_id=pid("Alice"),
        ),
    ]
    assert game.social.requests == {
        uid(1): Request(uid(1), "follow", pid("Alice"), pid("Bob"), NOW + TTL)
    }
    assert game.social.following == {}


@pytest.mark.parametrize(
    ("args", "text"),
    [
        pytest.param((), "Usage: follow <player_name>", id="no-args"),
        pytest.param(("Bob", "Carl"), "Usage: follow <player_name>", id="two-names"),
        pytest.param(("Nobody",), "Player 'Nobody' not found.", id="unknown"),
        pytest.param(("Olive",), "Player 'Olive' not found.", id="offline"),
        pytest.param(("Alice",), "You cannot follow yourself.", id="self"),
        pytest.param(("alice",), "You cannot follow yourself.", id="self-any-case"),
    ],
)
def test_follow_refusals(args: tuple[str, ...], text: str) -> None:
    game = Game()
    assert game.run("Alice", "follow", *args) == [say_to("Alice", text)]
    assert game.social.requests == {}


def test_follow_while_already_following() -> None:
    game = Game()
    game.make_follow("Alice", "Bob")
    assert game.run("Alice", "follow", "Carl") == [
        say_to("Alice", "You are already following someone. Use /unfollow first.")
    ]
    assert game.social.requests == {}
    assert game.social.following == {pid("Alice"): pid("Bob")}


def test_follow_accept() -> None:
    game = Game()
    request_id = game.request_follow("Alice", "Bob")
    effects = game.answer_follow("Bob", request_id, True)
    assert effects == [
        say_to("Bob", "You are now being followed by Alice."),
        say_to("Alice", "You are now following Bob."),
        Emit("follow_state", following_payload("Bob"), ids("Alice")),
    ]
    assert following_payload("Bob") == follow_state("Bob")
    assert game.social.following == {pid("Alice"): pid("Bob")}
    assert game.social.requests == {}
    # The request is used up.
    assert game.answer_follow("Bob", request_id, True) == [say_to("Bob", EXPIRED_FOLLOW)]


def test_follow_decline() -> None:
    game = Game()
    request_id = game.request_follow("Alice", "Bob")
    effects = game.answer_follow("Bob", request_id, False)
    assert effects == [
        say_to("Bob", "You declined the follow request."),
        say_to("Alice", "Your follow request was declined."),
        Emit("follow_state", following_payload(None), ids("Alice")),
    ]
    assert game.social.following == {}
    assert game.social.requests == {}


@pytest.mark.parametrize(
    "request_id",
    ["", "not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g", "x" * 40],
)
@pytest.mark.parametrize("accept", [True, False])
def test_follow_response_with_a_malformed_id(request_id: str, accept: bool) -> None:
    game = Game()
    game.request_follow("Alice", "Bob")
    assert game.answer_follow("Bob", request_id, accept) == [say_to("Bob", BAD_FOLLOW)]
    assert len(game.social.requests) == 1


@pytest.mark.parametrize("accept", [True, False])
def test_follow_response_to_an_unknown_request(accept: bool) -> None:
    game = Game()
    game.request_follow("Alice", "Bob")
    assert game.answer_follow("Bob", uid(999), accept) == [say_to("Bob", EXPIRED_FOLLOW)]
    assert len(game.social.requests) == 1


@pytest.mark.parametrize("accept", [True, False])
def test_follow_response_to_someone_elses_request(accept: bool) -> None:
    game = Game()
    request_id = game.request_follow("Alice", "Bob")
    for other in ("Carl", "Alice"):  # a bystander, and the requester answering themselves
        assert game.answer_follow(other, request_id, accept) == [say_to(other, EXPIRED_FOLLOW)]
    assert game.social.following == {}
    # Still Bob's to answer.
    assert game.answer_follow("Bob", request_id, True)[0] == say_to(
        "Bob", "You are now being followed by Alice."
    )


def test_follow_response_with_a_party_invite_id() -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    assert game.answer_follow("Bob", invite_id, True) == [say_to("Bob", EXPIRED_FOLLOW)]
    assert invite_id in game.social.requests


@pytest.mark.parametrize(
    ("offset", "valid"),
    [
        pytest.param(0.0, True, id="at-once"),
        pytest.param(59.999, True, id="just-before"),
        pytest.param(60.0, False, id="exactly-at-expiry"),
        pytest.param(600.0, False, id="long-after"),
    ],
)
@pytest.mark.parametrize("accept", [True, False])
def test_follow_request_expires(offset: float, valid: bool, accept: bool) -> None:
    game = Game()
    request_id = game.request_follow("Alice", "Bob")
    assert game.social.requests[request_id].expires_at == NOW + 60.0
    game.now = NOW + offset
    effects = game.answer_follow("Bob", request_id, accept)
    if valid:
        assert effects[0] != say_to("Bob", EXPIRED_FOLLOW)
        assert (pid("Alice") in game.social.following) is accept
    else:
        assert effects == [say_to("Bob", EXPIRED_FOLLOW)]
        assert game.social.following == {}
    assert game.social.requests == {}


def test_follow_accept_when_the_requester_went_away() -> None:
    game = Game()
    request_id = game.request_follow("Alice", "Bob")
    game.presences.remove(pid("Alice"))
    assert game.answer_follow("Bob", request_id, True) == [say_to("Bob", EXPIRED_FOLLOW)]
    assert game.social.following == {}


def test_follow_accept_when_the_requester_already_follows_someone_else() -> None:
    game = Game()
    to_bob = game.request_follow("Alice", "Bob")
    to_carl = game.request_follow("Alice", "Carl")
    game.answer_follow("Carl", to_carl, True)
    assert game.answer_follow("Bob", to_bob, True) == [say_to("Bob", EXPIRED_FOLLOW)]
    assert game.social.following == {pid("Alice"): pid("Carl")}
    assert game.social.requests == {}


def test_unfollow() -> None:
    game = Game()
    game.make_follow("Alice", "Bob")
    assert game.run("Alice", "unfollow") == [
        say_to("Alice", "You are no longer following Bob."),
        Emit("follow_state", following_payload(None), ids("Alice")),
        say_to("Bob", "Alice is no longer following you."),
    ]
    assert game.social.following == {}
    assert game.run("Alice", "unfollow") == [say_to("Alice", "You are not following anyone.")]


def test_following() -> None:
    game = Game()
    assert game.run("Alice", "following") == [say_to("Alice", "You are not following anyone.")]
    game.make_follow("Alice", "Bob")
    game.make_follow("Carl", "Alice")
    game.make_follow("Dora", "Alice")
    assert game.run("Alice", "following") == [
        say_to("Alice", "You are following Bob.\nFollowed by: Carl, Dora")
    ]
    assert game.run("Bob", "following") == [
        say_to("Bob", "You are not following anyone.\nFollowed by: Alice")
    ]
    assert game.run("Carl", "following") == [say_to("Carl", "You are following Alice.")]


# --- followers move with their leader ------------------------------------------------------


def room_state(room_id: str, names: list[str]) -> dict[str, object]:
    room = WORLD.rooms[room_id]
    return {
        "room": {
            "id": room.id,
            "name": room.name,
            "description": room.description,
            "zone": room.zone,
            "subzone": room.subzone,
            "exits": dict(room.exits),
            "players": names,
            "npcs": [],
            "occupants": names,
        },
        "occupants": names,
        "occupant_count": len(names),
    }


def occupants(names: list[str]) -> dict[str, object]:
    return {"players": names, "npcs": [], "occupants": names, "count": len(names)}


def moved(
    name: str,
    result: str,
    origin: str,
    destination: str,
    left_behind: list[str],
    arrived_to: list[str],
) -> list[Effect]:
    """The effects of ``name`` walking from ``origin`` to ``destination``.

    ``left_behind``: who is still in the origin afterwards; ``arrived_to``: who is in the
    destination afterwards, in arrival order (``name`` last).
    """
    state = room_state(destination, arrived_to)
    who = {"player_id": pid(name), "player_name": name}
    met = [other for other in arrived_to if other != name]
    return [
        say_to(name, result, room_changed=True, room_id=destination, room_state=state),
        Emit("room_state", state, ids(name), room_id=destination),
        Emit(
            "player_left",
            {**who, "message": f"{name} leaves the room."},
            ids(*left_behind),
            room_id=origin,
        ),
        Emit("room_occupants", occupants(left_behind), ids(*left_behind), room_id=origin),
        Emit(
            "player_entered",
            {**who, "message": f"{name} enters the room."},
            ids(*met),
            room_id=destination,
        ),
        Emit("room_occupants", occupants(arrived_to), ids(name, *met), room_id=destination),
        SaveRoom(pid(name), destination),
    ]


def rooms_of(game: Game) -> dict[str, str]:
    return {p.name: p.room_id for p in game.presences}


MOVE_CAST = {"Alice": QUAD, "Bob": QUAD, "Carl": QUAD, "Dora": LIBRARY}


def test_follower_in_the_same_room_moves_with_the_leader() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Alice", "Bob")
    effects = game.run("Bob", "north")
    assert effects == [
        *moved("Bob", "You go north.", QUAD, LIBRARY, ["Alice", "Carl"], ["Dora", "Bob"]),
        *moved(
            "Alice",
            "You follow Bob north.",
            QUAD,
            LIBRARY,
            ["Carl"],
            ["Dora", "Bob", "Alice"],
        ),
    ]
    assert rooms_of(game) == {"Alice": LIBRARY, "Bob": LIBRARY, "Carl": QUAD, "Dora": LIBRARY}
    assert game.social.following == {pid("Alice"): pid("Bob")}


def test_followers_keep_following_room_after_room() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Alice", "Bob")
    game.run("Bob", "go", "n")
    effects = game.run("Bob", "up")
    assert results_for(effects, "Bob") == ["You go up."]
    assert results_for(effects, "Alice") == ["You follow Bob up."]
    assert rooms_of(game)["Alice"] == RESTRICTED
    assert rooms_of(game)["Dora"] == LIBRARY


def test_several_followers_move_in_the_order_they_started_following() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Carl", "Bob")
    game.make_follow("Alice", "Bob")
    effects = game.run("Bob", "east")
    responses = [(e.to, e.data["result"]) for e in emits(effects, "command_response")]
    assert responses == [
        (ids("Bob"), "You go east."),
        (ids("Carl"), "You follow Bob east."),
        (ids("Alice"), "You follow Bob east."),
    ]
    assert rooms_of(game) == {"Alice": SCIENCE, "Bob": SCIENCE, "Carl": SCIENCE, "Dora": LIBRARY}


def test_follower_in_another_room_stays() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Dora", "Bob")
    effects = game.run("Bob", "east")
    assert results_for(effects, "Dora") == []
    assert rooms_of(game)["Dora"] == LIBRARY
    assert rooms_of(game)["Bob"] == SCIENCE
    assert game.social.following == {pid("Dora"): pid("Bob")}  # still following


def test_linkdead_follower_stays() -> None:
    game = Game(MOVE_CAST, linkdead=["Alice"])
    game.social.following[pid("Alice")] = pid("Bob")
    effects = game.run("Bob", "north")
    bob_moves = moved("Bob", "You go north.", QUAD, LIBRARY, ["Alice", "Carl"], ["Dora", "Bob"])
    linkdead_left_behind = Emit(
        "room_occupants",
        occupants(["Alice (linkdead)", "Carl"]),
        ids("Alice", "Carl"),
        room_id=QUAD,
    )
    assert effects == [*bob_moves[:3], linkdead_left_behind, *bob_moves[4:]]
    assert rooms_of(game)["Alice"] == QUAD


def test_leader_blocked_means_nobody_moves() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Alice", "Bob")
    assert game.run("Bob", "up") == [say_to("Bob", "You can't go that way.")]
    assert rooms_of(game) == MOVE_CAST


def test_a_follower_walking_alone_leaves_the_leader_behind() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Alice", "Bob")
    effects = game.run("Alice", "north")
    assert results_for(effects, "Alice") == ["You go north."]
    assert results_for(effects, "Bob") == []
    assert rooms_of(game)["Bob"] == QUAD


def test_a_chain_moves_together() -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Bob", "Carl")  # Bob follows Carl
    game.make_follow("Alice", "Bob")  # Alice follows Bob
    effects = game.run("Carl", "north")
    assert effects == [
        *moved("Carl", "You go north.", QUAD, LIBRARY, ["Alice", "Bob"], ["Dora", "Carl"]),
        *moved("Bob", "You follow Carl north.", QUAD, LIBRARY, ["Alice"], ["Dora", "Carl", "Bob"]),
        *moved(
            "Alice",
            "You follow Bob north.",
            QUAD,
            LIBRARY,
            [],
            ["Dora", "Carl", "Bob", "Alice"],
        ),
    ]
    assert rooms_of(game) == {n: LIBRARY for n in MOVE_CAST}


def test_a_chain_breaks_at_a_linkdead_link() -> None:
    game = Game(MOVE_CAST, linkdead=["Bob"])
    game.social.following.update({pid("Bob"): pid("Carl"), pid("Alice"): pid("Bob")})
    effects = game.run("Carl", "north")
    assert [e.data["result"] for e in emits(effects, "command_response")] == ["You go north."]
    assert rooms_of(game) == {**MOVE_CAST, "Carl": LIBRARY}


@pytest.mark.parametrize("mover", ["Alice", "Bob"])
def test_a_follow_cycle_moves_each_player_once(mover: str) -> None:
    game = Game(MOVE_CAST)
    game.make_follow("Alice", "Bob")
    game.make_follow("Bob", "Alice")  # a cycle is allowed; moving must still terminate
    other = "Bob" if mover == "Alice" else "Alice"
    effects = game.run(mover, "north")
    responses = [(e.to, e.data["result"]) for e in emits(effects, "command_response")]
    assert responses == [
        (ids(mover), "You go north."),
        (ids(other), f"You follow {mover} north."),
    ]
    assert [e for e in effects if isinstance(e, SaveRoom)] == [
        SaveRoom(pid(mover), LIBRARY),
        SaveRoom(pid(other), LIBRARY),
    ]
    assert rooms_of(game) == {"Alice": LIBRARY, "Bob": LIBRARY, "Carl": QUAD, "Dora": LIBRARY}


def test_a_three_way_cycle_moves_each_player_once() -> None:
    game = Game(MOVE_CAST)
    game.social.following.update(
        {pid("Alice"): pid("Bob"), pid("Bob"): pid("Carl"), pid("Carl"): pid("Alice")}
    )
    effects = game.run("Carl", "north")
    assert [e.data["result"] for e in emits(effects, "command_response")] == [
        "You go north.",
        "You follow Carl north.",
        "You follow Bob north.",
    ]
    assert len([e for e in effects if isinstance(e, SaveRoom)]) == 3


# === teardown ================================================================================


def test_cancel_requests_cancels_both_directions_and_keeps_the_rest() -> None:
    game = Game()
    from_alice = game.request_follow("Alice", "Bob")
    to_alice = game.invite("Carl", "Alice")
    alice_invites = game.invite("Alice", "Dora")
    unrelated = game.request_follow("Bob", "Carl")
    follow_to_alice = game.request_follow("Wyatt", "Alice")
    assert {from_alice, to_alice, alice_invites, unrelated, follow_to_alice} <= set(
        game.social.requests
    )
    effects = cancel_requests(game.social, pid("Alice"))
    assert effects == [
        say_to("Bob", FOLLOW_CANCELLED),
        say_to("Carl", INVITE_CANCELLED),
        say_to("Dora", INVITE_CANCELLED),
        say_to("Wyatt", FOLLOW_CANCELLED),
    ]
    assert list(game.social.requests) == [unrelated]
    # Only requests end: the presence lives on (disconnect grace), so does its party.
    assert game.social.party_of[pid("Alice")] in game.social.parties
    assert game.answer_invite("Dora", alice_invites, True) == [say_to("Dora", EXPIRED_INVITE)]
    assert game.answer_follow("Bob", from_alice, True) == [say_to("Bob", EXPIRED_FOLLOW)]


def test_cancel_requests_with_nothing_pending() -> None:
    game = Game()
    game.make_follow("Alice", "Bob")
    assert cancel_requests(game.social, pid("Alice")) == []
    assert game.social.following == {pid("Alice"): pid("Bob")}


def test_end_presence_of_a_leader_who_follows_and_is_followed() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob", "Carl")
    game.make_follow("Alice", "Dora")
    game.make_follow("Bob", "Alice")
    game.make_follow("Carl", "Alice")
    game.make_follow("Wyatt", "Bob")  # unrelated
    game.social.load_mutes(pid("Alice"), {pid("Olive"): None}, True, None)
    game.run("Bob", "mute", "Alice")  # Bob's own mute of Alice is Bob's data
    pending_from = game.request_follow("Dora", "Alice")
    game.presence("Alice")  # still present while teardown runs

    effects = end_presence(game.social, game.presences, pid("Alice"))

    assert effects == [
        say_to("Dora", FOLLOW_CANCELLED),
        say_to("Dora", "Alice is no longer following you."),
        say_to("Bob", "You are no longer following Alice."),
        Emit("follow_state", following_payload(None), ids("Bob")),
        say_to("Carl", "You are no longer following Alice."),
        Emit("follow_state", following_payload(None), ids("Carl")),
        Emit(
            "party_update",
            party_payload(party_id, "Alice", ["Alice", "Bob", "Carl"], "disbanded"),
            ids("Alice", "Bob", "Carl"),
        ),
        say_to("Bob", "The party has been disbanded."),
        say_to("Carl", "The party has been disbanded."),
    ]
    assert references(game.social, pid("Alice")) == []
    assert pending_from not in game.social.requests
    assert game.social.following == {pid("Wyatt"): pid("Bob")}
    assert game.social.parties == {} and game.social.party_of == {}
    assert game.social.mutes == {pid("Bob"): {pid("Alice"): None}}
    assert game.social.global_mutes == {}


def test_end_presence_of_a_party_member() -> None:
    game = Game()
    party_id = game.make_party("Alice", "Bob", "Carl")
    game.make_follow("Bob", "Carl")
    effects = end_presence(game.social, game.presences, pid("Bob"))
    assert effects == [
        say_to("Carl", "Bob is no longer following you."),
        Emit(
            "party_update",
            party_payload(party_id, "Alice", ["Alice", "Carl"], "left"),
            ids("Alice", "Bob", "Carl"),
        ),
    ]
    assert references(game.social, pid("Bob")) == []
    assert game.social.parties == {
        party_id: Party(party_id, pid("Alice"), [pid("Alice"), pid("Carl")])
    }
    assert game.social.party_of == {pid("Alice"): party_id, pid("Carl"): party_id}


def test_end_presence_of_a_player_with_nothing_social() -> None:
    game = Game()
    game.make_follow("Bob", "Carl")
    before = Social(
        following=dict(game.social.following),
        requests=dict(game.social.requests),
        parties=dict(game.social.parties),
        party_of=dict(game.social.party_of),
    )
    assert end_presence(game.social, game.presences, pid("Alice")) == []
    assert game.social == before


def test_end_presence_of_a_solo_party_leader_with_a_pending_invite() -> None:
    game = Game()
    invite_id = game.invite("Alice", "Bob")
    party_id = game.social.party_of[pid("Alice")]
    effects = end_presence(game.social, game.presences, pid("Alice"))
    assert effects == [
        say_to("Bob", INVITE_CANCELLED),
        Emit(
            "party_update",
            party_payload(party_id, "Alice", ["Alice"], "disbanded"),
            ids("Alice"),
        ),
    ]
    assert references(game.social, pid("Alice")) == []
    assert game.answer_invite("Bob", invite_id, True) == [say_to("Bob", EXPIRED_INVITE)]


def test_end_presence_then_remove_leaves_the_others_working() -> None:
    """After Alice is gone, Bob and Carl can form their own follow and party."""
    game = Game()
    game.make_party("Alice", "Bob")
    game.make_follow("Bob", "Alice")
    end_presence(game.social, game.presences, pid("Alice"))
    game.presences.remove(pid("Alice"))
    game.make_follow("Bob", "Carl")
    game.make_party("Carl", "Bob")
    assert game.social.following == {pid("Bob"): pid("Carl")}
    assert game.social.party_for(pid("Bob")) == game.social.party_for(pid("Carl"))


# === request bookkeeping and payload helpers ================================================


def test_expire_requests_drops_expired_requests_only() -> None:
    social = Social()
    for n, expires_at in enumerate([NOW - 1, NOW, NOW + 0.001, NOW + 60], start=1):
        kind = "follow" if n % 2 else "party"
        social.requests[uid(n)] = Request(uid(n), kind, pid("Alice"), pid("Bob"), expires_at)
    social.following[pid("Carl")] = pid("Bob")
    social.expire_requests(NOW)
    assert list(social.requests) == [uid(3), uid(4)]
    assert social.following == {pid("Carl"): pid("Bob")}
    social.expire_requests(NOW + 60)
    assert social.requests == {}
    social.expire_requests(NOW + 120)  # nothing left: harmless


def test_live_request_checks_kind_target_and_time() -> None:
    social = Social()
    social.requests[uid(1)] = Request(uid(1), "follow", pid("Alice"), pid("Bob"), NOW + 60)
    request = social.requests[uid(1)]
    assert social.live_request(uid(1), "follow", pid("Bob"), NOW) is request
    assert social.live_request(uid(1), "party", pid("Bob"), NOW) is None
    assert social.live_request(uid(1), "follow", pid("Alice"), NOW) is None
    assert social.live_request(uid(2), "follow", pid("Bob"), NOW) is None
    assert uid(1) in social.requests
    assert social.live_request(uid(1), "follow", pid("Bob"), NOW + 60) is None
    assert social.requests == {}  # an expired request is dropped when found


def test_payload_helpers() -> None:
    game = Game()
    assert follow_state(None) == {"following": None}
    assert follow_state("Bob") == {"following": {"target_name": "Bob", "target_type": "player"}}
    party = Party("party-1", pid("Alice"), [pid("Alice"), pid("Bob"), pid("Gone")])
    assert party_update(party, game.presences, "joined") == {
        "party_id": "party-1",
        "leader": "Alice",
        "members": ["Alice", "Bob", "someone"],
        "change": "joined",
    }
