"""Telnet for MUD clients (docs/TELNET.md): a second door into the same hub.

A telnet connection logs in by name and password (the HTTP API's own check and throttle), then
becomes one more socket of its player: the hub admits it with :meth:`Hub.admit`, fills its
byte-bounded outbox with the same encoded frames every other socket gets, and forgets it with
:meth:`Hub.detach`.  Only the last step differs: the sender renders each frame as text lines
and GMCP messages (:mod:`mythos_rt.core.telnet_render`) instead of writing it as is.

    handle_telnet ×N      one per TCP connection, in the conns nursery beside the WebSockets
                          (the listener: server.serve_connections with TELNET_PORT)
    ├─ login              under TELNET_LOGIN_TIMEOUT_S (slowloris), abandoned by the drain
    └─ connection nursery
       ├─ receive loop    bytes → TelnetParser → lines (rate limit → hub) / option replies;
       │                  idle: no line for IDLE_TIMEOUT_S closes, like a WebSocket
       ├─ sender          the only writer once admitted: option replies, then the batch
       └─ close watchdog  a requested close is cut after 2 × CLOSE_TIMEOUT_S
       finally: hub.detach(socket)
"""

from __future__ import annotations

import logging
import math
from contextlib import suppress

import attrs
import trio

from mythos_rt.core import handshake
from mythos_rt.core import telnet as tn
from mythos_rt.core.ratelimit import SlidingWindow
from mythos_rt.core.telnet_render import (
    Style,
    close_notice,
    gmcp_messages,
    paint,
    parse_envelope,
    render,
    split_text_frames,
)
from mythos_rt.runtime.connection import POLICY, frame_guard, refuse_frame
from mythos_rt.runtime.gate import (
    Gate,
    Slot,
    contained,
    fresh_player_state,
    load_mutes,
    take_slot,
)
from mythos_rt.runtime.http_api import LoginBanned, LoginRefused
from mythos_rt.runtime.hub import SocketHandle
from mythos_rt.runtime.store import MuteRecords, PlayerRecord, StoreError
from mythos_rt.runtime.wsio import peer_address

log = logging.getLogger(__name__)

RECEIVE_BYTES = 4096
# Name and password pairs one connection may try before it is hung up on.
LOGIN_TRIES = 3
# Option replies waiting for the sender (a client that floods requests but never reads).
# Overflow policy: the connection is closed, like an outbox over OUTBOX_MAX_BYTES.
CONTROL_MAX_BYTES = 64 * 1024
IDLE = (4001, "Connection cleaned up")
# Terminal types that cannot show ANSI colours (TTYPE, RFC 1091).
NO_COLOUR_TERMINALS = frozenset({"dumb", "unknown"})
GREETING = (
    "",
    "  M Y T H O S   M U D",
    "  Arkham, 1926. The lamps are lit; something stirs beyond the river.",
    "",
)


# IAC commands a connection may send per minute.  Option negotiation is a handful per
# connection and a client's keep-alive NOPs a few per minute; an IAC flood costs the server a
# Python step per byte, so beyond this budget the connection is closed (1008, as for abuse).
MAX_COMMANDS_PER_MINUTE = 1000


class _PeerGone(Exception):
    """The client closed or reset the connection."""


BUSY = b"The server is too busy right now. Please try again in a few seconds.\r\n"


class _Flooding(Exception):
    """The client went over MAX_COMMANDS_PER_MINUTE before logging in."""


async def handle_telnet(gate: Gate, stream: trio.abc.Stream) -> None:
    """Serve one telnet connection from greeting to close; never raises (but Cancelled)."""
    slot = await take_slot(gate, stream, BUSY)
    if slot is None:
        return
    async with contained(gate, stream, "telnet_connections", slot):
        await TelnetSession(gate, stream, slot).run()


