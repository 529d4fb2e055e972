"""Several instances in one trio run, joined by an in-memory broker instead of NATS.

Each instance is a full app (hub, gate, store writer, cluster link) over in-memory streams; all
share one SQLite file, as instances on one machine do.  The broker delivers every publish to
every other instance at once, in order, like NATS without queue groups.  It can drop an instance
off the network (``isolate``) to stand for a SIGKILL or a broken link.  The real NATS bridge is
tested on a real nats-server in tests/nats/.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from mythos_rt.runtime.bus import BusMessage
from mythos_rt.runtime.server import open_app
from mythos_rt.world import load_world
from tests.runtime.harness import (
    HUNG_TEST_S,
    SECRET,
    Harness,
    InlineStore,
    make_settings,
    seeded_store,
)

INBOUND_MAX = 10_000


class MemoryBus:
    """One instance's end of the :class:`MemoryBroker` (implements ``runtime.bus.Bus``)."""

    def __init__(self, broker: MemoryBroker, instance_id: str) -> None:
        self.instance_id = instance_id
        self._broker = broker
        self._inbound_tx, self.inbound = trio.open_memory_channel[BusMessage](INBOUND_MAX)
        self.published: list[tuple[str, bytes]] = []

    def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))
        self._broker.route(BusMessage(subject, payload, self.instance_id))

    @property
    def connected(self) -> bool:
        return self.instance_id not in self._broker.isolated

    def receive(self, message: BusMessage) -> None:
        self._inbound_tx.send_nowait(message)


class MemoryBroker:
    def __init__(self) -> None:
        self.buses: dict[str, MemoryBus] = {}
        self.isolated: set[str] = set()

    def bus(self, instance_id: str) -> MemoryBus:
        self.buses[instance_id] = MemoryBus(self, instance_id)
        return self.buses[instance_id]

    def route(self, message: BusMessage) -> None:
        if message.origin in self.isolated:
            return
        for instance_id, bus in self.buses.items():
            if instance_id != message.origin and instance_id not in self.isolated:
                bus.receive(message)

    def publish_outside(self, subject: str, payload: bytes) -> None:
        """What a plain NATS client (an NPC service) publishes: no instance header."""
        self.route(BusMessage(subject, payload, None))

    def isolate(self, instance_id: str) -> None:
        """The instance falls silent and deaf, as if killed: nobody hears it any more."""
        self.isolated.add(instance_id)


@asynccontextmanager
async def running_cluster(
    data_dir: Path,
    instances: Sequence[str] = ("A", "B"),
    names: Sequence[str] = ("Armitage", "Wilmarth", "Dyer", "Lake"),
    **overrides: Any,
) -> AsyncIterator[tuple[MemoryBroker, dict[str, Harness]]]:
    """One app per instance id, sharing a store and a broker."""
    overrides = {"cluster_heartbeat_s": 2.0, "cluster_dead_after_s": 10.0, **overrides}
    settings = make_settings(data_dir, **overrides)
    world = load_world(settings.world)
    store, players = seeded_store(settings, world, names)
    broker = MemoryBroker()
    try:
        with trio.fail_after(HUNG_TEST_S):
            async with AsyncExitStack() as stack:
                apps = {
                    instance_id: await stack.enter_async_context(
                        open_app(
                            settings, world, InlineStore(store), SECRET, bus=broker.bus(instance_id)
                        )
                    )
                    for instance_id in instances
                }
                async with trio.open_nursery() as nursery:
                    harnesses = {
                        name: Harness(app, store, nursery, players) for name, app in apps.items()
                    }
                    yield broker, harnesses
                    nursery.cancel_scope.cancel()
    finally:
        store.close()
