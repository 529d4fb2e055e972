"""The game layer over memory streams with the autojump clock (PROTOCOL.md sections 3, 5, 8, 9,
12): disconnect grace, login ward, command and chat limits, chat routing, movement, several
sockets per player, resume and its replay bound, game ticks and sequence numbers.

Time is only ever advanced on purpose (``trio.sleep``/``sleep_until`` to a point on the mock
clock); everything else waits on concrete frames.  "Nothing else arrived" is checked with a
ping fence: the pong comes after everything the hub queued for that socket before the ping.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from mythos_rt.core.mythos_clock import mythos_time
from tests.runtime.harness import Client, Harness, running

Frame = dict[str, Any]
EXACT = 1e-6  # the autojump clock lands on deadlines; allow only float rounding
CHAT_LIMITED = (
    "Error sending message: Rate limit exceeded. Please wait before sending another message."
)
TOO_MANY_COMMANDS = re.compile(r"^Too many commands\. Please wait (\d+\.\d) seconds\.$")


# --- helpers -------------------------------------------------------------------------------------


async def drop(client: Client) -> None:
    """Lose the transport without a closing handshake, like a pulled network cable."""
    await trio.aclose_forcefully(client.ws._stream)


def event_types(frames: list[Frame]) -> list[str | None]:
    return [frame.get("event_type") for frame in frames]


def players(frame: Frame) -> list[str]:
    assert frame["event_type"] == "room_occupants", frame
    names: list[str] = frame["data"]["players"]
    return names


async def next_occupants(client: Client) -> list[str]:
    return players(await client.next_event("room_occupants"))


async def command(client: Client, name: str, *args: str) -> Frame:
    """Send a command and return its command_response (skipping other events)."""
    await client.command(name, *args)
    return await client.next_event("command_response")


async def walk(client: Client, direction: str) -> Frame:
    """Move and check the mover's bundle order; return the new room_state."""
    await client.command(direction)
    response = await client.next_event("command_response")
    assert response["data"]["result"] == f"You go {direction}."
    assert response["data"]["room_changed"] is True
    state = await client.next()
    assert state["event_type"] == "room_state"
    assert response["data"]["room_id"] == state["room_id"] == state["data"]["room"]["id"]
    assert response["data"]["room_state"] == state["data"]
    occupants = await client.next()
    assert occupants["event_type"] == "room_occupants"
    assert occupants["room_id"] == state["room_id"]
    return state


def game_state(client: Client) -> Frame:
    frame = client.received[0]
    assert frame["event_type"] == "game_state"
    return frame


@attrs.define
class Tap:
    """Reads a client's frames as raw text, to compare bytes across recipients."""

    client: Client
    texts: list[str] = attrs.field(factory=list)

    async def next(self) -> Frame:
        text = await self.client.ws.get_message()
        assert isinstance(text, str)
        self.texts.append(text)
        frame: Frame = json.loads(text)
        return frame

    async def next_event(self, event_type: str) -> Frame:
        while (frame := await self.next()).get("event_type") != event_type:
            pass
        return frame

    async def until_welcome(self) -> list[Frame]:
        frames = [await self.next()]
        while frames[-1].get("event_type") != "welcome":
            frames.append(await self.next())
        return frames

    async def until_pong(self) -> list[Frame]:
        await self.client.send({"type": "ping"})
        frames = [await self.next()]
        while frames[-1].get("event_type") != "pong":
            frames.append(await self.next())
        return frames[:-1]

    def frames(self) -> list[Frame]:
        return [json.loads(text) for text in self.texts]


async def connect_tap(h: Harness, name: str, query: str = "") -> Tap:
    return Tap(await h.connect(name, query=query, read_burst=False))


