"""Several instances, one world (PROTOCOL.md section 16), on the in-memory broker with the
autojump clock: presence and occupants, who, chat by scope, whisper and reply, mutes of remote
senders, outside publishers, session replacement, instance loss and the grace that follows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from mythos_rt.core.bus_messages import ChatPayload, encode_chat
from mythos_rt.core.cluster import HEARTBEAT, Heartbeat, encode
from mythos_rt.runtime.bus import BusMessage
from tests.runtime.cluster_harness import running_cluster
from tests.runtime.harness import Client, read_response, running
from tests.runtime.test_social_runtime import result, until

Frame = dict[str, Any]
START = "earth_arkhamcity_campus_quad"


async def chat(client: Client) -> str:
    frame = await client.next_event("chat_message")
    message: str = frame["data"]["message"]
    return message


async def occupants(client: Client, wanted: list[str]) -> Frame:
    """Skip to a room_occupants listing exactly ``wanted`` (in any order)."""
    return await until(
        client,
        lambda f: f.get("event_type") == "room_occupants"
        and sorted(f["data"]["occupants"]) == sorted(wanted),
    )


async def test_players_on_two_instances_see_each_other_and_talk(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        arrival = await armitage.next_event("player_entered_game")
        assert arrival["data"]["player_name"] == "Wilmarth"
        await occupants(armitage, ["Armitage", "Wilmarth"])
        await wilmarth.command("who")
        who = await until(wilmarth, lambda f: f.get("event_type") == "command_response")
        assert who["data"]["result"].startswith("Online Players (2): Armitage [1]")
        await armitage.command("say", "Hello from A")
        assert await chat(wilmarth) == "Armitage says: Hello from A"
        await wilmarth.command("global", "Hello from B")
        assert await chat(armitage) == "Wilmarth (global): Hello from B"
        await wilmarth.command("say", "marker")
        assert await chat(armitage) == "Wilmarth says: marker"  # nothing arrived twice


async def test_whisper_and_reply_across_instances(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await wilmarth.command("whisper", "Armitage", "the Necronomicon is gone")
        await result(wilmarth, "You whisper to Armitage: the Necronomicon is gone")
        assert await chat(armitage) == "Wilmarth whispers to you: the Necronomicon is gone"
        await armitage.command("reply", "I know")
        await result(armitage, "You whisper to Wilmarth: I know")
        assert await chat(wilmarth) == "Armitage whispers to you: I know"


async def test_a_mute_holds_against_a_sender_on_another_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        dyer = await nodes["A"].connect("Dyer")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await wilmarth.command("mute", "Dyer")
        await result(wilmarth, "You have muted Dyer permanently.")
        await dyer.command("say", "muted say")
        await dyer.command("global", "muted global")
        await dyer.command("whisper", "Wilmarth", "muted whisper")
        await result(dyer, "You whisper to Wilmarth: muted whisper")
        await armitage.command("say", "marker")
        assert await chat(wilmarth) == "Armitage says: marker"


async def test_a_line_from_an_outside_publisher_reaches_the_room_on_every_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        npc = ChatPayload(
            message_id=str(uuid.uuid4()),
            timestamp="2026-11-29T08:00:00Z",
            channel="say",
            content="Braaains",
            sender_name="Zombie",
            room_id=START,
            speaker_kind="npc",
        )
        broker.publish_outside(*encode_chat(npc))
        for client in (armitage, wilmarth):
            frame = await client.next_event("chat_message")
            assert frame["data"]["message"] == "Zombie says: Braaains"
            assert frame["data"]["channel"] == "say"


async def test_an_invalid_outside_message_reaches_nobody(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        bad = {"message_id": "not-a-uuid", "channel": "say", "content": "x", "extra": 1}
        broker.publish_outside(f"chat.say.room.{START}", json.dumps(bad).encode())
        broker.publish_outside("mythos_rt.deliver", b'{"to": ["everyone"]}')
        await armitage.command("say", "marker")
        frames = await armitage.until_pong()
        assert [f for f in frames if f.get("event_type") == "chat_message"] == []
        assert nodes["A"].app.metrics.value("nats_invalid_messages") >= 1


async def test_movement_is_seen_from_the_other_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await occupants(armitage, ["Armitage", "Wilmarth"])
        await armitage.command("north")
        left = await wilmarth.next_event("player_left")
        assert left["data"]["message"] == "Armitage leaves the room."
        await occupants(wilmarth, ["Wilmarth"])
        await wilmarth.command("north")
        await result(wilmarth, "You go north.")
        entered = await armitage.next_event("player_entered")
        assert entered["data"]["player_name"] == "Wilmarth"
        await wilmarth.command("say", "together again")
        assert await chat(armitage) == "Wilmarth says: together again"


async def test_a_new_session_on_another_instance_replaces_the_old_socket(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["A"].connect("Wilmarth")
        new = await nodes["B"].connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await wilmarth.command("who")
        who = await until(wilmarth, lambda f: f.get("event_type") == "command_response")
        assert who["data"]["result"].startswith("Online Players (2): Armitage [1]")
        await new.command("say", "I moved to B")
        assert await chat(wilmarth) == "Armitage says: I moved to B"


async def test_players_of_a_lost_instance_turn_linkdead_then_leave(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0, grace_s=30.0) as (broker, nodes):
        await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        assert sorted(wilmarth.received[-2]["data"]["occupants"]) == ["Armitage", "Wilmarth"]
        broker.isolate("A")
        lost_at = trio.current_time()
        await occupants(wilmarth, ["Armitage (linkdead)", "Wilmarth"])
        assert trio.current_time() - lost_at <= 15
        linkdead_at = trio.current_time()
        left = await wilmarth.next_event("player_left_game")
        assert left["data"]["player_name"] == "Armitage"
        assert trio.current_time() - linkdead_at >= 30
        await occupants(wilmarth, ["Wilmarth"])


async def test_a_player_of_a_lost_instance_can_come_back_on_another(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0, grace_s=30.0) as (broker, nodes):
        await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        broker.isolate("A")
        await occupants(wilmarth, ["Armitage (linkdead)", "Wilmarth"])
        armitage = await nodes["B"].connect("Armitage")
        await occupants(wilmarth, ["Armitage", "Wilmarth"])
        await trio.sleep(60)  # well past the grace: nobody leaves
        await armitage.command("say", "still here")
        assert await chat(wilmarth) == "Armitage says: still here"


async def test_local_play_goes_on_while_the_bus_is_down(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        dyer = await nodes["A"].connect("Dyer")
        broker.isolate("A")
        await dyer.command("say", "alone on A")
        assert await chat(armitage) == "Dyer says: alone on A"


async def test_a_session_ended_on_one_instance_is_refused_on_every_other(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        carter = await nodes["A"].connect("Dyer", query="&session_id=tab-1")
        await carter.command("quit")
        assert await carter.closed() == (1000, "Goodbye")
        again = await nodes["B"].connect(
            "Dyer", query="&session_id=tab-1", headers=[(b"Origin", b"http://x")], read_burst=False
        )
        assert await again.closed() == (4409, "Session ended")
        fresh = await nodes["B"].connect("Dyer", query="&session_id=tab-2")
        await fresh.command("say", "a new login works")
        await result(fresh, "You say: a new login works")

async def test_a_player_already_linkdead_when_their_instance_dies_still_leaves(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: instance_lost skipped replicas that were already linkdead (their owner's
    # grace was running), so with the owner gone nothing ever removed them: a ghost forever.
    async with running_cluster(tmp_path, ward_s=0.0, grace_s=30.0) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await armitage.ws.aclose()
        await occupants(wilmarth, ["Armitage (linkdead)", "Wilmarth"])
        broker.isolate("A")
        with trio.move_on_after(120):
            left = await wilmarth.next_event("player_left_game")
            assert left["data"]["player_name"] == "Armitage"
        await wilmarth.command("who")
        who = await until(wilmarth, lambda f: f.get("event_type") == "command_response")
        assert who["data"]["result"].startswith("Online Players (1): Wilmarth")


async def test_a_stale_heartbeat_from_the_old_instance_does_not_take_the_player_back(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: a heartbeat A published before it heard that the player moved to B (NATS
    # orders per publisher only) reached B after B admitted them; B took it for a newer
    # presence on A and handed its own over: the new socket closed 4000 while A, hearing of
    # B's presence, had already let go.  The player was nowhere.
    async with running_cluster(tmp_path, ward_s=0.0) as (broker, nodes):
        await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["A"].connect("Wilmarth")
        armitage_id = nodes["A"].players["Armitage"].player_id
        stale = Heartbeat("A", tuple(nodes["A"].app.hub.local_records()))
        new = await nodes["B"].connect("Armitage", query="&session_id=second")
        broker.buses["B"].receive(BusMessage(HEARTBEAT, encode(stale), "A"))
        await new.command("say", "still on B")
        await result(new, "You say: still on B")
        assert await chat(wilmarth) == "Armitage says: still on B"
        on_b = nodes["B"].app.hub.presences.get(armitage_id)
        assert on_b is not None and not on_b.remote


async def test_a_stale_heartbeat_does_not_make_a_third_instance_see_the_player_leave(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # The same stale heartbeat on a bystander: it flipped the replica back to A, and A's next
    # heartbeat (without the player) then dropped it: "left the game", then "entered" again.
    async with running_cluster(tmp_path, ("A", "B", "C"), ward_s=0.0) as (broker, nodes):
        await nodes["A"].connect("Armitage", query="&session_id=first")
        dyer = await nodes["C"].connect("Dyer")
        stale = Heartbeat("A", tuple(nodes["A"].app.hub.local_records()))
        await nodes["B"].connect("Armitage", query="&session_id=second")
        broker.buses["C"].receive(BusMessage(HEARTBEAT, encode(stale), "A"))
        await trio.sleep(5)  # A and B beat meanwhile
        frames = await dyer.until_pong()
        assert [f for f in frames if f.get("event_type") == "player_left_game"] == []
        replica = nodes["C"].app.hub.presences.get(nodes["A"].players["Armitage"].player_id)
        assert replica is not None and replica.instance_id == "B"


async def test_moving_to_another_instance_is_not_an_arrival_and_keeps_the_room(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: B replaced the replica with a fresh presence from the store's record, so
    # B's players saw "entered the game" for someone who never left, and a player who had just
    # moved on A (positions are saved up to 1 s late) came back in the room they had left.
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["B"].connect("Wilmarth")
        await wilmarth.command("north")
        await result(wilmarth, "You go north.")
        await old.command("north")
        await result(old, "You go north.")
        await wilmarth.until_pong()
        new = await nodes["B"].connect("Armitage", query="&session_id=second", read_burst=False)
        burst = await new.burst()
        assert burst[0]["data"]["player"]["room_id"] == "earth_arkhamcity_campus_library_hall"
        frames = await wilmarth.until_pong()
        assert [f for f in frames if f.get("event_type") == "player_entered_game"] == []


async def test_a_message_that_breaks_the_hub_does_not_stop_the_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: only decoding errors were caught in the pump; a delivery carrying NaN
    # (json.loads takes it, the frame encoder refuses it) raised ValueError out of the pump and
    # took the whole server down with it.  Now refused at decoding, and anything else that
    # escapes is logged and counted.
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        dyer = await nodes["A"].connect("Dyer")
        to = nodes["A"].players["Armitage"].player_id
        bad = b'{"event_type":"x","data":{"v":NaN},"to":["%s"]}' % to.encode()
        broker.route(BusMessage("mythos_rt.deliver", bad, "X"))
        await dyer.command("say", "still up")
        assert await chat(armitage) == "Dyer says: still up"
        assert nodes["A"].app.metrics.value("nats_invalid_messages") == 1


async def test_an_error_in_the_hub_while_receiving_is_contained_and_counted(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_cluster(tmp_path) as (broker, nodes):
        armitage = await nodes["A"].connect("Armitage")
        dyer = await nodes["A"].connect("Dyer")

        def broken(*_: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(nodes["A"].app.hub, "deliver_from_peer", broken)
        to = nodes["A"].players["Armitage"].player_id
        delivery = b'{"event_type":"x","data":{},"to":["%s"]}' % to.encode()
        broker.route(BusMessage("mythos_rt.deliver", delivery, "X"))
        await dyer.command("say", "still up")
        assert await chat(armitage) == "Dyer says: still up"
        assert nodes["A"].app.metrics.value("cluster_errors") == 1


async def test_a_globally_muted_player_is_not_heard_on_other_instances(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: the rule narrows a globally muted speaker's line to the admins in range,
    # but the hub published it by scope anyway, so every player on the other instances got it.
    async with running_cluster(tmp_path) as (_, nodes):
        admin = await nodes["A"].connect("Armitage", query="&session_id=first")
        dyer = await nodes["A"].connect("Dyer")
        wilmarth = await nodes["B"].connect("Wilmarth")
        lake = await nodes["B"].connect("Lake")
        await admin.command("mute_global", "Dyer")
        await result(admin, "You have globally muted Dyer permanently.")
        admin = await nodes["B"].connect("Armitage", query="&session_id=second")
        await dyer.command("global", "muted global")
        await dyer.command("say", "muted say")
        await result(dyer, "You are globally muted and cannot send messages")
        await lake.command("say", "marker")
        assert await chat(wilmarth) == "Lake says: marker"
        assert await chat(admin) == "Dyer (global): muted global"  # admins still see it
        assert await chat(admin) == "Dyer says: muted say"


async def test_a_global_mute_holds_for_a_player_on_another_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: the admin's instance applied the committed global mute to its replica,
    # where nothing reads it; the instance holding the player never heard of it, so the player
    # went on talking to everyone until they reconnected.
    async with running_cluster(tmp_path) as (_, nodes):
        admin = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        lake = await nodes["B"].connect("Lake")
        await admin.command("mute_global", "Wilmarth")
        await result(admin, "You have globally muted Wilmarth permanently.")
        await wilmarth.command("say", "can you hear me")
        await result(wilmarth, "You are globally muted and cannot send messages")
        await admin.command("unmute_global", "Wilmarth")
        await result(admin, "You have globally unmuted Wilmarth.")
        await wilmarth.command("say", "free again")
        await result(wilmarth, "You say: free again")
        assert await chat(lake) == "Wilmarth says: free again"
        held_by_a = nodes["A"].app.hub.social.global_mutes
        assert held_by_a == {}  # nothing kept for a replica


async def test_an_http_logout_reaches_the_instance_holding_the_player(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: POST /v1/command "logout" behind a proxy may land on any instance; one
    # that held only a replica answered "logged out" and did nothing, so the player stayed in
    # the world, sockets open, session not retired.
    async with running_cluster(tmp_path) as (_, nodes):
        wilmarth = await nodes["B"].connect("Wilmarth")
        token = nodes["A"].token("Wilmarth")
        body = b'{"command": "logout"}'
        request = (
            b"POST /v1/command HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        ) % (token.encode(), len(body), body)
        stream = nodes["A"].open_stream()
        await stream.send_all(request)
        status, _, _ = await read_response(stream)
        assert status == 200
        assert await wilmarth.closed() == (1000, "Goodbye")


async def test_a_session_superseded_on_another_instance_is_retired_on_every_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: only the old instance retired the superseded session.  The old tab's
    # client reconnects with it; landing on any other instance it was admitted as a newer
    # session and closed the newer tab 4000: two tabs taking the player from each other.
    async with running_cluster(tmp_path, ("A", "B", "C")) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        new = await nodes["B"].connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await new.until_pong()
        for node in ("A", "B", "C"):
            target = f"/v1/api/ws?token={nodes[node].token('Armitage')}&session_id=first"
            status, _, _ = await nodes[node].raw_handshake(target)
            assert (node, status) == (node, 409)
        await new.command("say", "still here")
        await result(new, "You say: still here")


async def test_the_old_instance_announces_nothing_when_a_player_moves_away(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: the old instance ended its copy quietly, then added the replica as a
    # newcomer: its players saw "entered the game" for someone who had been there all along.
    async with running_cluster(tmp_path) as (broker, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=first")
        wilmarth = await nodes["A"].connect("Wilmarth")
        published = len(broker.buses["A"].published)
        await nodes["B"].connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        frames = await wilmarth.until_pong()
        presence_events = {"player_entered_game", "player_left_game"}
        assert [f for f in frames if f.get("event_type") in presence_events] == []
        # ... nor tells the others that the player left (they hear it from B).
        assert [p for s, p in broker.buses["A"].published[published:] if b'"down":"' in p] == []


async def test_a_session_that_moved_to_another_instance_is_not_retired(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: a client whose socket on A is half-dead reconnects with the same
    # session and lands on B; A, handing the player over, retired every session of the sockets
    # it closed, that is the live one.  The next reconnect landing on A was refused 409
    # "Session ended" and the web client gave up.
    async with running_cluster(tmp_path, grace_s=30.0) as (_, nodes):
        old = await nodes["A"].connect("Armitage", query="&session_id=s1")
        moved = await nodes["B"].connect("Armitage", query="&session_id=s1")
        await old.closed()
        await moved.ws.aclose()
        back = await nodes["A"].connect("Armitage", query="&session_id=s1", read_burst=False)
        burst = await back.burst()
        assert burst[-1]["event_type"] == "welcome"


async def test_alone_the_hub_keeps_no_record_of_presence_changes(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: Presences.changed is emptied only by sync_presences, which runs only
    # with other instances; alone, every player id that ever moved, connected or left stayed
    # in it for the life of the process.
    async with running(tmp_path) as h:
        for name in ("Armitage", "Wilmarth"):
            client = await h.connect(name)
            await client.command("north")
            await result(client, "You go north.")
            await client.ws.aclose()
        await trio.sleep(30)
        assert h.app.hub.presences.changed == set()


async def test_an_instance_that_went_away_holding_nobody_is_no_alarm(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # Found in review: a drained instance (its players' ends published) falls silent like a
    # dead one, so every deploy logged "instance … is silent: its players are linkdead here" and
    # counted cluster_instances_lost on every other instance.  Only a loss that holds players
    # is one; the crash of an instance with players still counts.
    async with running_cluster(tmp_path, ("A", "B", "C")) as (broker, nodes):
        await nodes["C"].connect("Armitage")
        await trio.sleep(3)
        broker.isolate("A")  # held nobody, as after a drain
        broker.isolate("C")  # held Armitage: lost
        await trio.sleep(15)
        assert nodes["B"].app.metrics.value("cluster_instances_lost") == 1


@pytest.mark.parametrize("answer_by", ["frame", "accept command"])
async def test_a_follower_on_one_instance_follows_a_leader_on_another(
    tmp_path: Path, autojump_clock: trio.abc.Clock, answer_by: str
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        leader = await nodes["A"].connect("Armitage")
        follower = await nodes["B"].connect("Wilmarth")
        await follower.command("follow", "Armitage")
        await result(follower, "Follow request sent. Waiting for them to accept.")
        request = await leader.next_event("follow_request")
        assert request["data"]["requestor_name"] == "Wilmarth"
        if answer_by == "frame":
            response = {"request_id": request["data"]["request_id"], "accept": True}
            await leader.send({"type": "follow_response", "data": response})
        else:  # the leader's instance holds a mirror of the request: `accept` finds it
            await leader.command("accept")
        await result(leader, "You are now being followed by Wilmarth.")
        await result(follower, "You are now following Armitage.")
        state = await follower.next_event("follow_state")
        assert state["data"]["following"] == {"target_name": "Armitage", "target_type": "player"}
        await leader.command("north")
        await result(leader, "You go north.")
        moved = await result(follower, "You follow Armitage north.")
        assert moved["data"]["room_changed"] is True
        await follower.command("say", "right behind you")
        assert await chat(leader) == "Wilmarth says: right behind you"
        await leader.command("quit")
        await result(follower, "You are no longer following Armitage.")
        await follower.command("following")
        reply = await until(follower, lambda f: f.get("event_type") == "command_response")
        assert "not following" in reply["data"]["result"].lower()


async def test_a_declined_follow_across_instances_leaves_nothing_behind(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path, ward_s=0.0) as (_, nodes):
        leader = await nodes["A"].connect("Armitage")
        follower = await nodes["B"].connect("Wilmarth")
        await follower.command("follow", "Armitage")
        request = await leader.next_event("follow_request")
        response = {"request_id": request["data"]["request_id"], "accept": False}
        await leader.send({"type": "follow_response", "data": response})
        await result(follower, "Your follow request was declined.")
        await leader.command("north")
        await result(leader, "You go north.")
        frames = await follower.until_pong()
        assert not [f for f in frames if f.get("event_type") == "room_state"]
        assert nodes["B"].app.hub.social.following == {}
        assert nodes["A"].app.hub.social.following == {}
