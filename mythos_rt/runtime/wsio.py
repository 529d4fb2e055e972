"""WebSocket output: frames encoded once, a byte-bounded outbox, and batched writes.

Server-to-client WebSocket frames are unmasked and we never negotiate compression, so the wire
bytes of a text message are the same for every recipient.  The hub therefore encodes each event
into wire bytes once (:func:`text_frame`) and every recipient's outbox holds the very same
``bytes`` object.  The sender drains its whole outbox into one ``send_all``: one TCP write for many
frames is the single largest throughput lever on Trio.

trio-websocket 0.12 has no public API for either, so :func:`write_frames` uses its stream and
stream lock (pinned in pyproject.toml).  Control frames (ping, pong, close) still go through
trio-websocket, which takes the same lock, so writes never interleave.
"""

from __future__ import annotations

import collections
import contextlib
import struct
from collections.abc import Iterator

import attrs
import trio
from trio_websocket import ConnectionClosed, Endpoint, WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Event, Ping, Pong

from mythos_rt.core.handshake import MAX_CLOSE_REASON_BYTES, truncate_utf8

_OPCODE_TEXT = 0x81  # FIN + text
MESSAGE_TOO_BIG = (1009, "Message too big")


class ReplayStream(trio.abc.HalfCloseableStream):
    """A stream whose first reads return bytes already read from ``inner``.

    The gate reads a request's head to tell HTTP API requests from WebSocket upgrades
    (:mod:`mythos_rt.runtime.http_api`); an upgrade then reaches trio-websocket through this
    wrapper with its head intact, as if nobody had looked.
    """

    def __init__(self, inner: trio.abc.Stream, prefix: bytes) -> None:
        self.inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._prefix:
            return bytes(await self.inner.receive_some(max_bytes))
        await trio.lowlevel.checkpoint()
        size = len(self._prefix) if max_bytes is None else max_bytes
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        if not isinstance(self.inner, trio.abc.HalfCloseableStream):
            raise trio.ClosedResourceError("the wrapped stream cannot half-close")
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


def peer_of(stream: trio.abc.Stream) -> Endpoint | str:
    """The remote endpoint of a TCP stream (through a ReplayStream); ``repr`` for others."""
    inner = stream.inner if isinstance(stream, ReplayStream) else stream
    if isinstance(inner, trio.SocketStream):
        try:
            address, port, *_ = inner.socket.getpeername()
        except OSError:  # the peer is already gone (ENOTCONN)
            return repr(inner)
        return Endpoint(address, port, False)
    return repr(inner)


def address_of(peer: Endpoint | str) -> str:
    """The IP address of a peer from :func:`peer_of` (or ``remote``), as text."""
    return peer if isinstance(peer, str) else str(peer.address)


def peer_address(stream: trio.abc.Stream) -> str:
    """The IP address of a TCP stream's peer, as text (``repr`` for other streams)."""
    return address_of(peer_of(stream))


class _ServerConnection(WebSocketConnection):
    """Three corrections to trio-websocket: two to what its reader task sends on its own, and
    the peer address seen through a :class:`ReplayStream`.

    - It closes an oversized message with its own reason text; PROTOCOL.md section 15 promises
      "Message too big", so the close frame is reworded on its way out.
    - It answers a ping, or closes a 1009, even after our close frame went out; wsproto then
      raises LocalProtocolError inside the reader task.  Once the socket is no longer open,
      those frames are not owed and are skipped.
    """

    @property
    def remote(self) -> Endpoint | str:
        return peer_of(self._stream)

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        # wsproto reports a frame it cannot parse (bad UTF-8 → 1007; reserved bits or opcodes,
        # bad continuation, an invalid close code → 1002) as a CloseConnection while the socket
        # is still OPEN, and trio-websocket then drops TCP without a close frame.  RFC 6455
        # §7.1.7 asks for the close frame first (browsers otherwise report 1006).
        if self._wsproto.state is ConnectionState.OPEN:
            reason = truncate_utf8(event.reason or "", MAX_CLOSE_REASON_BYTES)
            with contextlib.suppress(ConnectionClosed):
                await self._send(CloseConnection(event.code, reason))
        await super()._handle_close_connection_event(event)

    async def _send(self, event: Event) -> None:
        state = self._wsproto.state
        if isinstance(event, Ping | Pong) and state is not ConnectionState.OPEN:
            return
        if isinstance(event, CloseConnection) and state in _CLOSE_ALREADY_SENT:
            return
        if isinstance(event, CloseConnection) and event.code == MESSAGE_TOO_BIG[0]:
            event = CloseConnection(*MESSAGE_TOO_BIG)
        await super()._send(event)


_CLOSE_ALREADY_SENT = frozenset({ConnectionState.LOCAL_CLOSING, ConnectionState.CLOSED})


async def wrap_server_stream(
    nursery: trio.Nursery, stream: trio.abc.Stream, max_message_size: int
) -> WebSocketRequest:
    """trio_websocket.wrap_server_stream, with the reworded 1009 close."""
    connection = _ServerConnection(
        stream, WSConnection(ConnectionType.SERVER), max_message_size=max_message_size
    )
    nursery.start_soon(connection._reader_task)
    return await connection._get_request()


