"""A fresh start (PROTOCOL.md section 17): bare ``python -m mythos_rt`` on an empty data dir."""

from __future__ import annotations

import asyncio
import json

from tests.e2e.conftest import Frame, StartServer, cli, read_burst, ws_connect


def test_fresh_start_creates_demo_players_secret_and_working_tokens(
    start_server: StartServer,
) -> None:
    server = start_server(players=(), command=(), secret=None)
    assert not server.players
    server.wait_for_line("connect:")  # the banner's last line
    banner = "\n".join(server.lines)
    assert f"ws://127.0.0.1:{server.ws_port}/v1/api/ws" in banner
    assert f"http://127.0.0.1:{server.ops_port}/" in banner
    assert "python -m mythos_rt token Armitage" in banner
    assert "created demo player Armitage (admin)" in banner
    assert "created demo player Wilmarth" in banner
    assert "created a JWT secret" in banner
    assert (server.data_dir / "jwt_secret").exists()

    data_dir = str(server.data_dir)
    listed = [
        json.loads(line)
        for line in cli(
            "players", "list", "--data-dir", data_dir, cwd=server.data_dir.parent, secret=None
        )
    ]
    assert sorted(p["name"] for p in listed) == ["Armitage", "Wilmarth"]
    (token,) = cli(
        "token", "Armitage", "--data-dir", data_dir, cwd=server.data_dir.parent, secret=None
    )

    async def scenario() -> list[Frame]:
        async with ws_connect(server.url(), subprotocols=["bearer", token]) as ws:
            return await read_burst(ws)

    burst = asyncio.run(scenario())
    player = burst[0]["data"]["player"]
    armitage = next(p for p in listed if p["name"] == "Armitage")
    assert player["id"] == armitage["player_id"]
    assert (player["name"], player["is_admin"]) == ("Armitage", True)
    assert server.stop() == 0