class TelnetSession:
    """One telnet connection: the login, then one socket of the player."""

    def __init__(self, gate: Gate, stream: trio.abc.Stream, slot: Slot) -> None:
        self._gate = gate
        self._stream = stream
        self._slot = slot
        self._parser = tn.TelnetParser()
        self._options = tn.Options()
        self._style = Style()
        self._gmcp_supported: set[str] | None = None
        self._lines: list[str] = []  # typed ahead: read during the login, run once admitted
        self._control = bytearray()  # option replies for the sender, once admitted
        self._frame_guard = frame_guard(gate.settings)
        self._command_window = SlidingWindow(MAX_COMMANDS_PER_MINUTE, 60.0)
        self._commands_counted = 0
        self._scope = trio.CancelScope()

    # --- before admission -------------------------------------------------------------------

    async def run(self) -> None:
        gate = self._gate
        ip = peer_address(self._stream)
        if gate.draining:
            await self._farewell("The server is shutting down. Please come back later.")
            return
        if not gate.ip_attempts.allow(ip, trio.current_time()):
            await self._farewell("Too many connection attempts. Please wait and try again.")
            return
        found: tuple[PlayerRecord, MuteRecords, int] | None = None
        timeout_s = gate.settings.telnet_login_timeout_s
        try:
            with trio.move_on_after(timeout_s) as login_scope:
                gate.handshakes.add(login_scope)
                try:
                    found = await self._login(ip)
                finally:
                    gate.handshakes.discard(login_scope)
                    self._slot.handshake_over()
        except _PeerGone:
            return
        except _Flooding:
            gate.metrics.inc("telnet_command_floods")
            await self._farewell("Too many telnet commands. Goodbye.")
            return
        if login_scope.cancelled_caught:
            gate.metrics.inc("handshakes_abandoned" if gate.draining else "handshakes_timed_out")
            why = "The server is shutting down." if gate.draining else "Login timed out."
            await self._farewell(why)
            return
        if found is not None:
            await self._admit(*found)

    async def _login(self, ip: str) -> tuple[PlayerRecord, MuteRecords, int] | None:
        """Name and password prompts; the player, their mutes and the hub version read before
        them (see gate._as_of_now), or None after saying why not."""
        offers = self._options.offer(tn.OPT_GMCP)
        offers += self._options.ask(tn.OPT_NAWS) + self._options.ask(tn.OPT_TTYPE)
        await self._write(offers + tn.text_lines(GREETING))
        for _ in range(LOGIN_TRIES):
            name = await self._prompt("By what name are you known? ")
            password = await self._prompt("Password: ", hidden=True)
            try:
                checked = await self._gate.http_api.check_password(name, password, ip)
                if isinstance(checked, LoginRefused) and checked.retry_after_s is not None:
                    wait_s = math.ceil(checked.retry_after_s)
                    await self._farewell(f"Too many failed logins. Try again in {wait_s} seconds.")
                    return None
                if isinstance(checked, LoginBanned):
                    await self._farewell(handshake.banned_text(checked.banned_until) + ".")
                    return None
                if isinstance(checked, PlayerRecord):
                    return await self._read_player(checked.player_id)
            except StoreError as exc:
                log.warning("telnet login: store unavailable: %s", exc)
                await self._farewell("The records cannot be read right now. Try again later.")
                return None
            await self._write(tn.text_lines(["Wrong name or password.", ""]))
        await self._farewell("Too many tries. Goodbye.")
        return None

    async def _read_player(self, player_id: str) -> tuple[PlayerRecord, MuteRecords, int] | None:
        gate = self._gate
        if not gate.player_attempts.allow(player_id, trio.current_time()):
            await self._farewell("Too many connection attempts. Please wait and try again.")
            return None
        version = gate.hub.version()  # before the reads: see gate._as_of_now
        record = await gate.writer.read_after_writes(gate.store.backend.get_player, player_id)
        if record is None or record.deleted:
            await self._farewell("That character is no longer in the game.")
            return None
        return record, await load_mutes(gate, player_id), version

    async def _prompt(self, text: str, *, hidden: bool = False) -> str:
        """Ask, and wait for the next line (empty lines ask again).  A name is trimmed; a
        password is kept as typed, spaces included, as the HTTP login keeps it."""
        while True:
            echo_off = self._options.offer(tn.OPT_ECHO) if hidden else b""
            await self._write(echo_off + tn.escape(text.encode("utf-8")))
            line = await self._next_line()
            if hidden:  # the client echoed nothing, not even the line end
                await self._write(self._options.withdraw(tn.OPT_ECHO) + b"\r\n")
            if line.strip():
                return line if hidden else line.strip()

    async def _next_line(self) -> str:
        while not self._lines:
            data = await self._receive()
            if not data:
                raise _PeerGone
            replies = self._feed(data)
            if self._flooding():
                raise _Flooding
            if replies:
                await self._write(replies)
        return self._lines.pop(0)

    async def _admit(self, record: PlayerRecord, mutes: MuteRecords, version: int) -> None:
        gate, hub = self._gate, self._gate.hub
        refusal = hub.precheck(record.player_id, None)
        if refusal is not None:
            await self._farewell(f"{refusal.close_reason}.")
            return
        fresh = await fresh_player_state(gate, record, mutes, version)
        if fresh is None:
            await self._farewell("The server is too busy right now. Please try again.")
            return
        record, mutes = fresh
        if gate.draining:  # the drain began while this login waited on the store
            await self._farewell("The server is shutting down.")
            return
        self._style = attrs.evolve(self._style, me=record.name)
        socket = hub.new_socket(record.player_id, None)
        refusal = hub.admit(record, socket, None, mutes)
        if refusal is not None:
            await self._farewell(f"{refusal.close_reason}.")
            return
        gate.metrics.inc("telnet_sockets_admitted")
        log.info("telnet login: player %s", record.player_id)
        try:
            await self._serve_admitted(socket)
        finally:
            hub.detach(socket)

    # --- once admitted -------------------------------------------------------------------------

    async def _serve_admitted(self, socket: SocketHandle) -> None:
        with self._scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._receive_loop, socket)
                nursery.start_soon(self._send_loop, socket)
                nursery.start_soon(self._close_watchdog, socket)

    def _end(self) -> None:
        self._scope.cancel()

    async def _receive_loop(self, socket: SocketHandle) -> None:
        idle_s = self._gate.settings.idle_timeout_s
        with trio.CancelScope(deadline=trio.current_time() + idle_s) as idle:
            self._run_lines(socket)  # typed ahead of the admission
            while True:
                data = await self._receive()
                if not data:
                    if socket.outbox.closing is None:
                        self._end()
                    return
                lines_before = len(self._lines)
                replies = self._feed(data)
                if self._flooding():
                    self._gate.metrics.inc("telnet_command_floods")
                    socket.outbox.close(*POLICY, discard=True)
                    return
                self._queue_control(socket, replies)
                if len(self._lines) > lines_before:
                    idle.deadline = trio.current_time() + idle_s
                self._run_lines(socket)
        if idle.cancelled_caught:
            socket.outbox.close(*IDLE)

    def _run_lines(self, socket: SocketHandle) -> None:
        lines, self._lines = self._lines, []
        for line in lines:
            self._on_line(socket, line)

    def _on_line(self, socket: SocketHandle, line: str) -> None:
        refusal = self._frame_guard.check(trio.current_time())
        if refusal is not None:
            refuse_frame(refusal, socket, self._gate.metrics, self._gate.settings)
            return
        if line.strip():  # Enter alone is a player checking the connection: nothing to answer
            self._gate.hub.handle_command(socket, line, ())

    def _queue_control(self, socket: SocketHandle, replies: bytes) -> None:
        if not replies:
            return
        if len(self._control) + len(replies) > CONTROL_MAX_BYTES:
            socket.outbox.close(*POLICY, discard=True)
            return
        self._control += replies
        socket.outbox.nudge()

    async def _send_loop(self, socket: SocketHandle) -> None:
        outbox = socket.outbox
        try:
            while True:
                data, close, _queued_at = await outbox.next_batch()
                out = bytes(self._control) + self._render(data)
                self._control.clear()
                if close is not None:
                    out += tn.text_lines(close_notice(close.code, close.reason, self._style))
                if out:
                    await self._stream.send_all(out)
                    self._gate.metrics.inc("bytes_sent", len(out))
                del data, out  # not held while this task waits for the next batch
                if close is not None:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client is gone: nothing more to say
        self._end()

    async def _close_watchdog(self, socket: SocketHandle) -> None:
        """A requested close must finish within 2 × CLOSE_TIMEOUT_S (a client not reading)."""
        await socket.outbox.wait_closing()
        await trio.sleep(2 * self._gate.settings.close_timeout_s)
        self._end()

    def _render(self, data: bytes) -> bytes:
        gmcp_on = tn.OPT_GMCP in self._options.local
        out = bytearray()
        for text in split_text_frames(data):
            frame = parse_envelope(text)
            out += tn.text_lines(render(frame, self._style))
            if gmcp_on:
                for package, payload in gmcp_messages(frame):
                    if tn.gmcp_wanted(self._gmcp_supported, package):
                        out += tn.gmcp_message(package, payload)
        return bytes(out)

    # --- the protocol ---------------------------------------------------------------------------

    def _feed(self, data: bytes) -> bytes:
        """Parse what arrived: lines are queued, options applied; the replies owed."""
        replies = bytearray()
        for event in self._parser.feed(data):
            match event:
                case tn.Line(text=text):
                    self._lines.append(text)
                case tn.LineTooLong():
                    limit = tn.MAX_LINE_BYTES
                    notice = f"That line was too long (over {limit} bytes) and was ignored."
                    replies += tn.text_lines([paint(notice, "error", self._style)])
                case tn.Negotiation(verb=verb, option=option):
                    had_ttype = tn.OPT_TTYPE in self._options.remote
                    replies += self._options.on_negotiation(verb, option)
                    if not had_ttype and tn.OPT_TTYPE in self._options.remote:
                        replies += tn.subnegotiation(tn.OPT_TTYPE, bytes((tn.TTYPE_SEND,)))
                case tn.Subnegotiation(option=option, payload=payload):
                    replies += self._on_subnegotiation(option, payload)
                case tn.SubnegotiationTooLong():
                    self._gate.metrics.inc("telnet_subnegotiations_dropped")
        return bytes(replies)

    def _flooding(self) -> bool:
        """Over MAX_COMMANDS_PER_MINUTE?  (At most the budget's worth of steps per minute.)"""
        now = trio.current_time()
        while self._commands_counted < self._parser.commands:
            self._commands_counted += 1
            if not self._command_window.allow(now):
                return True
        return False

    def _on_subnegotiation(self, option: int, payload: bytes) -> bytes:
        if option == tn.OPT_NAWS and option in self._options.remote:
            size = tn.parse_naws(payload)
            if size is not None:
                self._style = attrs.evolve(self._style, width=size[0] or None)
        elif option == tn.OPT_TTYPE and option in self._options.remote:
            terminal = tn.parse_ttype(payload)
            if terminal is not None and terminal.lower() in NO_COLOUR_TERMINALS:
                self._style = attrs.evolve(self._style, colour=False)
        elif option == tn.OPT_GMCP and option in self._options.local:
            return self._on_gmcp(payload)
        return b""

    def _on_gmcp(self, payload: bytes) -> bytes:
        message = tn.parse_gmcp(payload)
        if message is None:
            return b""
        package, data = message
        match package.lower():
            case "core.ping":
                return tn.gmcp_message("Core.Ping", None)
            case "core.supports.set":
                self._gmcp_supported = tn.gmcp_supports(data)
            case "core.supports.add":
                added = tn.gmcp_supports(data) or set()
                self._gmcp_supported = (self._gmcp_supported or set()) | added
            case "core.supports.remove":
                removed = tn.gmcp_supports(data) or set()
                self._gmcp_supported = (self._gmcp_supported or set()) - removed
            case _:  # Core.Hello and what we do not know: accepted, nothing to answer
                pass
        return b""

    # --- I/O helpers ----------------------------------------------------------------------------

    async def _receive(self) -> bytes:
        try:
            return bytes(await self._stream.receive_some(RECEIVE_BYTES))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _write(self, data: bytes) -> None:
        """Before admission only (afterwards the sender is the only writer)."""
        if not data:
            return
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _PeerGone from None

    async def _farewell(self, text: str) -> None:
        """Say why, bounded (a client may not be reading), before the connection closes."""
        with trio.move_on_after(self._gate.settings.close_timeout_s), suppress(_PeerGone):
            await self._write(tn.text_lines([text]))


