"""Connection lifecycle over memory streams with the autojump clock (PROTOCOL.md 3–8, 13)."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing
from trio_websocket import ConnectionClosed

from tests.runtime.harness import running, upgrade_request


async def test_connect_burst_arrives_in_order(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, ward_s=10.0) as h:
        client = await h.connect("Armitage", read_burst=False)
        burst = await client.burst()
        types = [frame["event_type"] for frame in burst]
        assert types == ["game_state", "room_update", "room_occupants", "welcome"]
        state = burst[0]
        assert state["data"]["player"]["name"] == "Armitage"
        assert state["data"]["player"]["is_admin"] is True
        assert state["player_id"] == h.players["Armitage"].player_id
        assert state["room_id"] == state["data"]["room"]["id"]
        assert state["data"]["login_grace_period_active"] is True
        assert burst[2]["data"]["players"] == ["Armitage (warded)"]
        assert burst[3]["data"] == {"message": "Connected to MythosMUD", "resumed": False}
        numbers = [frame["sequence_number"] for frame in burst]
        assert numbers == sorted(numbers) and len(set(numbers)) == 4


async def test_others_see_arrival_and_departure(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=0.0) as h:
        armitage = await h.connect("Armitage")
        wilmarth = await h.connect("Wilmarth")
        entered = await armitage.next_event("player_entered_game")
        assert entered["data"] == {
            "player_id": h.players["Wilmarth"].player_id,
            "player_name": "Wilmarth",
        }
        occupants = await armitage.next_event("room_occupants")
        assert occupants["data"]["count"] == 2
        await wilmarth.ws.aclose()
        left = await armitage.next_event("player_left_game")
        assert left["data"]["player_name"] == "Wilmarth"
        occupants = await armitage.next_event("room_occupants")
        assert occupants["data"]["count"] == 1


async def test_ping_gets_pong_on_that_socket(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        await client.send({"type": "ping"})
        pong = await client.next()
        assert pong["event_type"] == "pong" and pong["data"] == {}


async def test_101st_frame_in_a_minute_is_refused_and_socket_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        for _ in range(100):
            await client.send({"type": "ping"})
            assert (await client.next())["event_type"] == "pong"
        await client.send({"type": "ping"})
        refused = await client.next()
        assert refused["type"] == "error"
        assert refused["error_type"] == "rate_limit_exceeded"
        assert refused["message"].startswith(
            "Message rate limit exceeded. Limit: 100 messages per minute."
        )
        await trio.sleep(61)
        await client.send({"type": "ping"})
        assert (await client.next())["event_type"] == "pong"


async def test_rate_limit_abuse_closes_1008(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path, frame_rate_limit=2, abuse_close_after=5) as h:
        client = await h.connect("Armitage")
        for _ in range(2 + 5):
            await client.send({"type": "ping"})
        assert await client.closed() == (1008, "Policy violation")


async def test_bad_frames_get_error_frames_and_socket_stays(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        await client.ws.send_message("{not json")
        error = await client.next()
        assert error["error_type"] == "invalid_format"
        assert error["details"]["error_type"] == "json_parse_error"
        assert error["details"]["player_id"] == h.players["Armitage"].player_id
        await client.ws.send_message(b"\x00binary")
        assert (await client.next())["details"]["error_type"] == "invalid_type"
        await client.send({"type": "ping"}, csrf=False)
        assert (await client.next())["details"]["error_type"] == "csrf_token_missing"
        await client.send({"type": "teleport"})
        unknown = await client.next()
        assert unknown["error_type"] == "invalid_command"
        assert unknown["message"] == "Unknown message type: teleport"
        await client.send({"type": "ping"})
        assert (await client.next())["event_type"] == "pong"


async def test_wrapped_command_frame_as_the_web_client_sends_it(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        inner = {"type": "game_command", "data": {"command": "whoami", "args": []}}
        await client.send({"message": json.dumps(inner), "timestamp": 0})
        response = await client.next()
        assert response["event_type"] == "command_response"
        assert response["data"]["result"].startswith("You are Armitage (admin)")


async def test_missing_pong_drops_the_socket(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=100.0) as h:
        watcher = await h.connect("Wilmarth")
        # A raw client: it completes the handshake and then never answers a ping.
        stream = h.open_stream()
        await stream.send_all(upgrade_request(f"/v1/api/ws?token={h.token('Armitage')}"))
        start = trio.current_time()
        while await stream.receive_some(65536):
            pass  # read (and ignore) everything until the server hangs up
        dropped_after = trio.current_time() - start
        assert 40 <= dropped_after < 41  # ping interval 20 s + pong timeout 20 s
        linkdead = await watcher.next_event("room_occupants")
        while "Armitage (linkdead)" not in linkdead["data"]["players"]:
            linkdead = await watcher.next_event("room_occupants")


async def test_idle_socket_closes_4001(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        start = trio.current_time()
        assert await client.closed() == (4001, "Connection cleaned up")
        assert 300 <= trio.current_time() - start < 301


async def test_new_session_closes_old_socket_4000(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        old = await h.connect("Armitage", query="&session_id=first")
        new = await h.connect("Armitage", query="&session_id=second")
        assert await old.closed() == (4000, "New game session established")
        await new.send({"type": "ping"})
        assert (await new.next())["event_type"] == "pong"
        assert len(h.app.hub.presences) == 1
        assert h.app.hub.socket_count() == 1


async def test_two_sockets_of_one_session_share_events_and_survive_each_other(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        first = await h.connect("Armitage", query="&session_id=same")
        second = await h.connect("Armitage", query="&session_id=same")
        await first.command("whoami")
        for client in (first, second):
            assert (await client.next())["data"]["result"].startswith("You are Armitage")
        await first.ws.aclose()
        await trio.testing.wait_all_tasks_blocked()
        await second.send({"type": "ping"})
        assert (await second.next())["event_type"] == "pong"
        presence = h.app.hub.presences.get(h.players["Armitage"].player_id)
        assert presence is not None and not presence.linkdead


async def test_sixth_socket_is_refused_429(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        for _ in range(5):
            await h.connect("Armitage")
        status, headers, body = await h.raw_handshake(f"/v1/api/ws?token={h.token('Armitage')}")
        assert status == 429
        assert headers["content-type"] == "application/json"
        assert json.loads(body) == {
            "error": {"type": "too_many_connections", "message": "Too many connections"}
        }


async def test_quit_closes_1000_without_grace(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path, grace_s=30.0) as h:
        watcher = await h.connect("Wilmarth")
        quitter = await h.connect("Armitage")
        await quitter.command("quit")
        goodbye = await quitter.next()
        assert goodbye["data"]["result"] == "Goodbye! You have been disconnected from the game."
        assert await quitter.closed() == (1000, "Goodbye")
        left = await watcher.next_event("player_left_game")
        assert left["data"]["player_name"] == "Armitage"
        assert h.app.hub.presences.get(h.players["Armitage"].player_id) is None


async def test_logout_closes_every_socket(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    async with running(tmp_path) as h:
        first = await h.connect("Armitage")
        second = await h.connect("Armitage")
        await first.command("logout")
        for client in (first, second):
            response = await client.next()
            assert response["data"] == {
                "result": "Logged out successfully",
                "session_terminated": True,
            }
            assert await client.closed() == (1000, "Goodbye")


async def test_token_expiry_warns_then_closes_4401(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage", token=h.token("Armitage", ttl_s=120))
        warning = await client.next_event("token_expiring")
        assert "expires_at" in warning["data"]
        assert await client.closed() == (4401, "Token expired")


async def test_refresh_token_keeps_the_socket(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage", token=h.token("Armitage", ttl_s=120))
        await client.next_event("token_expiring")
        fresh = h.token("Armitage", ttl_s=3600)
        await client.send({"type": "refresh_token", "data": {"token": fresh}})
        assert (await client.next_event("token_refreshed"))["data"]["expires_at"].endswith("Z")
        await trio.sleep(200)  # past the first token's exp (120 s), within the idle limit
        client.token = fresh  # the refreshed token is now a valid CSRF token
        await client.send({"type": "ping"})
        assert (await client.next_event("pong"))["event_type"] == "pong"


async def test_refresh_with_another_users_token_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        await client.send({"type": "refresh_token", "data": {"token": h.token("Wilmarth")}})
        error = await client.next()
        assert error["type"] == "error"
        assert error["details"]["error_type"] == "token_refresh_failed"
        await client.send({"type": "ping"})
        assert (await client.next())["event_type"] == "pong"


async def test_a_crash_inside_one_connection_closes_only_it_1011(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        bystander = await h.connect("Wilmarth")
        victim = await h.connect("Armitage")
        original = h.app.hub.handle_command

        def explode(socket: object, command: str, args: tuple[str, ...]) -> None:
            if command == "explode":
                raise RuntimeError("boom")
            original(socket, command, args)  # type: ignore[arg-type]

        h.app.hub.handle_command = explode  # type: ignore[method-assign]
        await victim.command("explode")
        assert await victim.closed() == (1011, "Internal error")
        await bystander.send({"type": "ping"})
        assert (await bystander.next_event("pong"))["event_type"] == "pong"
        fresh = await h.connect("Armitage")
        await fresh.send({"type": "ping"})
        assert (await fresh.next_event("pong"))["event_type"] == "pong"


async def test_oversized_transport_frame_closes_1009(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        client = await h.connect("Armitage")
        await client.ws.send_message("x" * 70_000)
        try:
            while True:
                await client.next()
        except ConnectionClosed as exc:
            assert exc.reason is not None
            assert (exc.reason.code, exc.reason.reason) == (1009, "Message too big")


async def test_shutdown_closes_sockets_1001(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    from mythos_rt.runtime.server import drain

    async with running(tmp_path) as h:
        clients = [await h.connect(name) for name in ("Armitage", "Wilmarth")]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, h.app)
            for client in clients:
                assert await client.closed() == (1001, "Server shutting down")
        assert h.app.gate.tracker.active == 0
