"""Shared by the NATS tests: bridges on a test broker, a plain nats-py client, bounded waits."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import trio
import trio_asyncio

from mythos_rt.core import bus_messages as bm
from mythos_rt.runtime.bus import Bus, BusMessage
from mythos_rt.runtime.dead_letters import DeadLetters
from mythos_rt.runtime.metrics import Metrics
from mythos_rt.runtime.nats_bridge import NatsBus, open_nats_bus

WAIT_S = 15.0  # generous: only a broken bridge ever waits this long
_clock = itertools.count(1)


@asynccontextmanager
async def bridge(
    url: str, instance_id: str, tmp_path: Path, **options: Any
) -> AsyncIterator[tuple[NatsBus, Metrics]]:
    metrics = Metrics()
    letters = DeadLetters(tmp_path / f"dead-{instance_id}.jsonl", metrics)
    options.setdefault("reconnect_wait_s", 0.2)
    async with open_nats_bus(
        url, instance_id, bm.SUBSCRIPTIONS, metrics, dead_letters=letters, **options
    ) as bus:
        yield bus, metrics


class PlainClient:
    """A nats-py client on its own trio-asyncio loop: an outside publisher (an NPC service)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await trio_asyncio.aio_as_trio(self._client.publish)(subject, payload, headers=headers)

    async def flush(self) -> None:
        await trio_asyncio.aio_as_trio(self._client.flush)()

    async def subscribe(self, subject: str) -> trio.MemoryReceiveChannel[Any]:
        tx, rx = trio.open_memory_channel[Any](10_000)

        async def on_message(msg: Any) -> None:
            tx.send_nowait(msg)

        await trio_asyncio.aio_as_trio(self._client.subscribe)(subject, cb=on_message)
        await self.flush()
        return rx


@asynccontextmanager
async def plain_client(url: str) -> AsyncIterator[PlainClient]:
    async with trio_asyncio.open_loop():
        client = await trio_asyncio.aio_as_trio(nats.connect)(url, allow_reconnect=False)
        try:
            yield PlainClient(client)
        finally:
            with trio.CancelScope(shield=True):
                await trio_asyncio.aio_as_trio(client.close)()


def say(content: str, *, room_id: str = "r1", sender_name: str = "Armitage") -> tuple[str, bytes]:
    return bm.outgoing_chat(
        "say",
        content,
        message_id=str(uuid.uuid4()),
        wall_now=1_796_000_000.0 + next(_clock),
        sender_id="p1",
        sender_name=sender_name,
        scope_id=room_id,
    )


def content_of(message: BusMessage) -> str:
    return bm.decode_chat(message.subject, message.payload).payload.content


async def receive(bus: Bus) -> BusMessage:
    with trio.fail_after(WAIT_S):
        return await bus.inbound.receive()


async def wait_until(predicate: Callable[[], bool], what: str) -> None:
    """Poll state that a broker or nats-py changes (nothing to wait on), bounded."""
    with trio.move_on_after(WAIT_S):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)
    raise AssertionError(f"not within {WAIT_S} s: {what}")


def nothing_queued(bus: Bus) -> bool:
    return bus.inbound.statistics().current_buffer_used == 0
