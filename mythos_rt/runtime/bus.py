"""The bus seam: what one instance publishes for the others, and what arrives from them.

``LocalBus`` is the in-process default (one instance: nothing to publish to, nothing arrives).
With a NATS URL, ``open_bus`` opens the NATS bridge (``runtime/nats_bridge.py``), imported only
then: importing trio_asyncio slows plain asyncio in the same process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import attrs
import trio

from mythos_rt.runtime.metrics import Metrics
from mythos_rt.settings import Settings

DEAD_LETTER_FILE = "nats_dead_letters.jsonl"


@attrs.frozen
class BusMessage:
    """A message from another instance or an outside publisher."""

    subject: str
    payload: bytes  # UTF-8 JSON, already checked by the bus
    origin: str | None  # the publishing instance's id (a NATS header); None for outsiders


class Bus(Protocol):
    instance_id: str
    inbound: trio.MemoryReceiveChannel[BusMessage]

    def publish(self, subject: str, payload: bytes) -> None:
        """Queue one message for the other instances; never blocks."""
        ...

    @property
    def connected(self) -> bool: ...


class LocalBus:
    """One instance alone: ``publish`` does nothing and ``inbound`` yields nothing until closed."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        # Kept open (and never sent on) so receivers wait until close() ends their iteration.
        self._inbound_tx, self.inbound = trio.open_memory_channel[BusMessage](0)

    def publish(self, subject: str, payload: bytes) -> None:
        pass

    @property
    def connected(self) -> bool:
        return True

    def close(self) -> None:
        self._inbound_tx.close()


@asynccontextmanager
async def open_bus(settings: Settings, metrics: Metrics) -> AsyncIterator[Bus]:
    """The bus ``settings`` asks for; raises ``BusConnectError`` if NATS is unreachable."""
    if not settings.nats_url:
        local = LocalBus(settings.instance_id)
        try:
            yield local
        finally:
            local.close()
        return
    from mythos_rt.core.bus_messages import SUBSCRIPTIONS
    from mythos_rt.runtime import nats_bridge
    from mythos_rt.runtime.dead_letters import DeadLetters

    dead_letters = DeadLetters(
        settings.data_dir / DEAD_LETTER_FILE,
        metrics,
        max_bytes=settings.nats_dead_letter_max_bytes,
    )
    async with nats_bridge.open_nats_bus(
        settings.nats_url,
        settings.instance_id,
        SUBSCRIPTIONS,
        metrics,
        dead_letters=dead_letters,
        inbound_max=settings.nats_inbound_max,
        outbound_max=settings.nats_outbound_max,
        pending_bytes=settings.nats_pending_bytes,
        connect_timeout_s=settings.nats_connect_timeout_s,
        reconnect_wait_s=settings.nats_reconnect_wait_s,
        drain_timeout_s=settings.nats_drain_timeout_s,
    ) as bus:
        yield bus


class BusConnectError(Exception):
    """The bus could not be opened; the message is one line for the operator."""