# --- disconnect grace (section 12) ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "abrupt"])
async def test_dropped_player_is_linkdead_for_the_grace_then_leaves(
    tmp_path: Path, autojump_clock: trio.abc.Clock, how: str
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        watcher = await h.connect("Wilmarth")
        armitage = await h.connect("Armitage")
        assert await next_occupants(watcher) == ["Wilmarth", "Armitage"]
        armitage_id = h.players["Armitage"].player_id
        if how == "close":
            await armitage.ws.aclose()
        else:
            await drop(armitage)
        dropped = trio.current_time()

        linkdead = await watcher.next()
        assert players(linkdead) == ["Wilmarth", "Armitage (linkdead)"]
        # At once, or when the room's occupant interval since the arrival's list is over.
        assert trio.current_time() - dropped < h.app.settings.occupants_interval_s + EXACT
        presence = h.app.hub.presences.get(armitage_id)
        assert presence is not None and presence.linkdead

        left = await watcher.next()
        assert left["event_type"] == "player_left_game"
        assert abs(trio.current_time() - dropped - 30.0) < EXACT
        assert left["data"] == {"player_id": armitage_id, "player_name": "Armitage"}
        assert players(await watcher.next()) == ["Wilmarth"]
        assert h.app.hub.presences.get(armitage_id) is None


async def test_reconnect_within_the_grace_restores_the_presence(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        watcher = await h.connect("Wilmarth")
        armitage = await h.connect("Armitage")
        await watcher.next_event("room_occupants")
        await drop(armitage)
        dropped = trio.current_time()
        assert await next_occupants(watcher) == ["Wilmarth", "Armitage (linkdead)"]

        await trio.sleep_until(dropped + 29.0)
        back = await h.connect("Armitage")
        assert game_state(back)["data"]["occupants"] == ["Wilmarth", "Armitage"]
        entered = await watcher.next()
        assert entered["event_type"] == "player_entered_game"
        assert entered["data"]["player_name"] == "Armitage"
        assert players(await watcher.next()) == ["Wilmarth", "Armitage"]

        with trio.move_on_after(10.0):  # well past the 30 s the grace would have ended at
            unexpected = await watcher.next()
            pytest.fail(f"nothing should arrive after the restore, got {unexpected}")
        assert trio.current_time() - dropped > 30.0
        assert await watcher.until_pong() == []
        presence = h.app.hub.presences.get(h.players["Armitage"].player_id)
        assert presence is not None and not presence.linkdead
        assert (await command(back, "whoami"))["data"]["result"].startswith("You are Armitage")


# --- login ward (section 12) ---------------------------------------------------------------------


async def test_login_ward_shows_in_occupants_and_game_state_until_it_ends(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, ward_s=10.0) as h:
        armitage = await h.connect("Armitage")
        start = trio.current_time()
        state = game_state(armitage)["data"]
        assert state["login_grace_period_active"] is True
        assert state["login_grace_period_remaining"] == 10.0
        assert players(armitage.received[2]) == ["Armitage (warded)"]

        await trio.sleep_until(start + 4.0)
        wilmarth = await h.connect("Wilmarth")
        state = game_state(wilmarth)["data"]
        assert state["login_grace_period_active"] is True
        assert state["login_grace_period_remaining"] == 10.0
        assert state["occupants"] == ["Armitage (warded)", "Wilmarth (warded)"]
        assert await next_occupants(armitage) == ["Armitage (warded)", "Wilmarth (warded)"]

        # A second socket joins the same presence: the ward keeps running, it does not restart.
        await trio.sleep_until(start + 6.0)
        second = await h.connect("Armitage")
        state = game_state(second)["data"]
        assert state["login_grace_period_active"] is True
        assert state["login_grace_period_remaining"] == 4.0

        for client in (armitage, wilmarth, second):
            ended = await client.next_event("room_occupants")
            assert abs(trio.current_time() - start - 10.0) < EXACT
            assert players(ended) == ["Armitage", "Wilmarth (warded)"]
        for client in (armitage, wilmarth, second):
            ended = await client.next_event("room_occupants")
            assert abs(trio.current_time() - start - 14.0) < EXACT
            assert players(ended) == ["Armitage", "Wilmarth"]

        third = await h.connect("Armitage")
        state = game_state(third)["data"]
        assert state["login_grace_period_active"] is False
        assert state["login_grace_period_remaining"] == 0.0
        assert state["occupants"] == ["Armitage", "Wilmarth"]


# --- rate limits (section 8) ---------------------------------------------------------------------


async def test_eleventh_command_within_a_second_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        start = trio.current_time()
        for i in range(10):
            await trio.sleep_until(start + i * 0.1)  # ten commands spread over 0.9 s
            response = await command(armitage, "whoami")
            assert response["data"]["result"].startswith("You are Armitage")
        await trio.sleep_until(start + 0.95)
        refused = await command(armitage, "whoami")
        match = TOO_MANY_COMMANDS.fullmatch(refused["data"]["result"])
        assert match is not None, refused
        assert float(match.group(1)) == pytest.approx(0.05, abs=0.05)  # the first leaves at 1.0

        await trio.sleep_until(start + 1.0 + 0.001)  # the first command has left the window
        response = await command(armitage, "whoami")
        assert response["data"]["result"].startswith("You are Armitage")
        refused = await command(armitage, "whoami")  # the second is still inside it
        assert TOO_MANY_COMMANDS.fullmatch(refused["data"]["result"])


async def test_eleventh_command_at_once_waits_a_full_second(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        for _ in range(10):
            await armitage.command("look")
        for _ in range(10):
            response = await armitage.next()
            assert response["data"]["result"].startswith("Miskatonic Quadrangle")
        refused = await command(armitage, "look")
        assert refused["data"] == {"result": "Too many commands. Please wait 1.0 seconds."}
        await trio.sleep(1.0)
        response = await command(armitage, "look")
        assert response["data"]["result"].startswith("Miskatonic Quadrangle")


async def test_sixth_whisper_in_a_minute_is_refused_and_not_delivered(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        target = await h.connect("Wilmarth")
        armitage = await h.connect("Armitage")
        for i in range(5):
            response = await command(armitage, "whisper", "Wilmarth", f"secret {i}")
            assert response["data"]["result"] == f"You whisper to Wilmarth: secret {i}"
            whisper = await target.next_event("chat_message")
            assert whisper["data"]["channel"] == "whisper"
            assert whisper["data"]["message"] == f"Armitage whispers to you: secret {i}"
        await trio.sleep(59.0)  # still inside the minute of the first whisper
        refused = await command(armitage, "whisper", "Wilmarth", "secret 5")
        assert refused["data"] == {"result": CHAT_LIMITED}
        assert "chat_message" not in event_types(await target.until_pong())

        # Other channels keep their own limits.
        assert (await command(armitage, "say", "aloud"))["data"]["result"] == "You say: aloud"
        said = await target.next_event("chat_message")
        assert said["data"]["channel"] == "say"
        assert said["data"]["message"] == "Armitage says: aloud"

        await trio.sleep(1.0)  # the first whisper has left the window
        response = await command(armitage, "whisper", "Wilmarth", "secret 6")
        assert response["data"]["result"] == "You whisper to Wilmarth: secret 6"
        whisper = await target.next_event("chat_message")
        assert whisper["data"]["original_content"] == "secret 6"


# --- chat routing (section 9) --------------------------------------------------------------------


async def test_chat_reaches_room_subzone_and_world_but_never_echoes_to_the_sender(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, names=("Armitage", "Wilmarth", "Dyer", "Lake")) as h:
        armitage = await h.connect("Armitage")
        roommate = await h.connect("Wilmarth")
        neighbour = await h.connect("Lake")  # will stand in the same subzone
        stranger = await h.connect("Dyer")  # will stand in another subzone
        world = h.app.hub.world
        room = game_state(armitage)["data"]["room"]
        exits = room["exits"]
        same = next(d for d, to in exits.items() if world.rooms[to].subzone == room["subzone"])
        other = next(d for d, to in exits.items() if world.rooms[to].subzone != room["subzone"])
        assert (await walk(neighbour, same))["data"]["room"]["subzone"] == room["subzone"]
        assert (await walk(stranger, other))["data"]["room"]["subzone"] != room["subzone"]
        for client in (armitage, roommate, neighbour, stranger):
            await client.until_pong()

        cases = [
            ("say", ["Hello", "there"], "You say: Hello there", "Armitage says: Hello there"),
            ("emote", ["waves"], "Armitage waves", "Armitage waves"),
            ("pose", ["leans", "on", "a", "cane"], "Your pose is now: leans on a cane", None),
        ]
        for name, args, echo, shown in cases:
            response = await command(armitage, name, *args)
            assert response["data"]["result"] == echo
            message = await roommate.next_event("chat_message")
            assert message["data"]["channel"] == name
            assert message["data"]["message"] == (shown or f"Armitage {' '.join(args)}")
            assert message["data"]["sender_id"] == message["player_id"]
            assert message["player_id"] == h.players["Armitage"].player_id
            assert message["room_id"] == room["id"]
            for outsider in (armitage, neighbour, stranger):
                assert "chat_message" not in event_types(await outsider.until_pong())

        response = await command(armitage, "local", "nearby")
        assert response["data"]["result"] == "You say locally: nearby"
        for listener in (roommate, neighbour):
            message = await listener.next_event("chat_message")
            assert message["data"]["channel"] == "local"
            assert message["data"]["message"] == "Armitage (local): nearby"
        for outsider in (armitage, stranger):
            assert "chat_message" not in event_types(await outsider.until_pong())

        response = await command(armitage, "g", "everyone")
        assert response["data"]["result"] == "You say (global): everyone"
        for listener in (roommate, neighbour, stranger):
            message = await listener.next_event("chat_message")
            assert message["data"]["channel"] == "global"
            assert message["data"]["message"] == "Armitage (global): everyone"
        assert "chat_message" not in event_types(await armitage.until_pong())


# --- movement (section 9) ------------------------------------------------------------------------


async def test_moving_north_notifies_both_rooms_and_saves_the_room(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        behind = await h.connect("Wilmarth")
        ahead = await h.connect("Dyer")
        start_room = game_state(armitage)["data"]["room"]
        north = start_room["exits"]["north"]
        await walk(ahead, "north")
        for client in (armitage, behind, ahead):
            await client.until_pong()

        state = await walk(armitage, "north")
        assert state["data"]["room"]["id"] == north
        assert state["data"]["occupants"] == ["Dyer", "Armitage"]
        assert state["data"]["occupant_count"] == 2

        armitage_id = h.players["Armitage"].player_id
        left = await behind.next()
        assert left["event_type"] == "player_left"
        assert left["room_id"] == start_room["id"]
        assert left["data"] == {
            "player_id": armitage_id,
            "player_name": "Armitage",
            "message": "Armitage leaves the room.",
        }
        assert players(await behind.next()) == ["Wilmarth"]
        entered = await ahead.next()
        assert entered["event_type"] == "player_entered"
        assert entered["room_id"] == north
        assert entered["data"]["message"] == "Armitage enters the room."
        assert players(await ahead.next()) == ["Dyer", "Armitage"]

        await trio.testing.wait_all_tasks_blocked()
        record = h.store.get_player(armitage_id)
        assert record is not None and record.room_id == north

        await armitage.command("quit")
        assert await armitage.closed() == (1000, "Goodbye")
        again = await h.connect("Armitage")
        assert game_state(again)["data"]["player"]["room_id"] == north
        assert game_state(again)["data"]["room"]["id"] == north
        assert game_state(again)["room_id"] == north


async def test_no_exit_and_go_usage(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        exits = game_state(armitage)["data"]["room"]["exits"]
        assert "up" not in exits
        assert (await command(armitage, "u"))["data"] == {"result": "You can't go that way."}
        usage = await command(armitage, "go")
        assert usage["data"] == {"result": "Go where? Usage: go <direction>"}
        await armitage.command("go", "n")
        response = await armitage.next()
        assert response["data"]["result"] == "You go north."
        assert response["data"]["room_id"] == exits["north"]


# --- several sockets per player (section 3) ------------------------------------------------------


async def test_every_event_reaches_every_socket_of_the_player(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        first = Tap(await h.connect("Armitage"))
        second = Tap(await h.connect("Armitage"))
        wilmarth = await h.connect("Wilmarth")
        for tap in (first, second):
            await tap.until_pong()
        first.texts.clear()
        second.texts.clear()

        await command(wilmarth, "say", "to the room")
        await command(wilmarth, "whisper", "Armitage", "to you alone")
        for tap in (first, second):
            said = await tap.next()
            assert said["data"]["message"] == "Wilmarth says: to the room"
            whispered = await tap.next()
            assert whispered["data"]["message"] == "Wilmarth whispers to you: to you alone"
            assert whispered["data"]["channel"] == "whisper"
        assert first.texts == second.texts  # the very same frames, numbers included


# --- resume (section 5) --------------------------------------------------------------------------


async def test_resume_replays_exactly_the_missed_events(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        armitage = await h.connect("Armitage")
        speaker = await h.connect("Wilmarth")
        observer = Tap(await h.connect("Dyer"))
        await armitage.next_event("room_occupants")  # Wilmarth arrived
        last = (await armitage.next_event("room_occupants"))["sequence_number"]  # Dyer arrived
        assert await armitage.until_pong() == []
        await drop(armitage)
        assert "Armitage (linkdead)" in players(await observer.next_event("room_occupants"))

        await observer.until_pong()
        observer.texts.clear()
        for line in ("one", "two", "three"):
            await command(speaker, "say", line)
        heard = [await observer.next() for _ in range(3)]
        assert [m["data"]["original_content"] for m in heard] == ["one", "two", "three"]
        heard_texts = list(observer.texts)

        back = await connect_tap(h, "Armitage", f"&resume_from={last}")
        frames = await back.until_welcome()
        assert event_types(frames) == ["chat_message"] * 3 + ["welcome"]
        assert back.texts[:3] == heard_texts  # original numbers, identical bytes
        assert frames[3]["data"] == {
            "message": "Connected to MythosMUD",
            "resumed": True,
            "replayed": 3,
        }
        assert frames[3]["player_id"] == h.players["Armitage"].player_id
        numbers = [frame["sequence_number"] for frame in frames]
        assert numbers == sorted(numbers) and numbers[0] > last
        assert await back.until_pong() == []  # no game_state, nothing repeated

        entered = await observer.next()
        assert entered["event_type"] == "player_entered_game"
        assert entered["data"]["player_name"] == "Armitage"
        assert players(await observer.next()) == ["Armitage", "Wilmarth", "Dyer"]


async def test_resume_beside_a_live_socket_replays_what_its_twin_missed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        staying = Tap(await h.connect("Armitage"))
        leaving = await h.connect("Armitage")
        speaker = await h.connect("Wilmarth")
        await staying.until_pong()
        last = (await leaving.next_event("room_occupants"))["sequence_number"]
        assert await leaving.until_pong() == []
        await drop(leaving)
        await trio.testing.wait_all_tasks_blocked()

        staying.texts.clear()
        for line in ("one", "two", "three"):
            await command(speaker, "say", line)
        await command(speaker, "whisper", "Armitage", "four")
        for _ in range(4):
            await staying.next_event("chat_message")

        back = await connect_tap(h, "Armitage", f"&resume_from={last}")
        frames = await back.until_welcome()
        assert event_types(frames) == ["chat_message"] * 4 + ["welcome"]
        assert back.texts[:4] == staying.texts
        assert frames[-1]["data"]["resumed"] is True and frames[-1]["data"]["replayed"] == 4
        # The presence never ended: nobody is told the player entered the game again.
        assert "player_entered_game" not in event_types(await speaker.until_pong())
        assert await back.until_pong() == []


async def test_resume_after_grace_or_with_a_bad_number_gets_the_normal_burst(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        armitage = await h.connect("Armitage")
        watcher = await h.connect("Wilmarth")
        last = (await command(armitage, "whoami"))["sequence_number"]
        for query in ("&resume_from=abc", "&resume_from=", f"&resume_from={last + 10**9}"):
            await drop(armitage)
            assert "Armitage (linkdead)" in await next_occupants(watcher)
            armitage = await h.connect("Armitage", query=query, read_burst=False)
            burst = await armitage.burst()
            assert event_types(burst) == [
                "game_state",
                "room_update",
                "room_occupants",
                "welcome",
            ], query
            assert burst[-1]["data"] == {"message": "Connected to MythosMUD", "resumed": False}
            assert (await watcher.next())["event_type"] == "player_entered_game"
            assert await next_occupants(watcher) == ["Armitage", "Wilmarth"]

        last = (await command(armitage, "whoami"))["sequence_number"]
        await drop(armitage)
        await watcher.next_event("player_left_game")  # the grace ran out
        await command(watcher, "say", "after you left")
        armitage = await h.connect("Armitage", query=f"&resume_from={last}", read_burst=False)
        burst = await armitage.burst()
        assert event_types(burst) == ["game_state", "room_update", "room_occupants", "welcome"]
        assert burst[-1]["data"]["resumed"] is False
        assert (await watcher.next_event("player_entered_game"))["data"]["player_name"] == (
            "Armitage"
        )


async def test_resume_from_well_before_the_presence_gets_the_normal_burst(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        watcher = await h.connect("Wilmarth")
        earlier = watcher.received[-1]["sequence_number"]
        await command(watcher, "whoami")  # one more number is issued before Armitage arrives
        armitage = await h.connect("Armitage")
        await command(watcher, "say", "hello")  # Armitage's buffer holds this one
        await armitage.next_event("chat_message")
        await drop(armitage)
        await watcher.next_event("room_occupants")
        back = await h.connect("Armitage", query=f"&resume_from={earlier}", read_burst=False)
        burst = await back.burst()
        assert event_types(burst) == ["game_state", "room_update", "room_occupants", "welcome"]
        assert burst[-1]["data"]["resumed"] is False


async def test_resume_from_the_last_number_before_the_presence_gets_the_normal_burst(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        watcher = await h.connect("Wilmarth")
        # The last number the instance issued before Armitage's presence began.
        before = watcher.received[-1]["sequence_number"]
        armitage = await h.connect("Armitage")
        assert game_state(armitage)["sequence_number"] > before
        await drop(armitage)
        await watcher.next_event("room_occupants")
        back = await h.connect("Armitage", query=f"&resume_from={before}", read_burst=False)
        frames = await back.burst()
        assert event_types(frames) == ["game_state", "room_update", "room_occupants", "welcome"]
        assert frames[-1]["data"]["resumed"] is False


async def test_resume_past_the_replay_bound_gets_the_normal_burst(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0, replay_max_events=5) as h:
        speaker = await h.connect("Wilmarth")
        armitage = await h.connect("Armitage")
        for missed, resumed in ((5, True), (8, False)):
            await trio.sleep(1.0)  # a fresh second for the 10-commands-per-second limit
            last = (await command(armitage, "whoami"))["sequence_number"]
            await drop(armitage)
            await speaker.next_event("room_occupants")
            for i in range(missed):
                await command(speaker, "say", f"line {i}")
            armitage = await h.connect("Armitage", query=f"&resume_from={last}", read_burst=False)
            frames = await armitage.burst()
            if resumed:
                assert event_types(frames) == ["chat_message"] * 5 + ["welcome"]
                assert frames[-1]["data"]["resumed"] is True
                assert frames[-1]["data"]["replayed"] == 5
                said = [f["data"]["original_content"] for f in frames[:-1]]
                assert said == [f"line {i}" for i in range(5)]
            else:  # the buffer no longer holds the first three: it cannot vouch for them
                assert event_types(frames) == [
                    "game_state",
                    "room_update",
                    "room_occupants",
                    "welcome",
                ]
                assert frames[-1]["data"]["resumed"] is False
            await speaker.next_event("player_entered_game")


# --- game tick (section 12) ----------------------------------------------------------------------


async def test_game_tick_every_second_to_every_player_and_never_replayed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, game_tick_s=1.0, grace_s=30.0) as h:
        first = Tap(await h.connect("Armitage"))
        twin = await h.connect("Armitage")
        other = Tap(await h.connect("Wilmarth"))
        ticks: list[Frame] = []
        times: list[float] = []
        for _ in range(3):
            tick = await first.next_event("game_tick")
            times.append(trio.current_time())
            ticks.append(tick)
            assert tick["data"]["active_players"] == 2
            assert await other.next_event("game_tick") == tick
            assert first.texts[-1] == other.texts[-1]
            assert (await twin.next_event("game_tick")) == tick
        numbers = [tick["data"]["tick_number"] for tick in ticks]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        assert all(abs(b - a - 1.0) < EXACT for a, b in itertools.pairwise(times))
        assert set(ticks[0]) == {"event_type", "timestamp", "sequence_number", "data"}

        last = twin.received[-1]["sequence_number"]
        await drop(twin)
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(2.5)  # ticks go to the live socket meanwhile
        await command(other.client, "say", "between ticks")
        await first.next_event("chat_message")
        missed_ticks = [f for f in first.frames() if f["sequence_number"] > last]
        assert "game_tick" in event_types(missed_ticks)

        back = await h.connect("Armitage", query=f"&resume_from={last}", read_burst=False)
        frames = await back.burst()
        assert event_types(frames) == ["chat_message", "welcome"]
        assert frames[-1]["data"]["replayed"] == 1
        tick = await back.next_event("game_tick")
        assert tick["data"]["tick_number"] > numbers[-1]


async def test_game_tick_carries_the_mythos_clock_of_the_wall_clock(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """v1.1 section 12: every tick carries the same fields as GET /v1/game/time."""
    async with running(tmp_path, game_tick_s=1.0) as h:
        client = await h.connect("Armitage")
        before = mythos_time(time.time())["mythos_datetime"]
        tick = (await client.next_event("game_tick"))["data"]
        after = mythos_time(time.time())["mythos_datetime"]
        assert set(tick) == {"tick_number", "active_players", *mythos_time(0)}
        assert isinstance(before, str) and isinstance(after, str)
        assert before <= tick["mythos_datetime"] <= after  # same width, so text order is time
        assert tick["mythos_clock"] == f"{tick['mythos_datetime'][11:16]} Mythos"
        assert isinstance(tick["active_holidays"], list)
        assert len(tick["upcoming_holidays"]) == 3


# --- sequence numbers (section 4) ----------------------------------------------------------------


async def test_sequence_numbers_rise_per_socket_and_broadcasts_are_byte_identical(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, game_tick_s=1.0, grace_s=30.0) as h:
        taps = [
            await connect_tap(h, "Armitage"),
            await connect_tap(h, "Armitage"),
            await connect_tap(h, "Wilmarth"),
            await connect_tap(h, "Dyer"),
        ]
        a1, a2, wilmarth, dyer = taps
        for tap in taps:
            await tap.until_welcome()
        await wilmarth.client.command("say", "one")
        await wilmarth.next_event("command_response")
        await a1.client.command("emote", "nods")
        await a1.next_event("command_response")
        await dyer.client.command("whisper", "Armitage", "psst")
        await dyer.next_event("command_response")
        await trio.sleep(1.5)
        await dyer.client.command("north")
        await dyer.next_event("room_occupants")
        await dyer.client.command("south")
        await dyer.next_event("room_occupants")
        await a2.client.command("pose", "broods")
        await a2.next_event("command_response")
        await trio.sleep(1.0)
        for tap in taps:
            await tap.until_pong()

        by_number: dict[int, set[str]] = defaultdict(set)
        for tap in taps:
            numbers = [f["sequence_number"] for f in tap.frames() if "sequence_number" in f]
            assert numbers == sorted(set(numbers)), "not strictly increasing on one socket"
            for text in tap.texts:
                frame = json.loads(text)
                if "sequence_number" in frame:
                    by_number[frame["sequence_number"]].add(text)
        assert all(len(texts) == 1 for texts in by_number.values())
        shared = [n for n in by_number if sum(n in _numbers(tap) for tap in taps) > 1]
        kinds = {json.loads(next(iter(by_number[n])))["event_type"] for n in shared}
        assert {"chat_message", "game_tick", "player_left", "room_occupants"} <= kinds


def _numbers(tap: Tap) -> set[int]:
    return {f["sequence_number"] for f in tap.frames() if "sequence_number" in f}
