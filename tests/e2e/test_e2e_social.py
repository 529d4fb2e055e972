"""Mute, follow and party end to end (PROTOCOL.md sections 10, 11; issue 4 "must show").

Same method as test_e2e_game.py: after each action, every player's pong marks the end of what
the action produced for it, so "did not hear it" is proven, never guessed from a silence.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.e2e.conftest import (
    Frame,
    Launcher,
    ServerProcess,
    StartServer,
    close_of,
    wrapped,
)
from tests.e2e.test_e2e_game import (
    CALM,
    LIBRARY,
    QUAD,
    RESTRICTED,
    Player,
    act,
    assert_chat,
    join,
    observe,
    occupants,
    result_of,
    types,
)

TRIO = ["Carter", "Pickman", "Upton"]


async def join_all(stack: contextlib.AsyncExitStack, server: ServerProcess) -> list[Player]:
    players = [await join(stack, server, name) for name in TRIO]
    for p in players:
        await p.settle()  # the others' arrivals
    return players


# --- mute -----------------------------------------------------------------------------------


async def muted_pickman_is_not_heard(carter: Player, pickman: Player, upton: Player) -> None:
    """Pickman on say, global and whisper: Upton hears him, Carter (who muted him) never does."""
    everyone = [carter, pickman, upton]
    seen = await act(pickman, everyone, "say", "Can", "you", "hear", "me?")
    assert result_of(seen["Pickman"]) == "You say: Can you hear me?"
    (line,) = seen["Upton"]
    text = "Pickman says: Can you hear me?"
    assert_chat(line, pickman, "say", text, "Can you hear me?", room_id=QUAD)
    assert seen["Carter"] == []

    seen = await act(pickman, everyone, "global", "Anyone?")
    assert result_of(seen["Pickman"]) == "You say (global): Anyone?"
    (line,) = seen["Upton"]
    assert_chat(line, pickman, "global", "Pickman (global): Anyone?", "Anyone?")
    assert seen["Carter"] == []

    seen = await act(pickman, everyone, "me", "shrugs.")
    (line,) = seen["Upton"]
    assert_chat(line, pickman, "emote", "Pickman shrugs.", "shrugs.", room_id=QUAD)
    assert seen["Carter"] == []

    # The muted sender is not told (the echo is the usual one); the whisper goes nowhere.
    seen = await act(pickman, everyone, "whisper", "Carter", "Please answer.")
    assert types(seen["Pickman"]) == ["command_response"]
    assert result_of(seen["Pickman"]) == "You whisper to Carter: Please answer."
    assert (seen["Carter"], seen["Upton"]) == ([], [])
    seen = await act(carter, everyone, "reply", "Hm?")
    assert result_of(seen["Carter"]) == "No one has whispered to you recently."

    # Whispers to others still arrive.
    seen = await act(pickman, everyone, "whisper", "Upton", "He ignores me.")
    (line,) = seen["Upton"]
    text = "Pickman whispers to you: He ignores me."
    assert_chat(line, pickman, "whisper", text, "He ignores me.", target=upton)
    assert seen["Carter"] == []


def test_mute_silences_one_speaker_on_every_channel_and_survives_a_restart(
    launcher: Launcher,
) -> None:
    server = launcher.start(*CALM, players=TRIO)

    async def before_restart() -> None:
        async with contextlib.AsyncExitStack() as stack:
            carter, pickman, upton = everyone = await join_all(stack, server)
            seen = await act(carter, everyone, "mute", "Pickman")
            assert types(seen["Carter"]) == ["command_response"]
            assert result_of(seen["Carter"]) == "You have muted Pickman permanently."
            assert (seen["Pickman"], seen["Upton"]) == ([], [])  # the muted one is not told

            await muted_pickman_is_not_heard(carter, pickman, upton)

            # Only Pickman is muted: Upton reaches Carter.
            seen = await act(upton, everyone, "say", "I am here.")
            for p in (carter, pickman):
                (line,) = seen[p.name]
                assert_chat(
                    line, upton, "say", "Upton says: I am here.", "I am here.", room_id=QUAD
                )

            seen = await act(carter, everyone, "mutes")
            assert result_of(seen["Carter"]) == "Muted players: Pickman (permanent)"

    asyncio.run(before_restart())
    assert server.stop() == 0, server.output()

    again = launcher.restart(server, *CALM)
    try:

        async def after_restart() -> None:
            async with contextlib.AsyncExitStack() as stack:
                carter, pickman, upton = everyone = await join_all(stack, again)
                seen = await act(carter, everyone, "mutes")
                assert result_of(seen["Carter"]) == "Muted players: Pickman (permanent)"

                await muted_pickman_is_not_heard(carter, pickman, upton)

                # The mute also refuses Pickman's follow requests and party invites.
                seen = await act(pickman, everyone, "follow", "Carter")
                assert result_of(seen["Pickman"]) == "They are not accepting follow requests."
                assert seen["Carter"] == []
                seen = await act(pickman, everyone, "party", "invite", "Carter")
                assert result_of(seen["Pickman"]) == "They are not accepting party invites."
                assert seen["Carter"] == []

                # Unmuted, Pickman is heard again: the mute was the only reason.
                seen = await act(carter, everyone, "unmute", "Pickman")
                assert result_of(seen["Carter"]) == "You have unmuted Pickman."
                seen = await act(pickman, everyone, "say", "Finally.")
                (line,) = seen["Carter"]
                assert_chat(
                    line, pickman, "say", "Pickman says: Finally.", "Finally.", room_id=QUAD
                )
                seen = await act(carter, everyone, "mutes")
                assert result_of(seen["Carter"]) == "You have not muted anyone."

        asyncio.run(after_restart())
    finally:
        code = again.stop()
    assert code == 0, again.output()


# --- follow -----------------------------------------------------------------------------------


def test_a_follower_walks_two_rooms_behind_its_leader(start_server: StartServer) -> None:
    server = start_server(*CALM, players=TRIO)

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            carter, pickman, upton = everyone = await join_all(stack, server)

            seen = await act(pickman, everyone, "follow", "Carter")
            assert result_of(seen["Pickman"]) == "Follow request sent. Waiting for them to accept."
            (request,) = seen["Carter"]
            assert request["event_type"] == "follow_request"
            assert request["player_id"] == pickman.player_id
            request_id = request["data"]["request_id"]
            assert request["data"] == {
                "request_id": request_id,
                "requestor_name": "Pickman",
                "requestor_id": pickman.player_id,
            }
            assert seen["Upton"] == []

            answer = {"type": "follow_response", "data": {"request_id": request_id, "accept": True}}
            await carter.ws.send(wrapped(answer, carter.token))
            seen = await observe(carter, everyone)
            assert result_of(seen["Carter"]) == "You are now being followed by Pickman."
            assert types(seen["Pickman"]) == ["command_response", "follow_state"]
            assert result_of(seen["Pickman"]) == "You are now following Carter."
            assert seen["Pickman"][1]["data"] == {
                "following": {"target_name": "Carter", "target_type": "player"}
            }

            for direction, origin, destination in (
                ("north", QUAD, LIBRARY),
                ("up", LIBRARY, RESTRICTED),
            ):
                seen = await act(carter, everyone, "go", direction)
                assert result_of(seen["Carter"]) == f"You go {direction}."
                # The leader leaves first: the follower sees that, then follows.
                assert types(seen["Pickman"]) == [
                    "player_left",
                    "room_occupants",
                    "command_response",
                    "room_state",
                    "room_occupants",
                ]
                left, _, response, state, here = seen["Pickman"]
                assert left["room_id"] == origin and left["data"]["player_name"] == "Carter"
                assert response["data"]["result"] == f"You follow Carter {direction}."
                assert response["data"]["room_changed"] is True
                assert response["data"]["room_id"] == destination
                assert state["room_id"] == destination
                assert state["data"]["room"]["id"] == destination
                assert here["room_id"] == destination
                assert occupants(here) == ["Carter", "Pickman"]
                # The leader sees the follower arrive.
                arrivals = [f for f in seen["Carter"] if f["event_type"] == "player_entered"]
                assert [f["data"]["player_name"] for f in arrivals] == ["Pickman"]

            # Upton, left in the quad, only saw them leave (the first move).
            seen = await act(upton, everyone, "look")
            assert "Also here" not in result_of(seen["Upton"])
            # Both end in the same room.
            seen = await act(carter, everyone, "look")
            assert "Also here: Pickman" in result_of(seen["Carter"])
            seen = await act(pickman, everyone, "following")
            assert result_of(seen["Pickman"]) == "You are following Carter."

    asyncio.run(scenario())


# --- party ------------------------------------------------------------------------------------


def test_a_party_forms_chats_and_is_disbanded_when_its_leader_quits(
    start_server: StartServer,
) -> None:
    server = start_server(*CALM, players=TRIO)

    async def invite(
        leader: Player, guest: Player, everyone: list[Player]
    ) -> tuple[str, dict[str, list[Frame]]]:
        seen = await act(leader, everyone, "party", "invite", guest.name)
        assert result_of(seen[leader.name]) == "Party invite sent. Waiting for them to accept."
        (offer,) = seen[guest.name]
        assert offer["event_type"] == "party_invite"
        invite_id: str = offer["data"]["invite_id"]
        assert offer["data"] == {
            "invite_id": invite_id,
            "inviter_name": leader.name,
            "inviter_id": leader.player_id,
        }
        return invite_id, seen

    async def accept(
        guest: Player, invite_id: str, everyone: list[Player]
    ) -> dict[str, list[Frame]]:
        answer = {"type": "party_invite_response", "data": {"invite_id": invite_id, "accept": True}}
        await guest.ws.send(wrapped(answer, guest.token))
        return await observe(guest, everyone)

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            carter, pickman, upton = everyone = await join_all(stack, server)

            invite_id, seen = await invite(carter, pickman, everyone)
            # The first invite creates the party, led by Carter.
            assert types(seen["Carter"]) == ["party_update", "command_response"]
            created = seen["Carter"][0]
            party_id = created["data"]["party_id"]
            assert created["data"] == {
                "party_id": party_id,
                "leader": "Carter",
                "members": ["Carter"],
                "change": "created",
            }
            assert seen["Upton"] == []
            seen = await accept(pickman, invite_id, everyone)
            assert types(seen["Pickman"]) == ["command_response", "party_update"]
            assert result_of(seen["Pickman"]) == "You have joined Carter's party."
            assert types(seen["Carter"]) == ["command_response", "party_update"]
            assert result_of(seen["Carter"]) == "Pickman has joined your party."
            joined = seen["Carter"][1]
            assert joined["data"] == {
                "party_id": party_id,
                "leader": "Carter",
                "members": ["Carter", "Pickman"],
                "change": "joined",
            }
            assert seen["Pickman"][1] == joined
            assert seen["Upton"] == []

            invite_id, seen = await invite(carter, upton, everyone)
            assert types(seen["Carter"]) == ["command_response"]  # the party exists already
            assert seen["Pickman"] == []
            seen = await accept(upton, invite_id, everyone)
            assert result_of(seen["Upton"]) == "You have joined Carter's party."
            for p in (carter, pickman):
                assert result_of(seen[p.name]) == "Upton has joined your party."
            updates = [
                [f for f in seen[p.name] if f["event_type"] == "party_update"] for p in everyone
            ]
            for (update,) in updates:
                assert update["data"] == {
                    "party_id": party_id,
                    "leader": "Carter",
                    "members": ["Carter", "Pickman", "Upton"],
                    "change": "joined",
                }

            seen = await act(carter, everyone, "party")
            assert result_of(seen["Carter"]) == "Party (leader: Carter): Carter, Pickman, Upton"

            # Party chat reaches every member, the sender included.
            seen = await act(carter, everyone, "party", "hello")
            assert types(seen["Carter"]) == ["command_response", "chat_message"]
            assert result_of(seen["Carter"]) == "Sent."
            for p in everyone:
                line = seen[p.name][-1]
                assert_chat(line, carter, "party", "Carter (party): hello", "hello")

            # The leader quits: the party is disbanded for the others.
            await carter.command("quit")
            _, goodbye = await carter.until("command_response")
            assert goodbye["data"]["result"] == "Goodbye! You have been disconnected from the game."
            assert await close_of(carter.ws) == (1000, "Goodbye")
            # Up to the occupant list, which may wait for the room's occupant interval.
            after = {p.name: await p.through("room_occupants") for p in (pickman, upton)}
            for p in (pickman, upton):
                frames = after[p.name]
                assert types(frames) == [
                    "party_update",
                    "command_response",
                    "player_left_game",
                    "room_occupants",
                ]
                disbanded, notice, left, here = frames
                assert disbanded["data"] == {
                    "party_id": party_id,
                    "leader": "Carter",
                    "members": ["Carter", "Pickman", "Upton"],
                    "change": "disbanded",
                }
                assert notice["data"]["result"] == "The party has been disbanded."
                assert left["data"] == {"player_id": carter.player_id, "player_name": "Carter"}
                assert occupants(here) == ["Pickman", "Upton"]
            for p in (pickman, upton):
                seen = await act(p, [pickman, upton], "party")
                assert result_of(seen[p.name]) == "You are not in a party."

    asyncio.run(scenario())
