"""The NATS bridge: the one module that imports asyncio, nats-py and trio_asyncio.

Imported only when a NATS URL is set (``runtime/bus.py``).  ``open_nats_bus`` owns an asyncio
loop (``trio_asyncio.open_loop``) inside the caller's task tree, and nats-py runs on it:

* **Publishing**: ``publish`` puts ``(subject, payload)`` on a bounded trio channel and returns.
  One task drains it and hands everything queued to nats-py in ONE trio→asyncio crossing per batch
  (a crossing costs about 150 µs; a publish inside one costs a few µs).  The instance id travels
  in the ``Mythos-Rt-Instance`` header, never in the payload.
* **Receiving**: nats-py calls ``_on_message`` (an asyncio coroutine) per message; it checks the
  message and does ``send_nowait`` into a bounded trio channel, ``inbound``.  Messages carrying
  our own instance header are dropped (``no_echo`` already asks the server not to send them).
* **Outages**: nats-py reconnects forever and resubscribes by itself; ``connected`` is False
  meanwhile.  Publishes made during an outage wait in nats-py's pending buffer (``pending_bytes``)
  and are sent on reconnect; beyond it they are dropped and counted.
* **Exit**: queued publishes are handed over and flushed to the broker (one round trip), all
  within ``drain_timeout_s``, then the client is closed (at most ``CLOSE_TIMEOUT_S`` more), in a
  shielded ``finally``.  With the broker gone there is nothing to flush through: it just closes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats.errors
import trio
import trio_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from mythos_rt.core.bus_messages import check_inbound
from mythos_rt.runtime.bus import BusConnectError, BusMessage
from mythos_rt.runtime.dead_letters import DeadLetters
from mythos_rt.runtime.metrics import Metrics

logger = logging.getLogger(__name__)

INSTANCE_HEADER = "Mythos-Rt-Instance"
MAX_BATCH = 1024  # publishes per crossing; bounds one crossing's time on the asyncio side
ERROR_LOG_EVERY_S = 10.0
CLOSE_TIMEOUT_S = 1.0  # closing needs no answer from the broker: this is a safety bound
PING_INTERVAL_S = 10  # a silent broker is noticed after two unanswered pings

Outgoing = tuple[str, bytes]
Check = Callable[[str, bytes], str | None]


class NatsConnectError(BusConnectError):
    pass


def servers(url: str) -> list[str]:
    """``NATS_URL`` may list several servers of one cluster, comma-separated."""
    return [server.strip() for server in url.split(",") if server.strip()]


def redact(url: str) -> str:
    """The URL(s) without user and password, for messages."""
    return ",".join(_redact_one(server) for server in servers(url))


def _redact_one(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class NatsBus:
    """The ``Bus`` over NATS.  Build it with :func:`open_nats_bus`."""

    def __init__(
        self,
        instance_id: str,
        metrics: Metrics,
        dead_letters: DeadLetters,
        check: Check,
        *,
        inbound_max: int,
        outbound_max: int,
    ) -> None:
        self.instance_id = instance_id
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._check = check
        self._headers = {INSTANCE_HEADER: instance_id}
        self._client: Client | None = None
        self._inbound_tx, self.inbound = trio.open_memory_channel[BusMessage](inbound_max)
        self._outbound_tx, self._outbound_rx = trio.open_memory_channel[Outgoing](outbound_max)
        self._next_error_log_at = -math.inf
        self.last_error: Exception | None = None  # the latest error nats-py reported
        self.closing = False
        # Until the first connection, errors are reported once, by NatsConnectError (the
        # operator's one line at start), not also as log lines.
        self.connected_once = False

    # --- the Bus surface ---

    def publish(self, subject: str, payload: bytes) -> None:
        try:
            self._outbound_tx.send_nowait((subject, payload))
        except (trio.WouldBlock, trio.ClosedResourceError):
            # Full: drop the newest and count it.  Blocking would stall the hub behind NATS,
            # and the queue is only full when the broker cannot keep up for a long while.
            self._metrics.inc("nats_outbound_dropped")

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    # --- receiving (runs on the asyncio side, called by nats-py) ---

    async def _on_message(self, msg: Msg) -> None:
        # An exception here would be swallowed by nats-py with the message: none may escape.
        try:
            self._receive(msg.subject, msg.data, msg.headers)
        except Exception:
            self._metrics.inc("nats_inbound_errors")
            logger.exception("NATS message on %s could not be handled", msg.subject)

    def _receive(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> None:
        origin = (headers.get(INSTANCE_HEADER) if headers else None) or None
        if origin == self.instance_id:
            self._metrics.inc("nats_inbound_own")
            return
        problem = self._check(subject, payload)
        if problem is not None:
            self._dead_letters.record(subject, problem, payload)
            return
        try:
            self._inbound_tx.send_nowait(BusMessage(subject, payload, origin))
        except trio.WouldBlock:
            # Full: drop the newest and count it.  Waiting is not possible here: nats-py would
            # queue behind us without bound until the server cut us off as a slow consumer,
            # losing everything; the older queued messages stay in order.
            self._metrics.inc("nats_inbound_dropped")
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return  # closing, or nobody reads any more
        self._metrics.inc("nats_received")

    # --- publishing ---

    async def run_publisher(self) -> None:
        """Hand queued publishes to nats-py, one crossing per batch, until the queue closes."""
        async with self._outbound_rx:
            async for first in self._outbound_rx:
                batch = [first, *self._queued(MAX_BATCH - 1)]
                self._metrics.inc("nats_publish_batches")
                await trio_asyncio.aio_as_trio(self._publish_batch)(batch)

    def _queued(self, most: int) -> Iterable[Outgoing]:
        for _ in range(most):
            try:
                yield self._outbound_rx.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return

    async def _publish_batch(self, batch: list[Outgoing]) -> None:
        assert self._client is not None
        sent = 0
        for subject, payload in batch:
            try:
                await self._client.publish(subject, payload, headers=self._headers)
                sent += 1
            except nats.errors.OutboundBufferLimitError:
                self._metrics.inc("nats_outbound_dropped")  # outage outlasted the buffer
            except Exception as exc:  # closed, bad subject, over max_payload: this one only
                self._metrics.inc("nats_outbound_dropped")
                self._log_error("NATS publish on %s failed: %r", subject, exc)
        self._metrics.inc("nats_published", sent)

    def _log_error(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now >= self._next_error_log_at:
            self._next_error_log_at = now + ERROR_LOG_EVERY_S
            logger.warning(message, *args)

    # --- nats-py callbacks (asyncio coroutines, as nats-py requires) ---

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = exc
        self._metrics.inc("nats_errors")
        if self.connected_once:
            self._log_error("NATS: %r", exc)

    async def _on_disconnected(self) -> None:
        if self.closing:
            return
        self._metrics.inc("nats_disconnects")
        logger.warning("NATS disconnected; reconnecting (publishes are buffered meanwhile)")

    async def _on_reconnected(self) -> None:
        self._metrics.inc("nats_reconnects")
        logger.info("NATS reconnected")


@asynccontextmanager
async def open_nats_bus(
    url: str,
    instance_id: str,
    subjects: Iterable[str],
    metrics: Metrics,
    *,
    dead_letters: DeadLetters | None = None,
    check: Check = check_inbound,
    inbound_max: int = 10_000,
    outbound_max: int = 10_000,
    pending_bytes: int = 8 << 20,
    connect_timeout_s: float = 5.0,
    reconnect_wait_s: float = 1.0,
    drain_timeout_s: float = 2.0,
) -> AsyncIterator[NatsBus]:
    """Connect, subscribe to ``subjects`` and yield the bus; flush and close on exit.

    Raises :class:`NatsConnectError` when no connection is made within ``connect_timeout_s``.
    """
    letters = dead_letters or DeadLetters(None, metrics)
    bus = NatsBus(
        instance_id, metrics, letters, check, inbound_max=inbound_max, outbound_max=outbound_max
    )
    metrics.gauge("nats_connected", lambda: float(bus.connected))
    failure: NatsConnectError | None = None
    try:
        async with trio_asyncio.open_loop():
            try:
                client = await _connect(
                    bus, url, connect_timeout_s, reconnect_wait_s, pending_bytes
                )
            except NatsConnectError as exc:
                failure = exc  # raised below, outside the loop's nurseries: one plain error
            else:
                bus.connected_once = True
                async with _serving(bus, client, subjects, connect_timeout_s, drain_timeout_s):
                    yield bus
    finally:
        bus._inbound_tx.close()
        letters.close()
    if failure is not None:
        raise failure


@asynccontextmanager
async def _serving(
    bus: NatsBus,
    client: Client,
    subjects: Iterable[str],
    connect_timeout_s: float,
    drain_timeout_s: float,
) -> AsyncIterator[None]:
    bus._client = client
    deadline: float | None = None  # one bound for the hand-over and the drain together
    try:
        for subject in subjects:
            await trio_asyncio.aio_as_trio(client.subscribe)(subject, cb=bus._on_message)
        # One round trip: the broker has the subscriptions before the bus is handed out.
        await trio_asyncio.aio_as_trio(_flush)(client, connect_timeout_s)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bus.run_publisher)
            try:
                yield
            finally:
                # The publisher hands over what is queued and ends; a broker too slow to take
                # it within the bound loses the rest (counted by nats-py as not sent).
                bus._outbound_tx.close()
                deadline = trio.current_time() + drain_timeout_s
                nursery.cancel_scope.deadline = deadline
    finally:
        bus.closing = True
        await _close(client, deadline or trio.current_time() + drain_timeout_s)


async def _connect(
    bus: NatsBus, url: str, connect_timeout_s: float, reconnect_wait_s: float, pending_bytes: int
) -> Client:
    client = Client()
    options: dict[str, Any] = {
        "servers": servers(url),
        "name": f"mythos_rt {bus.instance_id}",
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,  # forever: local play goes on while NATS is away
        "reconnect_time_wait": reconnect_wait_s,
        "connect_timeout": max(1, min(connect_timeout_s, 2.0)),
        "pending_size": pending_bytes,
        "ping_interval": PING_INTERVAL_S,
        "max_outstanding_pings": 2,
        "no_echo": True,
        "error_cb": bus._on_error,
        "disconnected_cb": bus._on_disconnected,
        "reconnected_cb": bus._on_reconnected,
    }
    connected = False
    try:
        with trio.move_on_after(connect_timeout_s):
            await trio_asyncio.aio_as_trio(client.connect)(**options)
            connected = True
    except Exception as exc:  # a malformed URL, refused credentials, ...
        bus.last_error = exc
    finally:
        if not connected:  # timed out, failed, or cancelled: stop its reconnection loop
            bus.closing = True
            await _close(client, trio.current_time() + connect_timeout_s)
    if connected:
        return client
    error = bus.last_error
    reason = (
        f"{type(error).__name__}: {error}"
        if error is not None
        else f"no answer within {connect_timeout_s:g} s"
    )
    raise NatsConnectError(f"cannot connect to NATS at {redact(url)}: {reason}")


async def _flush(client: Client, timeout_s: float) -> None:
    """One PING/PONG round trip: what we wrote before it has reached the broker.

    This is our drain: nats-py's ``drain()`` ends with a flush of its own that waits 10 s for a
    broker that does not answer, and cannot be cut short from outside.
    """
    if not client.is_connected or timeout_s <= 0:
        return  # with no broker there is nothing to flush through
    try:
        # Annotated int, but handed to asyncio.wait_for: fractions of a second work.
        await client.flush(timeout=timeout_s)  # type: ignore[arg-type]
    except (OSError, nats.errors.Error) as exc:  # TimeoutError is a nats.errors.Error
        logger.warning("NATS flush failed: %r", exc)


async def _close(client: Client, deadline: float) -> None:
    """Flush what we published (bounded by ``deadline``), then close; shielded."""
    with trio.CancelScope(shield=True):
        with trio.move_on_at(deadline):
            await trio_asyncio.aio_as_trio(_flush)(client, deadline - trio.current_time())
        with trio.move_on_after(CLOSE_TIMEOUT_S):
            await trio_asyncio.aio_as_trio(_close_quietly)(client)


async def _close_quietly(client: Client) -> None:
    pending: int = getattr(client, "_pending_data_size", 0)
    if pending and not client.is_connected:
        # nats-py 2.16: close() would first write the publishes buffered during the outage into
        # the dead socket and raise before cleaning up (the client then counts as closed, so a
        # second close() does nothing).  They cannot be delivered anyway: drop them first.
        client._pending = []
        client._pending_data_size = 0
    try:
        await client.close()
    except (OSError, nats.errors.Error) as exc:
        logger.warning("NATS close: %r", exc)
