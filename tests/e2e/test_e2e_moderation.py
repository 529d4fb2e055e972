"""The CLI's moderation commands against a running server (real process, real sockets): a ban
or a deletion refuses the next handshake at once, an unban lets the player back, and an in-game
ban by an admin closes the player's socket 4403 and is in the store for the CLI to lift."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import (
    ServerProcess,
    cli,
    close_of,
    next_event,
    read_burst,
    send_command,
    ws_connect,
)


async def refused_status(url: str) -> tuple[int, dict[str, object]]:
    with pytest.raises(InvalidStatus) as caught:
        async with ws_connect(url):
            pass
    response = caught.value.response
    return response.status_code, json.loads(response.body)


async def admitted(url: str) -> str:
    async with ws_connect(url) as ws:
        burst = await read_burst(ws)
        name: str = burst[0]["data"]["player"]["name"]
        return name


def test_cli_ban_unban_and_delete_apply_to_the_next_handshake(
    server: ServerProcess, tmp_path: Path
) -> None:
    url = server.url(token=server.token("Upton"))
    assert asyncio.run(admitted(url)) == "Upton"
    cli("players", "ban", "Upton", "--reason", "spam", *server.store_flags, cwd=tmp_path)
    status, body = asyncio.run(refused_status(url))
    assert (status, body) == (
        403,
        {"error": {"type": "player_banned", "message": "Player is banned"}},
    )
    cli("players", "unban", "Upton", *server.store_flags, cwd=tmp_path)
    assert asyncio.run(admitted(url)) == "Upton"
    cli("players", "delete", "Upton", *server.store_flags, cwd=tmp_path)
    status, _ = asyncio.run(refused_status(url))
    assert status == 401  # the user has no player left


def test_an_in_game_ban_closes_the_socket_and_the_cli_lifts_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    dyer_url = server.url(token=server.token("Dyer"))
    cli("players", "admin", "Carter", *server.store_flags, cwd=tmp_path)

    async def scenario() -> tuple[int, str]:
        carter_token = server.token("Carter")
        async with (
            ws_connect(server.url(token=carter_token)) as carter,
            ws_connect(dyer_url) as dyer,
        ):
            await read_burst(carter)
            await read_burst(dyer)
            await send_command(carter, carter_token, "ban", "Dyer", "flooding")
            reply = await next_event(carter, "command_response")
            assert reply["data"]["result"] == "You have banned Dyer."
            return await close_of(dyer)

    assert asyncio.run(scenario()) == (4403, "Banned: flooding")
    status, _ = asyncio.run(refused_status(dyer_url))
    assert status == 403
    cli("players", "unban", "Dyer", *server.store_flags, cwd=tmp_path)
    assert asyncio.run(admitted(dyer_url)) == "Dyer"
