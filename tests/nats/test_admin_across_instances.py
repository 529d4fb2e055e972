"""Admin commands across two ``python -m mythos_rt`` processes on a real nats-server and one
PostgreSQL database: ``wall`` reaches players on the other instance, ``kick`` closes their
socket there (4008), and a ``ban`` committed on one instance refuses the player on the other."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import Launcher, cli, close_of, ws_connect
from tests.nats.conftest import NatsServer
from tests.nats.test_instances import Player, instances, settled


def test_wall_kick_and_ban_reach_the_other_instance(
    launcher: Launcher, nats_server: NatsServer, postgres_url: str, tmp_path: Path
) -> None:
    a, b = instances(launcher, nats_server, postgres_url, 2)
    cli("players", "admin", "Carter", *a.store_flags, cwd=tmp_path)

    async def scenario() -> None:
        async with (
            Player(a, "Carter") as carter,
            Player(b, "Upton") as upton,
            Player(b, "Dyer") as dyer,
        ):
            await settled(carter, dyer)
            await carter.command("wall", "The stacks close at dusk.")
            assert await upton.chat() == "[ADMIN] Carter: The stacks close at dusk."
            await carter.command("kick", "Upton", "noise")
            await carter.reply("You have kicked Upton.")
            assert upton.ws is not None
            assert await close_of(upton.ws) == (4008, "Kicked by an admin: noise")
            await carter.command("ban", "Dyer")
            await carter.reply("You have banned Dyer.")
            assert dyer.ws is not None
            assert await close_of(dyer.ws) == (4403, "Banned")
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(b.url(token=b.token("Dyer"))):
                pass
        assert refused.value.response.status_code == 403

    asyncio.run(scenario())
