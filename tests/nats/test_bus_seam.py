"""The bus seam: the in-process default, ``open_bus`` choosing by settings, the lazy import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from mythos_rt.runtime.bus import Bus, BusConnectError, LocalBus, open_bus
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.settings import Settings
from tests.nats.conftest import NatsServer, free_port
from tests.nats.helpers import content_of, receive, say, wait_until


async def test_the_local_bus_publishes_nothing_and_yields_nothing_until_closed() -> None:
    settings = Settings(instance_id="solo")
    async with open_bus(settings, Metrics()) as bus:
        assert isinstance(bus, LocalBus)
        assert (bus.instance_id, bus.connected) == ("solo", True)
        bus.publish("chat.global", b"{}")
        with pytest.raises(trio.WouldBlock):
            bus.inbound.receive_nowait()
    with pytest.raises(trio.EndOfChannel):
        await bus.inbound.receive()


async def test_a_pump_on_the_local_bus_ends_when_the_bus_closes() -> None:
    received: list[object] = []

    async def pump(bus: Bus) -> None:
        async for message in bus.inbound:
            received.append(message)

    async with trio.open_nursery() as nursery, open_bus(Settings(), Metrics()) as bus:
        nursery.start_soon(pump, bus)
        await trio.testing.wait_all_tasks_blocked()
    assert received == []


async def test_open_bus_with_a_nats_url_opens_the_bridge(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    settings = Settings(nats_url=nats_server.url, data_dir=tmp_path, instance_id="alpha")
    async with (
        open_bus(settings, Metrics()) as alpha,
        open_bus(attrs.evolve(settings, instance_id="beta"), Metrics()) as beta,
    ):
        assert alpha.connected and not isinstance(alpha, LocalBus)
        alpha.publish(*say("hello"))
        got = await receive(beta)
        assert (content_of(got), got.origin) == ("hello", "alpha")
        beta.publish("chat.global", b"{}")  # refused by alpha: a dead letter in the data dir
        await wait_until((tmp_path / "nats_dead_letters.jsonl").exists, "a dead letter")


async def test_open_bus_without_a_broker_raises_one_connect_error(tmp_path: Path) -> None:
    settings = Settings(
        nats_url=f"nats://127.0.0.1:{free_port()}", data_dir=tmp_path, nats_connect_timeout_s=1.0
    )
    with pytest.raises(BusConnectError, match=r"^cannot connect to NATS at nats://127\.0\.0\.1:"):
        async with open_bus(settings, Metrics()):
            pytest.fail("connected to nothing")


def test_the_in_process_bus_never_imports_asyncio_bridges() -> None:
    code = (
        "import sys, trio\n"
        "from mythos_rt.runtime import bus, server\n"
        "from mythos_rt.settings import Settings\n"
        "from mythos_rt.runtime.metrics import Metrics\n"
        "async def main():\n"
        "    async with bus.open_bus(Settings(), Metrics()):\n"
        "        pass\n"
        "trio.run(main)\n"
        "print(sorted(m for m in ('trio_asyncio', 'nats', 'mythos_rt.runtime.nats_bridge')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
