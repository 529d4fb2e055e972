"""The admin commands of issue 10 (kick, ban, unban, wall) and bans at the door, on a running
app (in-memory streams, real SQLite file, autojump clock), alone and across two instances."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import trio

from mythos_rt.core.effects import NOT_SAVED
from mythos_rt.core.passwords import hash_password, new_salt
from mythos_rt.core.writes import SetBan
from tests.runtime.cluster_harness import running_cluster
from tests.runtime.harness import Client, Harness, running
from tests.runtime.test_http_api import exchange
from tests.runtime.test_social_runtime import result, until
from tests.runtime.test_store_writer import OutageStore


async def chat(client: Client) -> tuple[str, str]:
    frame = await client.next_event("chat_message")
    return frame["data"]["channel"], frame["data"]["message"]


async def answers(client: Client, cases: list[tuple[tuple[str, ...], str]], command: str) -> None:
    """``command`` with each case's arguments gets that case's reply."""
    for args, text in cases:
        await client.command(command, *args)
        await result(client, text)


async def refused_status(h: Harness, name: str) -> tuple[int, dict[str, object]]:
    status, _, body = await h.raw_handshake(f"/v1/api/ws?token={h.token(name)}")
    return status, json.loads(body)


def login_request(name: str, password: str) -> bytes:
    body = json.dumps({"username": name, "password": password}).encode()
    head = (
        f"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def test_admin_commands_are_unknown_to_other_players(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        wilmarth = await h.connect("Wilmarth")
        for command in ("kick", "ban", "unban", "wall"):
            await wilmarth.command(command, "Armitage", "go away")
            text = f"Unknown command: {command}. Use 'help' for available commands."
            await result(wilmarth, text)


async def test_kick_sends_the_player_out_like_logout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        dyer = await h.connect("Dyer")
        wilmarth = await h.connect("Wilmarth", query="&session_id=tab1")
        await armitage.command("kick", "wilmarth", "shouting", "at", "elders")
        await result(armitage, "You have kicked Wilmarth.")
        notice = await wilmarth.next_event("intentional_disconnect")
        assert notice["data"]["message"] == (
            "You have been kicked from the game by Armitage. Reason: shouting at elders"
        )
        assert await wilmarth.closed() == (4008, "Kicked by an admin: shouting at elders")
        left = await dyer.next_event("player_left_game")
        assert "Wilmarth" in json.dumps(left["data"])
        assert h.app.hub.presences.find_by_name("Wilmarth") is None
        # The client's automatic reconnect is refused; a new login is welcome.
        status, _, _ = await h.raw_handshake(
            f"/v1/api/ws?token={h.token('Wilmarth')}&session_id=tab1"
        )
        assert status == 409
        await h.connect("Wilmarth", query="&session_id=tab2")


async def test_kick_refuses_unknown_offline_self_and_admins(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, names=("Armitage", "Wilmarth", "Dyer", "Carter")) as h:
        h.store.set_admin(h.players["Dyer"].player_id, True)
        armitage = await h.connect("Armitage")
        await h.connect("Dyer")
        await answers(
            armitage,
            [
                ((), "Usage: kick <player_name> [reason]"),
                (("Carter",), "Player 'Carter' is not online."),
                (("Armitage",), "You cannot kick yourself."),
                (("Dyer",), "Admins cannot be kicked."),
            ],
            "kick",
        )


async def test_ban_is_confirmed_after_the_commit_and_keeps_the_player_out(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        wilmarth = await h.connect("Wilmarth")
        await armitage.command("ban", "Wilmarth", "cheating")
        await result(armitage, "You have banned Wilmarth.")
        record = h.store.get_player(h.players["Wilmarth"].player_id)
        assert record is not None and record.banned_at(time.time())  # committed before the reply
        assert record.ban_reason == "cheating"
        notice = await wilmarth.next_event("intentional_disconnect")
        assert notice["data"]["message"] == "You have been banned by Armitage. Reason: cheating"
        assert await wilmarth.closed() == (4403, "Banned: cheating")
        status, body = await refused_status(h, "Wilmarth")
        assert (status, body) == (
            403,
            {"error": {"type": "player_banned", "message": "Player is banned"}},
        )
        await armitage.command("unban", "Wilmarth")
        await result(armitage, "You have unbanned Wilmarth.")
        await h.connect("Wilmarth")


async def test_an_offline_player_added_by_the_cli_can_be_banned_by_name(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        (carter,) = h.store.add_players(["Carter"], room_id=h.players["Dyer"].room_id)
        await armitage.command("ban", "carter")
        await result(armitage, "You have banned Carter.")
        record = h.store.get_player(carter.player_id)
        assert record is not None and record.banned and record.banned_until is None
        await answers(
            armitage,
            [
                (("Nobody",), "Player 'Nobody' not found."),
                (("Armitage",), "You cannot ban yourself."),
                ((), "Usage: ban <player_name> [reason]"),
            ],
            "ban",
        )


async def test_a_ban_with_an_end_lets_the_player_back_after_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        wilmarth = h.players["Wilmarth"]
        h.store.apply([SetBan(wilmarth.player_id, time.time() + 3600, "cool off")])
        status, body = await refused_status(h, "Wilmarth")
        assert status == 403
        assert "Player is banned until" in json.dumps(body)
        h.store.apply([SetBan(wilmarth.player_id, time.time() - 1, "over")])
        await h.connect("Wilmarth")


async def test_http_login_refuses_a_banned_player_only_with_the_right_password(
    tmp_path: Path,
) -> None:
    # The real clock: the password check runs in a worker thread, which the autojump clock
    # would count as blocked and leap past the request's time limit.
    async with running(tmp_path) as h:
        wilmarth = h.players["Wilmarth"]
        h.store.set_password(wilmarth.player_id, hash_password("elder sign", new_salt()))
        h.store.apply([SetBan(wilmarth.player_id, None, "spam")])
        status, _, body, _ = await exchange(h, login_request("Wilmarth", "elder sign"))
        assert (status, body) == (403, {"detail": "Player is banned"})
        status, _, body, _ = await exchange(h, login_request("Wilmarth", "wrong guess"))
        assert (status, body) == (401, {"detail": "Invalid credentials"})


async def test_wall_reaches_everyone_on_the_admin_channel(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        wilmarth = await h.connect("Wilmarth")
        await armitage.command("go", "north")
        await armitage.command("wall", "The", "library", "closes", "at", "dusk.")
        await result(armitage, "You wall: The library closes at dusk.")
        assert await chat(wilmarth) == ("admin", "[ADMIN] Armitage: The library closes at dusk.")
        await armitage.command("wall")
        await result(armitage, "Error sending message: Message cannot be empty")


async def test_kick_ban_and_wall_reach_a_player_on_another_instance(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running_cluster(tmp_path) as (_, nodes):
        armitage = await nodes["A"].connect("Armitage")
        wilmarth = await nodes["B"].connect("Wilmarth")
        lake = await nodes["B"].connect("Lake")
        await armitage.command("wall", "Mind the stacks.")
        assert await chat(wilmarth) == ("admin", "[ADMIN] Armitage: Mind the stacks.")
        await armitage.command("kick", "Wilmarth")
        await result(armitage, "You have kicked Wilmarth.")
        await wilmarth.next_event("intentional_disconnect")
        assert await wilmarth.closed() == (4008, "Kicked by an admin")
        await until(
            armitage,
            lambda f: (
                f.get("event_type") == "room_occupants" and "Wilmarth" not in f["data"]["occupants"]
            ),
        )
        await armitage.command("ban", "Lake", "griefing")
        await result(armitage, "You have banned Lake.")
        assert await lake.closed() == (4403, "Banned: griefing")
        status, _, _ = await nodes["B"].raw_handshake(
            f"/v1/api/ws?token={nodes['B'].token('Lake')}"
        )
        assert status == 403


async def test_a_ban_the_store_cannot_commit_is_not_pretended(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, store_ack_timeout_s=3.0) as h:
        armitage = await h.connect("Armitage")
        wilmarth = await h.connect("Wilmarth")
        outage = OutageStore(h.store)
        h.app.store_writer._store = outage
        await armitage.command("ban", "Wilmarth", "too", "loud")
        await result(armitage, NOT_SAVED)
        # Wilmarth is still in the game, and nothing was written.
        await wilmarth.command("say", "still here")
        await result(wilmarth, "You say: still here")
        record = h.store.get_player(h.players["Wilmarth"].player_id)
        assert record is not None and not record.banned
        assert all(f.get("event_type") != "intentional_disconnect" for f in wilmarth.received)


async def test_every_admin_action_is_one_info_line_that_text_cannot_forge(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mythos_rt.admin")
    async with running(tmp_path) as h:
        armitage = await h.connect("Armitage")
        await h.connect("Wilmarth")
        await armitage.command("wall", "doors close at dusk")
        await armitage.command("kick", "Wilmarth", "bad\nINFO forged line")
        await result(armitage, "You have kicked Wilmarth.")
        await armitage.command("ban", "Dyer")
        await result(armitage, "You have banned Dyer.")
        await armitage.command("unban", "Dyer")
        await result(armitage, "You have unbanned Dyer.")
    lines = [r.getMessage() for r in caplog.records if r.name == "mythos_rt.admin"]
    assert lines == [
        'admin_action actor=Armitage action=wall target=None detail="doors close at dusk"',
        'admin_action actor=Armitage action=kick target=Wilmarth detail="bad\\nINFO forged line"',
        'admin_action actor=Armitage action=ban target=Dyer detail=""',
        'admin_action actor=Armitage action=unban target=Dyer detail=""',
    ]
