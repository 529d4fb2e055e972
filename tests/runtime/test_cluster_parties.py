"""Parties across instances (PROTOCOL.md sections 11 and 16, docs/NATS.md), on the in-memory
broker with the autojump clock: a party lives on its leader's instance, every other instance
keeps a replica, and changes asked elsewhere run at the owner.  Also what a presence that moved
to another instance leaves behind: rest, grace and ward timers, and resume."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import trio

from mythos_rt.core.bus_messages import ChatPayload, encode_chat
from mythos_rt.core.cluster import (
    PARTY,
    PARTY_COMMAND,
    PartyChange,
    PartyCommand,
    PartyRecord,
    encode,
)
from mythos_rt.runtime.bus import BusMessage
from tests.runtime.cluster_harness import running_cluster
from tests.runtime.harness import Client, Harness
from tests.runtime.test_social_runtime import party_update, result, until

Frame = dict[str, Any]
DISBANDED = "The party has been disbanded."


async def accept_invite(client: Client) -> None:
    invite = await client.next_event("party_invite")
    response = {"invite_id": invite["data"]["invite_id"], "accept": True}
    await client.send({"type": "party_invite_response", "data": response})


async def form_party(leader: Client, leader_name: str, *members: tuple[Client, str]) -> None:
    """``leader`` invites each member in turn; each accepts from wherever they are."""
    for client, name in members:
        await leader.command("party", "invite", name)
        await result(leader, "Party invite sent. Waiting for them to accept.")
        await accept_invite(client)
        await result(client, f"You have joined {leader_name}'s party.")
        await result(leader, f"{name} has joined your party.")


async def chat(client: Client) -> str:
    frame = await client.next_event("chat_message")
    message: str = frame["data"]["message"]
    return message


async def command_result(client: Client) -> str:
    frame = await until(client, lambda f: f.get("event_type") == "command_response")
    text: str = frame["data"]["result"]
    return text


async def party_on_three(nodes: dict[str, Harness]) -> tuple[Client, Client, Client]:
    """Armitage on A leads Wilmarth on B and Dyer on C."""
    armitage = await nodes["A"].connect("Armitage")
    wilmarth = await nodes["B"].connect("Wilmarth")
    dyer = await nodes["C"].connect("Dyer")
    await form_party(armitage, "Armitage", (wilmarth, "Wilmarth"), (dyer, "Dyer"))
    return armitage, wilmarth, dyer


async def party_on_two(nodes: dict[str, Harness]) -> tuple[Client, Client, Client]:
    """Armitage on A leads Wilmarth on B; Lake, on B too, is in no party."""
    armitage = await nodes["A"].connect("Armitage")
    wilmarth = await nodes["B"].connect("Wilmarth")
    lake = await nodes["B"].connect("Lake")
    await form_party(armitage, "Armitage", (wilmarth, "Wilmarth"))
    return armitage, wilmarth, lake


async def frames_through(client: Client, line: str) -> list[Frame]:
    """Everything ``client`` gets up to the chat line ``line`` (a marker sent after the rest)."""
    frames = await client.until_pong()
    while line not in [f.get("data", {}).get("message") for f in frames]:
        frames += await client.until_pong()
    return frames


def party_of(node: Harness, name: str) -> str | None:
    return node.app.hub.social.party_of.get(node.players[name].player_id)


async def test_an_invite_from_one_instance_is_accepted_on_another(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await armitage.command("party", "invite", "Wilmarth")
        created = await party_update(armitage, "created")
        party_id = created["data"]["party_id"]
        invite = await wilmarth.next_event("party_invite")
        assert invite["data"]["inviter_name"] == "Armitage"
        response = {"invite_id": invite["data"]["invite_id"], "accept": True}
        await wilmarth.send({"type": "party_invite_response", "data": response})
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
        # The listing runs on B's replica.
        await wilmarth.command("party")
        await result(wilmarth, "Party (leader: Armitage): Armitage, Wilmarth")
        assert nodes["B"].app.hub.social.parties[party_id].owner == "A"
        assert nodes["A"].app.hub.social.parties[party_id].owner is None


async def test_a_declined_invite_across_instances_is_answered_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await armitage.command("party", "invite", "Wilmarth")
        invite = await wilmarth.next_event("party_invite")
        response = {"invite_id": invite["data"]["invite_id"], "accept": False}
        await wilmarth.send({"type": "party_invite_response", "data": response})
        await result(wilmarth, "You declined the party invite.")
        await result(armitage, "Wilmarth declined your party invite.")
        await wilmarth.send({"type": "party_invite_response", "data": response})
        await result(wilmarth, "Invalid or expired party invite.")
        await wilmarth.command("party")
        await result(wilmarth, "You are not in a party.")


async def test_party_chat_reaches_every_instance_and_mutes_hold(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ("A", "B", "C")) as (_, nodes):
        armitage, wilmarth, dyer = await party_on_three(nodes)
        await wilmarth.command("party", "hello", "all")
        await result(wilmarth, "Sent.")
        for client in (armitage, wilmarth, dyer):  # the sender included, each once
            assert await chat(client) == "Wilmarth (party): hello all"
        await dyer.command("mute", "Wilmarth")
        await result(dyer, "You have muted Wilmarth permanently.")
        await wilmarth.command("party", "muted", "line")
        for client in (armitage, wilmarth):
            assert await chat(client) == "Wilmarth (party): muted line"
        await armitage.command("party", "marker")
        for client in (armitage, wilmarth, dyer):  # Dyer never got the muted line
            assert await chat(client) == "Armitage (party): marker"
        await armitage.command("party", "second")
        for client in (armitage, wilmarth, dyer):  # nothing arrived twice
            assert await chat(client) == "Armitage (party): second"


async def test_leave_kick_and_invite_asked_away_from_the_owner(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ("A", "B", "C")) as (_, nodes):
        await nodes["C"].connect("Lake")
        armitage, wilmarth, dyer = await party_on_three(nodes)
        await wilmarth.command("party", "invite", "Lake")  # run by A, answered on B
        await result(wilmarth, "Only the party leader can invite.")

        await armitage.command("party", "kick", "Dyer")
        await result(armitage, "You kicked Dyer from the party.")
        await result(dyer, "You have been kicked from the party.")
        for client in (armitage, wilmarth, dyer):
            kicked = await party_update(client, "kicked")
            assert kicked["data"]["members"] == ["Armitage", "Wilmarth"]
        await dyer.command("party", "still", "here?")
        await result(dyer, "You are not in a party.")

        await wilmarth.command("party", "leave")
        await result(wilmarth, "You left the party.")
        for client in (armitage, wilmarth):
            left = await party_update(client, "left")
            assert left["data"]["members"] == ["Armitage"]
        await wilmarth.command("party")
        await result(wilmarth, "You are not in a party.")
        for node in ("A", "B", "C"):
            assert party_of(nodes[node], "Wilmarth") is None


async def test_the_leader_quitting_disbands_the_party_on_every_instance_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ("A", "B", "C")) as (_, nodes):
        armitage, wilmarth, dyer = await party_on_three(nodes)
        await armitage.command("quit")
        for client in (wilmarth, dyer):
            await party_update(client, "disbanded")
            await result(client, DISBANDED)
        await wilmarth.command("say", "marker")
        frames = await frames_through(dyer, "Wilmarth says: marker")
        assert [f for f in frames if f.get("event_type") == "party_update"] == []
        assert [f for f in frames if f.get("data", {}).get("result") == DISBANDED] == []
        for node in nodes.values():
            assert node.app.hub.social.parties == {}
            assert node.app.hub.social.party_of == {}


async def test_the_leader_moving_to_another_instance_takes_the_party_along(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["B"].connect("Wilmarth")
        dyer = await nodes["A"].connect("Dyer")
        await form_party(old, "Armitage", (wilmarth, "Wilmarth"), (dyer, "Dyer"))
        party_id = nodes["A"].app.hub.social.party_of[nodes["A"].players["Dyer"].player_id]
        armitage = await nodes["B"].connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await armitage.command("party")
        await result(armitage, "Party (leader: Armitage): Armitage, Wilmarth, Dyer")
        assert nodes["B"].app.hub.social.parties[party_id].owner is None
        assert nodes["A"].app.hub.social.parties[party_id].owner == "B"
        await dyer.command("party", "from", "A")
        for client in (armitage, wilmarth, dyer):
            assert await chat(client) == "Dyer (party): from A"
        await armitage.command("party", "kick", "Dyer")  # run by B now
        await result(armitage, "You kicked Dyer from the party.")
        await result(dyer, "You have been kicked from the party.")
        for client in (armitage, wilmarth, dyer):
            kicked = await party_update(client, "kicked")
            assert kicked["data"]["members"] == ["Armitage", "Wilmarth"]


async def test_a_member_moving_to_another_instance_stays_in_the_party(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        old = await nodes["A"].connect("Wilmarth", query="&session_id=first")
        await form_party(armitage, "Armitage", (old, "Wilmarth"))
        wilmarth = await nodes["B"].connect("Wilmarth", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await wilmarth.command("party")
        await result(wilmarth, "Party (leader: Armitage): Armitage, Wilmarth")
        await wilmarth.command("party", "moved")
        assert await chat(armitage) == "Wilmarth (party): moved"


async def test_a_leader_whose_instance_died_keeps_the_party_by_coming_back_elsewhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0, grace_s=30.0) as (broker, nodes):
        armitage_on_a = await nodes["A"].connect("Armitage", query="&session_id=a")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await form_party(armitage_on_a, "Armitage", (wilmarth, "Wilmarth"))
        broker.isolate("A")
        await until(
            wilmarth,
            lambda f: (
                f.get("event_type") == "room_occupants"
                and "Armitage (linkdead)" in f["data"]["occupants"]
            ),
        )
        await wilmarth.command("party", "leave")  # nobody could run it now: said, not dropped
        await result(
            wilmarth, "The party leader cannot be reached right now. Please try again shortly."
        )
        armitage = await nodes["B"].connect("Armitage", query="&session_id=b")
        await armitage.command("party")
        await result(armitage, "Party (leader: Armitage): Armitage, Wilmarth")
        await trio.sleep(60)  # well past the grace
        await wilmarth.command("party", "still", "together")
        assert await chat(armitage) == "Wilmarth (party): still together"
        frames = await wilmarth.until_pong()
        assert [f for f in frames if f.get("event_type") == "party_update"] == []
        await armitage.command("party", "kick", "Wilmarth")  # B owns the party now
        await result(armitage, "You kicked Wilmarth from the party.")
        await result(wilmarth, "You have been kicked from the party.")


async def test_a_party_whose_leader_never_comes_back_is_disbanded_everywhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ("A", "B", "C"), ward_s=0.0, grace_s=30.0) as (
        broker,
        nodes,
    ):
        lake = await nodes["C"].connect("Lake")
        _armitage, wilmarth, dyer = await party_on_three(nodes)
        broker.isolate("A")
        lost_at = trio.current_time()
        for client in (wilmarth, dyer):
            update = await party_update(client, "disbanded")
            assert trio.current_time() - lost_at >= 30
            assert update["data"]["members"] == ["Armitage", "Wilmarth", "Dyer"]
            await result(client, DISBANDED)
        await lake.command("say", "marker")
        frames = await frames_through(dyer, "Lake says: marker")
        assert [f for f in frames if f.get("event_type") == "party_update"] == []
        for node in ("B", "C"):
            assert nodes[node].app.hub.social.parties == {}
            assert nodes[node].app.hub.social.party_of == {}


async def test_a_member_on_a_lost_instance_leaves_the_party_after_the_grace(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ("A", "B", "C"), ward_s=0.0, grace_s=30.0) as (
        broker,
        nodes,
    ):
        armitage, _wilmarth, dyer = await party_on_three(nodes)
        broker.isolate("B")
        lost_at = trio.current_time()
        for client in (armitage, dyer):
            left = await party_update(client, "left")
            assert trio.current_time() - lost_at >= 30
            assert left["data"]["members"] == ["Armitage", "Dyer"]
        await armitage.command("party", "marker")
        frames = await frames_through(dyer, "Armitage (party): marker")
        assert [f for f in frames if f.get("event_type") == "party_update"] == []  # once
        for node in ("A", "C"):
            assert party_of(nodes[node], "Wilmarth") is None


async def test_a_member_of_a_lost_instance_who_comes_back_elsewhere_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ("A", "B", "C"), ward_s=0.0, grace_s=30.0) as (
        broker,
        nodes,
    ):
        armitage = await nodes["A"].connect("Armitage")
        old = await nodes["B"].connect("Wilmarth")
        await form_party(armitage, "Armitage", (old, "Wilmarth"))
        broker.isolate("B")
        await trio.sleep(15)
        wilmarth = await nodes["C"].connect("Wilmarth")
        await trio.sleep(60)
        await wilmarth.command("party", "back")
        assert await chat(armitage) == "Wilmarth (party): back"
        frames = await armitage.until_pong()
        assert [f for f in frames if f.get("event_type") == "party_update"] == []


# --- timers of a presence that moved to another instance --------------------------------------


async def test_a_rest_begun_on_one_instance_does_not_end_the_session_on_another(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0, rest_s=10) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["A"].connect("Wilmarth")
        await old.command("rest")
        await until(old, lambda f: "begin to rest" in f.get("data", {}).get("result", ""))
        armitage = await nodes["B"].connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await trio.sleep(30)  # the countdown would have ended by now
        frames = await armitage.until_pong()
        assert [f for f in frames if f.get("event_type") == "intentional_disconnect"] == []
        assert [f for f in frames if "disconnect in" in f.get("data", {}).get("result", "")] == []
        frames = await wilmarth.until_pong()
        assert [f for f in frames if f.get("event_type") == "player_left_game"] == []
        # The new session was not retired: its next reconnect, on either instance, gets in.
        await armitage.ws.aclose()
        back = await nodes["A"].connect("Armitage", query="&session_id=second", read_burst=False)
        assert (await back.burst())[-1]["event_type"] == "welcome"


async def test_the_grace_begun_on_one_instance_does_not_end_a_presence_that_moved(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=5.0, grace_s=30.0) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["A"].connect("Wilmarth")
        await old.ws.aclose()
        await until(
            wilmarth,
            lambda f: (
                f.get("event_type") == "room_occupants"
                and "Armitage (linkdead)" in f["data"]["occupants"]
            ),
        )
        armitage = await nodes["B"].connect("Armitage", query="&session_id=first")
        await trio.sleep(60)  # past A's grace and the ward
        frames = await wilmarth.until_pong()
        assert [f for f in frames if f.get("event_type") == "player_left_game"] == []
        frames = await armitage.until_pong()
        assert [f for f in frames if f.get("event_type") == "player_left_game"] == []
        await wilmarth.command("who")
        assert (await command_result(wilmarth)).startswith("Online Players (2)")
        await armitage.command("say", "back on B")
        await result(armitage, "You say: back on B")


async def test_resume_on_an_instance_without_the_buffer_gets_the_normal_burst(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, grace_s=30.0) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=s1")
        await old.command("say", "something to replay")
        frame = await old.next_event("command_response")
        last = frame["sequence_number"]
        await old.ws.aclose()
        back = await nodes["B"].connect(
            "Armitage", query=f"&session_id=s1&resume_from={last - 1}", read_burst=False
        )
        burst = await back.burst()
        assert burst[0]["event_type"] == "game_state"
        assert burst[-1]["event_type"] == "welcome"
        assert burst[-1]["data"]["resumed"] is False


async def test_an_invite_that_reaches_the_owner_after_a_kick_makes_no_party_there(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # A member's invite travels to the owner, which must run it as that member's; if they were
    # kicked meanwhile, running it there would create a party led by a player held elsewhere.
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await nodes["B"].connect("Dyer")
        await form_party(armitage, "Armitage", (wilmarth, "Wilmarth"))
        wilmarth_id = nodes["B"].players["Wilmarth"].player_id
        await armitage.command("party", "kick", "Wilmarth")
        await result(wilmarth, "You have been kicked from the party.")
        command = PartyCommand("A", wilmarth_id, ("invite", "Dyer"))
        broker.buses["A"].receive(BusMessage(PARTY_COMMAND, encode(command), "B"))
        await result(wilmarth, "The party is changing hands. Please try again.")
        assert wilmarth_id not in nodes["A"].app.hub.social.party_of
        assert [p.leader_id for p in nodes["A"].app.hub.social.parties.values()] == [
            nodes["A"].players["Armitage"].player_id
        ]


async def test_a_heartbeat_repairs_a_party_replica_that_missed_messages(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await form_party(armitage, "Armitage", (wilmarth, "Wilmarth"))
        replicas = nodes["B"].app.hub.social
        (party,) = replicas.parties.values()
        replicas.remove_party(party)  # as if B had missed the party's messages
        await trio.sleep(3)  # A beats
        await wilmarth.command("party")
        await result(wilmarth, "Party (leader: Armitage): Armitage, Wilmarth")
        # The other way round: B holds a party A no longer has (its end went missing).
        ids = [nodes["A"].players[name].player_id for name in ("Armitage", "Wilmarth")]
        ghost = PartyChange("A", PartyRecord("ghost", ids[0], tuple(ids), 10**6))
        await wilmarth.command("party", "leave")
        await result(wilmarth, "You left the party.")
        broker.buses["B"].receive(BusMessage(PARTY, encode(ghost), "A"))
        await trio.sleep(3)
        disbanded = await party_update(wilmarth, "disbanded")
        assert disbanded["data"]["party_id"] == "ghost"
        await result(wilmarth, DISBANDED)
        assert "ghost" not in replicas.parties


async def test_a_draining_owner_leaves_the_disband_notice_to_each_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # While draining, an instance delivers nothing (close_all): its disbanded record says so,
    # and every other instance tells the members it holds, once.
    async with running_cluster(tmp_path) as (_, nodes):
        _armitage, wilmarth, lake = await party_on_two(nodes)
        hub = nodes["A"].app.hub
        hub.close_all(1001, "Server shutting down")  # what the drain does, in its order
        hub.end_all_presences()
        hub.sync_presences()
        await party_update(wilmarth, "disbanded")
        await result(wilmarth, DISBANDED)
        await lake.command("say", "marker")
        frames = await frames_through(wilmarth, "Lake says: marker")
        assert [f for f in frames if f.get("event_type") == "party_update"] == []
        assert nodes["B"].app.hub.social.parties == {}


async def test_a_party_line_from_an_outside_publisher_reaches_the_members_everywhere(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage, wilmarth, lake = await party_on_two(nodes)
        (party_id,) = nodes["B"].app.hub.social.parties
        line = ChatPayload(
            message_id=str(uuid.uuid4()),
            timestamp="2026-11-29T08:00:00Z",
            channel="party",
            content="The stars are right",
            sender_name="Narrator",
            speaker_kind="npc",
        )
        broker.publish_outside(*encode_chat(line, party_id))  # named by the subject alone
        for client in (armitage, wilmarth):
            assert await chat(client) == "Narrator (party): The stars are right"
        await armitage.command("say", "marker")
        assert await chat(lake) == "Armitage says: marker"  # not a member: nothing before


async def test_followers_keep_following_a_leader_who_moved_to_another_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found while moving parties: the old instance's hand-over ended the leader's follows as if
    # they had left the world, so followers there stopped without a word.
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["A"].connect("Wilmarth")
        await wilmarth.command("follow", "Armitage")
        request = await old.next_event("follow_request")
        answer = {"request_id": request["data"]["request_id"], "accept": True}
        await old.send({"type": "follow_response", "data": answer})
        await result(wilmarth, "You are now following Armitage.")
        armitage = await nodes["B"].connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await armitage.command("north")
        await result(armitage, "You go north.")
        await result(wilmarth, "You follow Armitage north.")


async def test_a_follower_who_moves_to_another_instance_keeps_following(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        old = await nodes["A"].connect("Wilmarth", query="&session_id=first")
        await old.command("follow", "Armitage")
        request = await armitage.next_event("follow_request")
        answer = {"request_id": request["data"]["request_id"], "accept": True}
        await armitage.send({"type": "follow_response", "data": answer})
        await result(old, "You are now following Armitage.")
        wilmarth = await nodes["B"].connect("Wilmarth", query="&session_id=second")
        state = await wilmarth.next_event("follow_state")
        assert state["data"]["following"] == {"target_name": "Armitage", "target_type": "player"}
        await armitage.command("north")
        await result(armitage, "You go north.")
        await result(wilmarth, "You follow Armitage north.")
        frames = await armitage.until_pong()
        assert [f for f in frames if "no longer following" in str(f.get("data"))] == []
