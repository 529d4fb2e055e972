"""Follow, party and mute over real frames (PROTOCOL.md sections 10 and 11)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import trio
import trio.testing

from tests.runtime.harness import Client, Harness, SlowStore, running

Frame = dict[str, Any]
P = ParamSpec("P")
T = TypeVar("T")


async def until(client: Client, wanted: Callable[[Frame], bool]) -> Frame:
    """Skip frames until one matches."""
    while True:
        frame = await client.next()
        if wanted(frame):
            return frame


async def result(client: Client, text: str) -> Frame:
    """Skip to the command_response whose result is ``text``."""
    return await until(
        client,
        lambda f: f.get("event_type") == "command_response" and f["data"]["result"] == text,
    )


async def party_update(client: Client, change: str) -> Frame:
    return await until(
        client, lambda f: f.get("event_type") == "party_update" and f["data"]["change"] == change
    )


def chat_lines(frames: list[Frame]) -> list[str]:
    return [f["data"]["message"] for f in frames if f.get("event_type") == "chat_message"]


async def connect_all(h: Harness, *names: str) -> list[Client]:
    return [await h.connect(name) for name in names]


async def follow(h: Harness, follower: Client, leader: Client, leader_name: str) -> None:
    await follower.command("follow", leader_name)
    await result(follower, "Follow request sent. Waiting for them to accept.")
    request = await leader.next_event("follow_request")
    await leader.send(
        {
            "type": "follow_response",
            "data": {"request_id": request["data"]["request_id"], "accept": True},
        }
    )
    await result(follower, f"You are now following {leader_name}.")


async def test_follow_request_round_trip_accepted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth = await connect_all(h, "Armitage", "Wilmarth")
        await wilmarth.command("follow", "Armitage")
        await result(wilmarth, "Follow request sent. Waiting for them to accept.")
        request = await armitage.next_event("follow_request")
        assert request["data"]["requestor_name"] == "Wilmarth"
        assert request["data"]["requestor_id"] == h.players["Wilmarth"].player_id
        await armitage.send(
            {
                "type": "follow_response",
                "data": {"request_id": request["data"]["request_id"], "accept": True},
            }
        )
        await result(armitage, "You are now being followed by Wilmarth.")
        await result(wilmarth, "You are now following Armitage.")
        state = await wilmarth.next_event("follow_state")
        assert state["data"] == {"following": {"target_name": "Armitage", "target_type": "player"}}
        ids = {name: record.player_id for name, record in h.players.items()}
        assert h.app.hub.social.following == {ids["Wilmarth"]: ids["Armitage"]}
        assert h.app.hub.social.requests == {}
        await wilmarth.command("following")
        await result(wilmarth, "You are following Armitage.")
        await armitage.command("following")
        await result(armitage, "You are not following anyone.\nFollowed by: Wilmarth")


async def test_follow_request_declined(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth = await connect_all(h, "Armitage", "Wilmarth")
        await wilmarth.command("follow", "Armitage")
        request = await armitage.next_event("follow_request")
        request_id = request["data"]["request_id"]
        await armitage.send({"type": "follow_response", "data": {"request_id": request_id}})
        await result(armitage, "You declined the follow request.")
        await result(wilmarth, "Your follow request was declined.")
        state = await wilmarth.next_event("follow_state")
        assert state["data"] == {"following": None}
        assert h.app.hub.social.following == {}
        # The same id again: it was used up.
        await armitage.send(
            {"type": "follow_response", "data": {"request_id": request_id, "accept": True}}
        )
        await result(armitage, "Invalid or expired follow request.")
        await armitage.send(
            {"type": "follow_response", "data": {"request_id": "not-a-uuid", "accept": True}}
        )
        await result(armitage, "Invalid follow response.")


async def test_follower_walks_two_rooms_behind_its_leader(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        exits = armitage.received[0]["data"]["room"]["exits"]
        start_room = armitage.received[0]["room_id"]
        wilmarth = await h.connect("Wilmarth")
        await follow(h, wilmarth, armitage, "Armitage")
        hub = h.app.hub
        ids = {name: record.player_id for name, record in h.players.items()}
        room = start_room
        for _ in range(2):
            # Any exit that leads somewhere new (not straight back).
            direction, destination = next(
                (d, r) for d, r in sorted(exits.items()) if r not in (room, start_room)
            )
            await armitage.command("go", direction)
            moved = await result(armitage, f"You go {direction}.")
            assert moved["data"]["room_id"] == destination
            followed = await result(wilmarth, f"You follow Armitage {direction}.")
            assert followed["data"]["room_changed"] is True
            assert followed["data"]["room_id"] == destination
            state = await wilmarth.next_event("room_state")
            assert state["room_id"] == destination
            assert "Armitage" in state["data"]["occupants"]
            entered = await armitage.next_event("player_entered")
            assert entered["data"]["message"] == "Wilmarth enters the room."
            for name in ("Armitage", "Wilmarth"):
                presence = hub.presences.get(ids[name])
                assert presence is not None and presence.room_id == destination
            room, exits = destination, state["data"]["room"]["exits"]
        # Unfollow: the leader walks on alone.
        await wilmarth.command("unfollow")
        await result(wilmarth, "You are no longer following Armitage.")
        await result(armitage, "Wilmarth is no longer following you.")
        direction = sorted(exits)[0]
        await armitage.command("go", direction)
        await result(armitage, f"You go {direction}.")
        left = await wilmarth.next_event("player_left")
        assert left["data"]["player_name"] == "Armitage"
        assert hub.presences.get(ids["Wilmarth"]).room_id == room  # type: ignore[union-attr]


async def test_party_invite_accept_chat_kick_leave(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth, dyer = await connect_all(h, "Armitage", "Wilmarth", "Dyer")
        ids = {name: record.player_id for name, record in h.players.items()}
        await armitage.command("party", "invite", "Wilmarth")
        created = await party_update(armitage, "created")
        assert created["data"]["leader"] == "Armitage"
        assert created["data"]["members"] == ["Armitage"]
        party_id = created["data"]["party_id"]
        await result(armitage, "Party invite sent. Waiting for them to accept.")
        invite = await wilmarth.next_event("party_invite")
        assert invite["data"]["inviter_name"] == "Armitage"
        assert invite["data"]["inviter_id"] == ids["Armitage"]
        await wilmarth.send(
            {
                "type": "party_invite_response",
                "data": {"invite_id": invite["data"]["invite_id"], "accept": True},
            }
        )
        await result(wilmarth, "You have joined Armitage's party.")
        await result(armitage, "Wilmarth has joined your party.")
        for client in (armitage, wilmarth):
            joined = await party_update(client, "joined")
            assert joined["data"] == {
                "party_id": party_id,
                "leader": "Armitage",
                "members": ["Armitage", "Wilmarth"],
                "change": "joined",
            }

        await armitage.command("party", "invite", "Dyer")
        invite = await dyer.next_event("party_invite")
        await dyer.send(
            {
                "type": "party_invite_response",
                "data": {"invite_id": invite["data"]["invite_id"], "accept": True},
            }
        )
        for client in (armitage, wilmarth, dyer):
            joined = await party_update(client, "joined")
            assert joined["data"]["members"] == ["Armitage", "Wilmarth", "Dyer"]

        await wilmarth.command("party", "hello", "all")
        await result(wilmarth, "Sent.")
        for client in (armitage, wilmarth, dyer):  # the sender included
            chat = await client.next_event("chat_message")
            assert chat["data"]["channel"] == "party"
            assert chat["data"]["message"] == "Wilmarth (party): hello all"

        await armitage.command("party", "kick", "Dyer")
        await result(armitage, "You kicked Dyer from the party.")
        await result(dyer, "You have been kicked from the party.")
        for client in (armitage, wilmarth, dyer):
            kicked = await party_update(client, "kicked")
            assert kicked["data"]["members"] == ["Armitage", "Wilmarth"]
        assert ids["Dyer"] not in h.app.hub.social.party_of

        await wilmarth.command("party", "leave")
        await result(wilmarth, "You left the party.")
        for client in (armitage, wilmarth):
            left = await party_update(client, "left")
            assert left["data"]["members"] == ["Armitage"]
        await armitage.command("party", "list")
        await result(armitage, "Party (leader: Armitage): Armitage")
        await dyer.command("party", "hello")
        await result(dyer, "You are not in a party.")

        await armitage.command("party", "leave")
        await result(armitage, "You left the party.")
        assert (await party_update(armitage, "disbanded"))["data"]["party_id"] == party_id
        assert h.app.hub.social.parties == {}
        assert h.app.hub.social.party_of == {}


async def test_party_invite_declined(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth = await connect_all(h, "Armitage", "Wilmarth")
        await armitage.command("party", "invite", "Wilmarth")
        invite = await wilmarth.next_event("party_invite")
        invite_id = invite["data"]["invite_id"]
        await wilmarth.send({"type": "party_invite_response", "data": {"invite_id": invite_id}})
        await result(wilmarth, "You declined the party invite.")
        await result(armitage, "Wilmarth declined your party invite.")
        await wilmarth.send(
            {"type": "party_invite_response", "data": {"invite_id": invite_id, "accept": True}}
        )
        await result(wilmarth, "Invalid or expired party invite.")
        await wilmarth.send(
            {"type": "party_invite_response", "data": {"invite_id": "nope", "accept": True}}
        )
        await result(wilmarth, "Invalid party invite response.")


async def _speak_muted_then_marker(dyer: Client, armitage: Client) -> None:
    await dyer.command("say", "muted say")
    await result(dyer, "You say: muted say")
    await dyer.command("global", "muted global")
    await result(dyer, "You say (global): muted global")
    await dyer.command("whisper", "Wilmarth", "muted whisper")
    await result(dyer, "You whisper to Wilmarth: muted whisper")
    # A bystander heard the room and global lines: they really went out.
    assert (await armitage.next_event("chat_message"))["data"]["message"] == "Dyer says: muted say"
    assert (await armitage.next_event("chat_message"))["data"]["message"] == (
        "Dyer (global): muted global"
    )
    await armitage.command("say", "marker")
    await result(armitage, "You say: marker")


async def test_mute_hides_say_global_and_whisper_until_unmute(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth, dyer = await connect_all(h, "Armitage", "Wilmarth", "Dyer")
        await wilmarth.command("mute", "Dyer")
        await result(wilmarth, "You have muted Dyer permanently.")
        await _speak_muted_then_marker(dyer, armitage)
        marker = await wilmarth.next_event("chat_message")
        # The first line Wilmarth hears is the bystander's marker: nothing of Dyer's came before.
        assert marker["data"]["message"] == "Armitage says: marker"
        assert chat_lines(wilmarth.received) == ["Armitage says: marker"]

        # Mute also refuses follow requests and party invites from the muted player.
        await dyer.command("follow", "Wilmarth")
        await result(dyer, "They are not accepting follow requests.")
        await dyer.command("party", "invite", "Wilmarth")
        await result(dyer, "They are not accepting party invites.")

        await wilmarth.command("unmute", "Dyer")
        await result(wilmarth, "You have unmuted Dyer.")
        await dyer.command("whisper", "Wilmarth", "heard again")
        whisper = await wilmarth.next_event("chat_message")
        assert whisper["data"]["channel"] == "whisper"
        assert whisper["data"]["message"] == "Dyer whispers to you: heard again"
        await dyer.command("say", "and aloud")
        said = await wilmarth.next_event("chat_message")
        assert said["data"]["message"] == "Dyer says: and aloud"


async def test_mute_is_persisted_and_survives_a_reconnect(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        armitage, wilmarth, dyer = await connect_all(h, "Armitage", "Wilmarth", "Dyer")
        muter, muted = h.players["Wilmarth"].player_id, h.players["Dyer"].player_id
        await wilmarth.command("mute", "Dyer", "10")
        await result(wilmarth, "You have muted Dyer for 10 minutes.")
        await trio.testing.wait_all_tasks_blocked()
        stored = h.store.load_mutes(muter, time.time())
        assert set(stored.personal) == {muted}
        expires = stored.personal[muted]
        assert expires is not None and 590 < expires - time.time() <= 600

        await wilmarth.command("quit")
        assert await wilmarth.closed() == (1000, "Goodbye")
        hub = h.app.hub
        assert hub.presences.get(muter) is None
        assert muter not in hub.social.mutes  # dropped from memory with the presence...
        assert set(h.store.load_mutes(muter, time.time()).personal) == {muted}  # ...kept on disk

        wilmarth = await h.connect("Wilmarth")
        assert set(hub.social.mutes[muter]) == {muted}
        await wilmarth.command("mutes")
        await result(wilmarth, "Muted players: Dyer (10 minutes left)")
        await _speak_muted_then_marker(dyer, armitage)
        marker = await wilmarth.next_event("chat_message")
        assert marker["data"]["message"] == "Armitage says: marker"
        assert chat_lines(wilmarth.received) == ["Armitage says: marker"]


async def test_unmute_is_persisted(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        (wilmarth,) = await connect_all(h, "Wilmarth")
        muter = h.players["Wilmarth"].player_id
        await wilmarth.command("mute", "Dyer")
        await result(wilmarth, "You have muted Dyer permanently.")
        await wilmarth.command("unmute", "Dyer")
        await result(wilmarth, "You have unmuted Dyer.")
        await trio.testing.wait_all_tasks_blocked()
        assert h.store.load_mutes(muter, time.time()).personal == {}


async def test_requests_answered_after_their_ttl_are_expired(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth = await connect_all(h, "Armitage", "Wilmarth")
        await wilmarth.command("follow", "Armitage")
        request = await armitage.next_event("follow_request")
        await armitage.command("party", "invite", "Wilmarth")
        invite = await wilmarth.next_event("party_invite")
        await trio.sleep(61)
        await armitage.send(
            {
                "type": "follow_response",
                "data": {"request_id": request["data"]["request_id"], "accept": True},
            }
        )
        await result(armitage, "Invalid or expired follow request.")
        await wilmarth.send(
            {
                "type": "party_invite_response",
                "data": {"invite_id": invite["data"]["invite_id"], "accept": True},
            }
        )
        await result(wilmarth, "Invalid or expired party invite.")
        social = h.app.hub.social
        assert social.following == {}
        assert social.requests == {}
        assert h.players["Wilmarth"].player_id not in social.party_of


async def test_request_answered_just_inside_its_ttl_is_accepted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage, wilmarth = await connect_all(h, "Armitage", "Wilmarth")
        await wilmarth.command("follow", "Armitage")
        request = await armitage.next_event("follow_request")
        await trio.sleep(59)
        await armitage.send(
            {
                "type": "follow_response",
                "data": {"request_id": request["data"]["request_id"], "accept": True},
            }
        )
        await result(wilmarth, "You are now following Armitage.")


async def test_a_mute_is_confirmed_only_once_written_even_on_a_slow_disk(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        armitage, wilmarth, dyer = await connect_all(h, "Armitage", "Wilmarth", "Dyer")
        muter, muted = h.players["Wilmarth"].player_id, h.players["Dyer"].player_id
        # A slow disk: every store call takes 1 s.
        h.app.store_writer._store = SlowStore(h.store)
        await wilmarth.command("mute", "Dyer")
        sent = trio.current_time()
        await result(wilmarth, "You have muted Dyer permanently.")
        assert trio.current_time() - sent >= 1  # the confirmation waited for the disk
        assert set(h.store.load_mutes(muter, time.time()).personal) == {muted}
        await wilmarth.command("quit")
        assert await wilmarth.closed() == (1000, "Goodbye")
        wilmarth = await h.connect("Wilmarth")
        assert set(h.store.load_mutes(muter, time.time()).personal) == {muted}
        assert set(h.app.hub.social.mutes.get(muter, {})) == {muted}
        await _speak_muted_then_marker(dyer, armitage)
        marker = await wilmarth.next_event("chat_message")
        assert marker["data"]["message"] == "Armitage says: marker"


async def test_text_commands_answer_follow_requests_and_party_invites(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """`requests`, `accept [n]` and `decline [n]` over real sockets: the follow and party
    outcomes are those of the response frames."""
    async with running(tmp_path) as h:
        armitage, wilmarth, dyer = await connect_all(h, "Armitage", "Wilmarth", "Dyer")
        ids = {name: record.player_id for name, record in h.players.items()}
        await armitage.command("accept")
        await result(armitage, "You have no pending requests.")

        await wilmarth.command("follow", "Armitage")
        await armitage.next_event("follow_request")
        await dyer.command("party", "invite", "Armitage")
        await armitage.next_event("party_invite")
        await armitage.command("requests")
        listing = await until(
            armitage,
            lambda f: f.get("event_type") == "command_response"
            and f["data"]["result"].startswith("Pending requests:"),
        )
        lines = listing["data"]["result"].splitlines()
        assert lines[1].startswith("1. Wilmarth asks to follow you (")
        assert lines[2].startswith("2. Dyer invites you to their party (")

        await armitage.command("accept", "1")
        await result(armitage, "You are now being followed by Wilmarth.")
        await result(wilmarth, "You are now following Armitage.")
        state = await wilmarth.next_event("follow_state")
        assert state["data"] == {"following": {"target_name": "Armitage", "target_type": "player"}}
        assert h.app.hub.social.following == {ids["Wilmarth"]: ids["Armitage"]}

        await armitage.command("decline")  # the only one left: Dyer's invite
        await result(armitage, "You declined the party invite.")
        await result(dyer, "Armitage declined your party invite.")
        assert ids["Armitage"] not in h.app.hub.social.party_of

        await dyer.command("party", "invite", "Wilmarth")
        await wilmarth.next_event("party_invite")
        await wilmarth.command("accept", "2")
        await result(
            wilmarth, "There is no request 2: you have one request. Type 'requests' to list them."
        )
        await wilmarth.command("accept")
        await result(wilmarth, "You have joined Dyer's party.")
        joined = await party_update(dyer, "joined")
        assert joined["data"]["members"] == ["Dyer", "Wilmarth"]
        assert h.app.hub.social.requests == {}
