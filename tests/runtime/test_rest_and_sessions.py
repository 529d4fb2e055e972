"""v1.1 in the running app (PROTOCOL.md sections 3, 5, 9, 15): retired sessions and ``rest``.

Memory streams and the autojump clock: the rest countdown's seconds take no real time, and the
arrival time of every notice is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.runtime.harness import Client, Harness, running

ORIGIN = (b"Origin", b"http://x")
SESSION_ENDED = (4409, "Session ended")
GOODBYE = (1000, "Goodbye")
STARTED = (
    "You settle into a seated position and begin to rest. You will disconnect in 10 seconds. "
    "Any movement, combat, or spellcasting will interrupt your rest."
)
INTERRUPTED = "Your rest is interrupted as you begin to move."


def session(name: str) -> str:
    return f"&session_id={name}"


async def refused_close(h: Harness, name: str, query: str) -> tuple[int, str | None]:
    """A browser-style connect (``Origin``): accepted, then closed with 4000 + status."""
    client = await h.connect(name, query=query, headers=[ORIGIN], read_burst=False)
    return await client.closed()


async def results(client: Client, count: int) -> list[tuple[float, str]]:
    """The next ``count`` command results, each with the trio time it arrived."""
    found = []
    for _ in range(count):
        frame = await client.next_event("command_response")
        found.append((trio.current_time(), frame["data"]["result"]))
    return found


# --- retired sessions (sections 3, 15) ------------------------------------------------------


async def test_a_quit_session_is_refused_4409_without_counting_toward_4429(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, connect_rate_player=2) as h:
        first = await h.connect("Armitage", query=session("s1"))  # attempt 1 of 2
        await first.command("quit")
        assert await first.closed() == GOODBYE
        for _ in range(5):  # the web client's reconnects: refused, never counted
            assert await refused_close(h, "Armitage", session("s1")) == SESSION_ENDED
        newer = await h.connect("Armitage", query=session("s2"))  # attempt 2 of 2: admitted
        assert newer.received[-1]["event_type"] == "welcome"
        assert await refused_close(h, "Armitage", session("s3")) == (
            4429,
            "Too many connection attempts",
        )


async def test_without_origin_a_retired_session_is_http_409(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        first = await h.connect("Armitage", query=session("s1"))
        await first.command("logout")
        assert await first.closed() == GOODBYE
        target = f"/v1/api/ws?token={h.token('Armitage')}{session('s1')}"
        status, headers, body = await h.raw_handshake(target)
        assert status == 409
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": {"type": "session_ended", "message": "Session ended"}}


async def test_the_superseded_tab_is_refused_while_the_newer_keeps_playing(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        older = await h.connect("Armitage", query=session("tab-1"))
        newer = await h.connect("Armitage", query=session("tab-2"))
        assert await older.closed() == (4000, "New game session established")
        for _ in range(3):  # no ping-pong: the old tab cannot take the game back
            assert await refused_close(h, "Armitage", session("tab-1")) == SESSION_ENDED
        await newer.command("whoami")
        reply = await newer.next_event("command_response")
        assert reply["data"]["result"].startswith("You are Armitage")


@pytest.mark.parametrize(
    ("query", "retired"),
    [(session("s1"), True), ("", False)],
    ids=["after the retirement", "a socket without a session at once"],
)
async def test_a_player_who_quit_may_come_back(
    tmp_path: Path, autojump_clock: trio.abc.Clock, query: str, retired: bool
) -> None:
    async with running(tmp_path, retired_session_s=60.0) as h:
        first = await h.connect("Armitage", query=query)
        await first.command("quit")
        await first.closed()
        if retired:
            assert await refused_close(h, "Armitage", query) == SESSION_ENDED
            await trio.sleep(60)
        back = await h.connect("Armitage", query=query)
        assert back.received[-1]["event_type"] == "welcome"


# --- rest (section 9) -------------------------------------------------------------------------


async def test_rest_counts_down_once_a_second_then_leaves_as_logout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        watcher = await h.connect("Wilmarth")
        resting = await h.connect("Armitage", query=session("s1"))
        await watcher.next_event("room_occupants")  # Armitage's arrival
        await resting.command("rest")
        (started_at, started), *notices = await results(resting, 10)
        assert started == STARTED
        assert [text for _, text in notices] == [
            *(f"You will disconnect in {n} seconds..." for n in range(9, 1, -1)),
            "You will disconnect in 1 second...",
        ]
        assert [round(at - started_at) for at, _ in notices] == list(range(1, 10))
        final = await resting.next()
        assert final["event_type"] == "intentional_disconnect"
        assert final["data"] == {"message": "You have rested and disconnected from the game."}
        assert round(trio.current_time() - started_at) == 10
        assert await resting.closed() == GOODBYE
        left = await watcher.next_event("player_left_game")  # as for quit: no grace
        assert left["data"]["player_name"] == "Armitage"
        assert await refused_close(h, "Armitage", session("s1")) == SESSION_ENDED


async def test_rest_with_a_shorter_setting(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path, rest_s=2) as h:
        resting = await h.connect("Armitage")
        await resting.command("rest")
        texts = [text for _, text in await results(resting, 2)]
        assert texts[0].startswith("You settle into a seated position and begin to rest. ")
        assert "You will disconnect in 2 seconds." in texts[0]
        assert texts[1] == "You will disconnect in 1 second..."
        assert (await resting.next())["event_type"] == "intentional_disconnect"


async def test_a_resting_player_sits_in_stats_position(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        first = await h.connect("Armitage")
        assert position_in(first.received) == "standing"
        await first.command("rest")
        await first.next_event("command_response")
        second = await h.connect("Armitage")  # another socket of the same session
        assert position_in(second.received) == "sitting"
        await first.command("north")
        await first.next_event("command_response")
        third = await h.connect("Armitage")
        assert position_in(third.received) == "standing"


async def test_a_new_login_while_resting_ends_the_rest(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        old = await h.connect("Armitage", query=session("one"))
        await old.command("rest")
        await old.next_event("command_response")
        new = await h.connect("Armitage", query=session("two"))
        assert await old.closed() == (4000, "New game session established")
        assert position_in(new.received) == "standing"
        await trio.sleep(30)  # long past the countdown's end
        frames = await new.until_pong()
        assert not [f for f in frames if f.get("event_type") == "intentional_disconnect"]


def position_in(burst: list[dict[str, Any]]) -> str:
    position: str = burst[0]["data"]["player"]["stats"]["position"]
    return position


async def test_moving_interrupts_the_rest_and_the_player_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        resting = await h.connect("Armitage")
        await resting.command("rest")
        await results(resting, 4)  # the start and three notices
        await resting.command("north")
        assert [text for _, text in await results(resting, 2)] == [INTERRUPTED, "You go north."]
        await trio.sleep(30)  # long past the countdown's end
        frames = await resting.until_pong()
        assert not [f for f in frames if f.get("event_type") == "command_response"]
        assert h.app.hub.presences.get(h.players["Armitage"].player_id) is not None


async def test_a_follower_moved_by_the_leader_is_interrupted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        leader = await h.connect("Wilmarth")
        follower = await h.connect("Armitage")
        await follower.command("follow", "Wilmarth")
        request = await leader.next_event("follow_request")
        request_id = request["data"]["request_id"]
        await leader.send(
            {"type": "follow_response", "data": {"request_id": request_id, "accept": True}}
        )
        await follower.next_event("follow_state")
        await follower.command("rest")
        await follower.next_event("command_response")
        await leader.command("north")
        texts = [text for _, text in await results(follower, 2)]
        assert texts == [INTERRUPTED, "You follow Wilmarth north."]
        await trio.sleep(30)
        frames = await follower.until_pong()
        assert not [f for f in frames if f.get("event_type") == "intentional_disconnect"]


async def test_rest_in_an_inn_disconnects_at_once(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        guest = await h.connect("Armitage", query=session("s1"))
        for direction in ("south", "west"):  # the quad, Independence Square, the boarding house
            await guest.command(direction)
            await guest.next_event("command_response")
        before = trio.current_time()
        await guest.command("rest")
        reply = await guest.next_event("command_response")
        assert reply["data"]["result"] == "You rest peacefully and disconnect from the game."
        assert (await guest.next())["event_type"] == "intentional_disconnect"
        assert await guest.closed() == GOODBYE
        assert trio.current_time() - before < 1
        assert await refused_close(h, "Armitage", session("s1")) == SESSION_ENDED


async def test_a_presence_ending_otherwise_cancels_the_rest(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=0.0) as h:
        resting = await h.connect("Armitage")
        await resting.command("rest")
        await resting.next_event("command_response")
        await resting.ws.aclose()  # a dropped socket with no grace ends the presence
        back = await h.connect("Armitage")  # a fresh presence: no countdown of the old one
        await trio.sleep(30)
        frames = await back.until_pong()
        assert [f["event_type"] for f in frames] == []
        assert position_in(back.received) == "standing"
