"""WebSocket output: frames encoded once, a byte-bounded outbox, and batched writes.

Server-to-client WebSocket frames are unmasked and we never negotiate compression, so the wire
bytes of a text message are the same for every recipient.  The hub therefore encodes each event
into wire bytes once (:func:`text_frame`) and every recipient's outbox holds the very same
``bytes`` object.  An outbox is written whole in one go: by the broadcaster straight into the TCP
socket without a task switch (:class:`SocketWriter`, runtime/broadcast.py), or, when the kernel
buffer is full, by the socket's sender with one ``send_all``.

trio-websocket 0.12 has no public API for any of this, so :func:`write_frames` and
:class:`SocketWriter` use its stream, its stream lock and wsproto's state (pinned in
pyproject.toml).  Control frames (ping, pong, close) still go through trio-websocket, which takes
the same lock and, in :class:`_ServerConnection`, first waits for any frame written only in part,
so writes never interleave.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, cast

import attrs
import trio
from trio_websocket import ConnectionClosed, Endpoint, WebSocketConnection, WebSocketRequest
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
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

    def receive_some(self, max_bytes: int | None = None) -> Coroutine[Any, Any, bytes | bytearray]:
        # Not a coroutine of its own once the head is replayed: every idle socket's reader task
        # waits inside this call for the socket's whole life, and a frame of ours there would
        # cost memory on each of them.
        if not self._prefix:
            return self.inner.receive_some(max_bytes)
        return self._replay_head(max_bytes)

    async def _replay_head(self, max_bytes: int | None) -> bytes:
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


class _MessageSink:
    """Stands in for trio-websocket's message channel, both ends: a finished message goes to the
    connection's handler at once, inside trio-websocket's reader task, instead of through a
    channel to a receive loop task of the connection's own (issue 12: a task and a channel less
    per socket; the reader already reads one message at a time, so nothing else changes).

    Until a handler is attached (accepted, not yet admitted) the reader waits here, as it
    waited on the channel; once ended (either side closed, the reader stopped) messages are
    dropped, as the closed channel dropped them, and the handler's ``on_end`` has been told.
    """

    __slots__ = ("_attached", "_ended", "_handler", "_on_end")

    def __init__(self) -> None:
        self._handler: Callable[[str | bytes], None] | None = None
        self._on_end: Callable[[], None] | None = None
        self._attached: trio.Event | None = None  # made only if a message comes before
        self._ended = False

    def attach(self, handler: Callable[[str | bytes], None], on_end: Callable[[], None]) -> None:
        if self._ended:
            on_end()
            return
        self._handler, self._on_end = handler, on_end
        if self._attached is not None:
            self._attached.set()
            self._attached = None

    def end(self) -> None:
        self._ended = True
        self._handler = None
        if self._attached is not None:
            self._attached.set()
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end()

    async def send(self, message: str | bytes) -> None:  # the reader: a finished message
        if self._handler is None and not self._ended:
            if self._attached is None:
                self._attached = trio.Event()
            await self._attached.wait()
        if self._handler is not None:
            self._handler(message)

    async def aclose(self) -> None:  # either end closed, as trio-websocket closes its channel
        self.end()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> _MessageSink:  # the reader holds the sending end open
        return self

    async def __aexit__(self, *exc_info: object) -> None:  # ... until it stops, for any reason
        self.end()


class _ServerConnection(WebSocketConnection):
    """Four corrections to trio-websocket: two to what its reader task sends on its own, the
    peer address seen through a :class:`ReplayStream`, and messages handed to the connection
    by the reader itself (:class:`_MessageSink`).

    - It closes an oversized message with its own reason text; PROTOCOL.md section 15 promises
      "Message too big", so the close frame is reworded on its way out.
    - It answers a ping, or closes a 1009, even after our close frame went out; wsproto then
      raises LocalProtocolError inside the reader task.  Once the socket is no longer open,
      those frames are not owed and are skipped.
    """

    _outbox: Outbox | None = None  # the socket's outbox, once admitted (see _send)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sink = _MessageSink()
        self._send_channel = self._recv_channel = sink  # type: ignore[assignment]

    def attach(
        self, outbox: Outbox, on_message: Callable[[str | bytes], None], on_end: Callable[[], None]
    ) -> None:
        """The admitted connection takes over: each message the peer sends is handed to
        ``on_message`` by the reader task; ``on_end`` is called once no more will come (either
        side closed, or the reader stopped).  Frames of ``outbox`` may be written straight to
        this socket (:class:`SocketWriter`); control frames then wait for any frame written
        only in part."""
        self._outbox = outbox
        outbox.attach(socket_writer(self))
        self._sink.attach(on_message, on_end)

    def stop_delivering(self) -> None:
        """The connection is over: messages still arriving (during the close handshake) are
        dropped; ``on_end`` is called now if it was not yet, and never again."""
        self._sink.end()

    @property
    def _sink(self) -> _MessageSink:
        return cast(_MessageSink, self._send_channel)

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
        if self._outbox is not None:
            await self._outbox.wait_whole()  # never inside a frame the flusher half wrote
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
# trio-websocket sets these once and never waits on them again after the handshake; one shared,
# already set event stands in for them on every socket.
_ALREADY_SET = trio.Event()
_ALREADY_SET.set()


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
        ws._open_handshake = _ALREADY_SET  # set at accept; waited on only before it
        ws._for_testing_peer_closed_connection = _ALREADY_SET  # trio-websocket's own tests'


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


class DirectWriter(Protocol):
    """Writes into a socket without waiting (:class:`SocketWriter`)."""

    def write_nowait(self, data: bytes) -> int | None: ...


class Flusher(Protocol):
    """Flushes the outboxes it was asked to, each round (runtime/broadcast.py)."""

    def schedule(self, outbox: Outbox) -> None: ...


class SocketWriter:
    """Writes straight into a WebSocket's TCP socket, without a task switch, when nobody else is
    writing to it: the kernel's send buffer takes a frame at once unless the peer is behind.

    Returns the bytes written (0: the buffer is full), or None when this socket cannot be
    written to directly right now (a control frame is being written, the close handshake has
    begun, the socket is gone): the connection's sender then takes over.
    """

    __slots__ = ("_frames", "_lock", "_sock")

    def __init__(self, frames: Connection, lock: trio.StrictFIFOLock, sock: socket.socket) -> None:
        self._frames = frames  # wsproto's state after the handshake: OPEN until a close
        self._lock = lock
        self._sock = sock

    def write_nowait(self, data: bytes) -> int | None:
        if self._frames.state is not ConnectionState.OPEN or self._lock.locked():
            return None
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0
        except OSError:  # reset, or closed under us (a closed socket never writes elsewhere)
            return None


def socket_writer(ws: WebSocketConnection) -> SocketWriter | None:
    """A direct writer for a WebSocket over plain TCP; None for other streams (tests' memory
    streams), which keep to the sender."""
    stream = ws._stream
    if isinstance(stream, ReplayStream):
        stream = stream.inner
    if not isinstance(stream, trio.SocketStream):
        return None
    # trio's socket wraps a stdlib socket (non-blocking): its send is the one non-waiting write.
    sock = getattr(stream.socket, "_sock", None)
    frames = ws._wsproto.connection
    if frames is None or not isinstance(sock, socket.socket):
        return None
    return SocketWriter(frames, ws._stream_lock, sock)


class Outbox:
    """Frames waiting for one socket, bounded in bytes.

    The hub only ever calls the non-blocking side (:meth:`put`, :meth:`close`).  Two parties write
    what is queued, never both at once:

    - the broadcaster (:meth:`flush`: each scheduling round, and after each frame a reader
      hands over), straight into the socket through a :class:`DirectWriter`, when the
      connection attached one and no sender has the turn;
    - the connection's sender, when the socket has no direct writer, when the kernel buffer was
      full (the sender waits for it), and for closes: a WebSocket's is started on demand
      (:meth:`start_sender_on_demand`, :meth:`take_batch`), telnet's waits (:meth:`next_batch`).

    A direct write the kernel takes only in part leaves the rest of a frame at the head of the
    queue (:attr:`mid_frame`); until the sender has taken it, nothing else may be written (control
    frames wait in :meth:`wait_whole`), and a close frame is never sent after it.

    Overflow policy: the socket is closed 1013 and what was still queued is dropped (the client
    may resume from its last sequence number).
    """

    def __init__(self, max_bytes: int, flusher: Flusher | None = None) -> None:
        self._max_bytes = max_bytes
        # A list, not a deque: it is only ever appended to and emptied whole, and an empty
        # deque holds a 64-slot block (about 0.7 KiB) on every idle socket.
        self._frames: list[bytes] = []
        self._bytes = 0
        self._queued_at = 0.0  # trio time the oldest frame still queued was put (fan-out lag)
        self._close: CloseRequest | None = None
        self._nudged = False
        # Made only while someone waits (a waiting sender, wait_closing): an idle socket of the
        # WebSocket door holds neither (issue 12: memory per idle socket).
        self._wakeup: trio.Event | None = None
        self._closing: trio.Event | None = None
        # A sender started on demand (start_sender_on_demand) instead of one that waits.
        self._start_sender: Callable[[], None] | None = None
        self._sender_running = False
        self._on_closing: Callable[[], None] | None = None
        self._flusher = flusher
        self._writer: DirectWriter | None = None
        self._scheduled = False  # waiting in the flusher's list for this round
        self._sender_turn = False  # the sender writes (or was woken to): the flusher keeps off
        self._mid_frame = False  # the head of the queue is the rest of a partly written frame
        self.written_at = -math.inf  # trio time of the flusher's last write (the flusher's)
        self._whole: trio.Event | None = None  # set when that rest has gone to the sender

    @property
    def closing(self) -> CloseRequest | None:
        return self._close

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def queued_at(self) -> float:
        """The trio time the oldest frame still queued was put."""
        return self._queued_at

    @property
    def mid_frame(self) -> bool:
        return self._mid_frame

    def attach(self, writer: DirectWriter | None) -> None:
        """Let the flusher write straight to the socket (the connection calls this once)."""
        if self._flusher is not None:
            self._writer = writer

    def start_sender_on_demand(
        self, start: Callable[[], None], on_closing: Callable[[], None]
    ) -> None:
        """No task waits on this outbox for work: ``start`` starts a sender when there is
        something only a sender can do (a full kernel buffer, no direct writer, a close), and
        that sender ends once :meth:`take_batch` says nothing is left.  ``on_closing`` hears of
        a close request.  What was queued before this call is written now."""
        self._start_sender = start
        self._on_closing = on_closing
        if self._close is not None:
            self._hand_to_sender()
        elif self._frames:
            self._ready()

    def stop_sender_on_demand(self) -> None:
        """The connection is over: start no more senders, tell it nothing more."""
        self._start_sender = None
        self._on_closing = None

    def put(self, frame: bytes, now: float | None = None) -> bool:
        """Queue a frame; False when the socket is closing or has just overflowed.

        ``now``: the trio time, when the caller has read it already (the hub reads it once per
        event, not once per recipient); it stamps the batch for the fan-out lag.
        """
        if self._close is not None:
            return False
        size = self._bytes + len(frame)
        if size > self._max_bytes:
            self.close(1013, "Client too slow", discard=True)
            return False
        frames = self._frames
        if not frames:
            self._queued_at = trio.current_time() if now is None else now
        frames.append(frame)
        self._bytes = size
        if self._scheduled:  # the common case in a busy room: already due this round
            return True
        self._ready()
        return True

    def preload(self, frames: list[bytes]) -> None:
        """Queue a resume's replay without counting it against the bound.

        A replay after a 1013 is by definition larger than the outbox, so counting it would close
        the resumed socket at once; it is bounded by REPLAY_MAX_BYTES instead.
        """
        if not frames:
            return
        if not self._frames:
            self._queued_at = trio.current_time()
        self._frames.extend(frames)
        self._ready()

    def _ready(self) -> None:
        if self._writer is None or self._sender_turn:
            self._wake_sender()
        elif not self._scheduled:
            self._scheduled = True
            assert self._flusher is not None  # a writer is only attached with a flusher
            self._flusher.schedule(self)

    def flush(self, now: float) -> int:
        """The flusher's turn: write what is queued straight to the socket, or hand it to the
        sender.  Returns the bytes written (0: none, the sender has it or nothing was due);
        ``now``, the trio time, becomes :attr:`written_at` when something was written."""
        self._scheduled = False
        if not self._frames or self._sender_turn or self._writer is None:
            return 0
        frames = self._frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        written = self._writer.write_nowait(data)
        if not written:
            self._hand_to_sender()
            return 0
        frames.clear()
        self.written_at = now
        if written < len(data):
            frames.append(data[written:])
            self._bytes = len(data) - written
            self._mid_frame = True
            self._hand_to_sender()
        else:
            self._bytes = 0
        return written

    def _hand_to_sender(self) -> None:
        self._sender_turn = True
        self._wake_sender()

    def _wake_sender(self) -> None:
        if self._start_sender is not None:
            if not self._sender_running:
                self._sender_running = True
                self._start_sender()
        elif self._wakeup is not None:
            self._wakeup.set()

    def close(self, code: int, reason: str, *, discard: bool = False) -> None:
        """Ask the sender to close after the queued frames (or instead of them)."""
        if self._close is not None:
            return
        self._close = CloseRequest(code, reason)
        if self._closing is not None:
            self._closing.set()
        if self._on_closing is not None:
            self._on_closing()
        if discard:
            # The rest of a partly written frame is not droppable: the peer is inside it.
            rest = self._frames[0] if self._mid_frame else b""
            self._frames.clear()
            if rest:
                self._frames.append(rest)
            self._bytes = len(rest)
        self._hand_to_sender()

    def nudge(self) -> None:
        """Wake the sender with nothing queued: a telnet socket's sender also writes what the
        protocol itself owes the client (option replies), which never passes through the hub."""
        self._nudged = True
        self._hand_to_sender()

    async def wait_closing(self) -> None:
        if self._close is None:
            if self._closing is None:
                self._closing = trio.Event()
            await self._closing.wait()

    async def wait_whole(self) -> None:
        """Until no frame is left partly written by the flusher (before any other write)."""
        while self._mid_frame:
            if self._whole is None:
                self._whole = trio.Event()
            await self._whole.wait()

    async def next_batch(self) -> tuple[bytes, CloseRequest | None, float]:
        """Wait for work; return everything queued as one write, the close request if any, and
        the trio time its oldest frame was queued (a sender that waits: telnet's)."""
        while not self._sender_has_work():
            self._sender_turn = False
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        self._wakeup = None
        return await self._drain()

    async def take_batch(self) -> tuple[bytes, CloseRequest | None, float] | None:
        """:meth:`next_batch` for a sender started on demand: None when nothing is left for a
        sender (it ends then; the next need starts another)."""
        if not self._sender_has_work():
            self._sender_turn = False
            self._sender_running = False
            return None
        return await self._drain()

    def _sender_has_work(self) -> bool:
        return bool(self._frames) or self._close is not None or self._nudged

    async def _drain(self) -> tuple[bytes, CloseRequest | None, float]:
        self._sender_turn = True
        self._nudged = False
        # One more scheduling round before draining: frames the hub queues for this socket in
        # that round (the next say of a busy room) leave in the same write.
        await trio.lowlevel.checkpoint()
        data = b"".join(self._frames)
        self._frames.clear()
        self._bytes = 0
        # The rest of a partly written frame now travels with this write, ahead of everything
        # else; the sender takes the stream lock before it next yields, so no control frame can
        # come between.
        self._mid_frame = False
        if self._whole is not None:
            self._whole.set()
            self._whole = None
        return data, self._close, self._queued_at