class _SpentHandshake:
    """What wsproto's WSConnection still asks of its handshake once the WebSocket connection
    exists: only its (no longer coming) events."""

    def events(self) -> Iterator[Event]:
        return iter(())


_SPENT_HANDSHAKE = _SpentHandshake()


def forget_handshake(ws: WebSocketConnection) -> None:
    """Let go of the HTTP side of an accepted socket's handshake.

    wsproto keeps its handshake (h11's connection with its parser state and receive buffer,
    an event queue, the upgrade request) for the socket's whole life, though once the WebSocket
    connection exists it only asks it for events, and trio-websocket a copy of the request's
    headers: about 5 KB per idle socket (issue 12).
    Server side only, after ``accept``.
    """
    if ws._wsproto.connection is not None:
        ws._wsproto.handshake = _SPENT_HANDSHAKE  # type: ignore[assignment]
        ws._handshake_headers = ()  # WebSocketConnection.handshake_headers: unused here


def text_frame(text: str) -> bytes:
    """The wire bytes of one unmasked, unfragmented text message."""
    payload = text.encode("utf-8")
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _OPCODE_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", _OPCODE_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", _OPCODE_TEXT, 127, size)
    return header + payload


async def write_frames(ws: WebSocketConnection, data: bytes) -> None:
    """Write pre-encoded frames in one go; raise ConnectionClosed when the socket is gone."""
    if ws.closed is not None:
        raise ConnectionClosed(ws.closed)
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise ConnectionClosed(ws.closed) from None


async def send_close_and_hang_up(ws: WebSocketConnection, code: int, reason: str) -> None:
    """Our close frame, then TCP closed, without waiting for the peer's reply (nobody is left
    to read it).  The frame still tells the client why, instead of a bare 1006."""
    with contextlib.suppress(ConnectionClosed):
        if ws._wsproto.state is ConnectionState.OPEN:
            await ws._send(CloseConnection(code, reason))
    await ws._close_stream()


@attrs.frozen
class CloseRequest:
    code: int
    reason: str


class Outbox:
    """Frames waiting for one socket, bounded in bytes.

    The hub only ever calls the non-blocking side (:meth:`put`, :meth:`close`); the connection's
    sender is the only reader.  Overflow policy: the socket is closed 1013 and what was still
    queued is dropped (the client may resume from its last sequence number).
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._queued_at = 0.0  # trio time the oldest frame still queued was put (fan-out lag)
        self._close: CloseRequest | None = None
        self._nudged = False
        self._wakeup = trio.Event()
        self._closing = trio.Event()

    @property
    def closing(self) -> CloseRequest | None:
        return self._close

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, frame: bytes, now: float | None = None) -> bool:
        """Queue a frame; False when the socket is closing or has just overflowed.

        ``now``: the trio time, when the caller has read it already (the hub reads it once per
        event, not once per recipient); it stamps the batch for the fan-out lag.
        """
        if self._close is not None:
            return False
        if self._bytes + len(frame) > self._max_bytes:
            self.close(1013, "Client too slow", discard=True)
            return False
        if not self._frames:
            self._queued_at = trio.current_time() if now is None else now
        self._frames.append(frame)
        self._bytes += len(frame)
        self._wakeup.set()
        return True

    def preload(self, frames: list[bytes]) -> None:
        """Queue a resume's replay without counting it against the bound.

        A replay after a 1013 is by definition larger than the outbox, so counting it would close
        the resumed socket at once; it is bounded by REPLAY_MAX_BYTES instead.
        """
        if frames and not self._frames:
            self._queued_at = trio.current_time()
        self._frames.extend(frames)
        if frames:
            self._wakeup.set()

    def close(self, code: int, reason: str, *, discard: bool = False) -> None:
        """Ask the sender to close after the queued frames (or instead of them)."""
        if self._close is not None:
            return
        self._close = CloseRequest(code, reason)
        self._closing.set()
        if discard:
            self._frames.clear()
            self._bytes = 0
        self._wakeup.set()

    def nudge(self) -> None:
        """Wake the sender with nothing queued: a telnet socket's sender also writes what the
        protocol itself owes the client (option replies), which never passes through the hub."""
        self._nudged = True
        self._wakeup.set()

    async def wait_closing(self) -> None:
        await self._closing.wait()

    async def next_batch(self) -> tuple[bytes, CloseRequest | None, float]:
        """Wait for work; return everything queued as one write, the close request if any, and
        the trio time its oldest frame was queued."""
        while not self._frames and self._close is None and not self._nudged:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        self._nudged = False
        # One more scheduling round before draining: frames the hub queues for this socket in
        # that round (the next say of a busy room) leave in the same write.
        await trio.lowlevel.checkpoint()
        data = b"".join(self._frames)
        self._frames.clear()
        self._bytes = 0
        return data, self._close, self._queued_at
