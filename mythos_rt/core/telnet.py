"""Telnet, the protocol (RFC 854/855): an incremental parser and the option negotiation.

Pure: bytes in, events and reply bytes out.  The parser keeps its state between calls, so an
IAC sequence split across two reads (``IAC`` | ``WILL NAWS``) parses exactly as if it had
arrived whole.  Everything a client can make it hold is bounded: a line (MAX_LINE_BYTES, the
rest of an over-long line is dropped) and a subnegotiation (MAX_SUBNEGOTIATION_BYTES, the rest
dropped up to its ``IAC SE``).

Line ends: CR LF, CR NUL and a bare LF each end a line (clients disagree; a lone CR followed
by anything else ends the line too).  Lines are decoded as UTF-8 with replacement characters,
and the line editing a raw client leaves in (backspace, DEL) is applied.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable

import attrs

IAC = 255
DONT = 254
DO = 253
WONT = 252
WILL = 251
SB = 250
GA = 249
NOP = 241
SE = 240

OPT_ECHO = 1
OPT_SGA = 3
OPT_TTYPE = 24
OPT_NAWS = 31
OPT_GMCP = 201

TTYPE_IS = 0
TTYPE_SEND = 1

MAX_LINE_BYTES = 4096
MAX_SUBNEGOTIATION_BYTES = 8192

_CR, _LF, _NUL = 13, 10, 0
_IAC_BYTE = bytes((IAC,))
_DATA_SPECIAL = re.compile(rb"[\xff\r\n\x00]")
_VERBS = frozenset({DO, DONT, WILL, WONT})


# --- events ----------------------------------------------------------------------------------


@attrs.frozen
class Line:
    text: str


@attrs.frozen
class LineTooLong:
    """A line passed MAX_LINE_BYTES; it is dropped up to its end."""


@attrs.frozen
class Negotiation:
    verb: int  # DO, DONT, WILL or WONT
    option: int


@attrs.frozen
class Subnegotiation:
    option: int
    payload: bytes


@attrs.frozen
class SubnegotiationTooLong:
    option: int


Event = Line | LineTooLong | Negotiation | Subnegotiation | SubnegotiationTooLong


class _State(enum.Enum):
    DATA = enum.auto()
    CR = enum.auto()  # a CR was seen: LF or NUL after it belong to the same line end
    IAC = enum.auto()
    VERB = enum.auto()  # DO/DONT/WILL/WONT seen, the option byte is next
    SB_OPTION = enum.auto()
    SB_DATA = enum.auto()
    SB_IAC = enum.auto()


class TelnetParser:
    """Bytes from the client → :data:`Event` values, across reads of any size."""

    def __init__(
        self,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_subnegotiation_bytes: int = MAX_SUBNEGOTIATION_BYTES,
    ) -> None:
        self._max_line = max_line_bytes
        self._max_sb = max_subnegotiation_bytes
        self._state = _State.DATA
        self._line = bytearray()
        self._line_overflow = False
        self._verb = 0
        self._sb_option = 0
        self._sb = bytearray()
        self._sb_overflow = False
        # Every IAC command seen (IAC IAC excepted), answered or not: a client's option chatter
        # is a handful per connection, so the session can budget it (an IAC flood costs the
        # server a Python step per byte).
        self.commands = 0

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        at, size = 0, len(data)
        while at < size:
            # Runs of plain bytes are taken whole (a giant line costs a slice, not a Python
            # step per byte); the bytes that change the state go one by one.
            if self._state is _State.DATA:
                found = _DATA_SPECIAL.search(data, at)
                end = size if found is None else found.start()
                if end > at:
                    self._append(data[at:end], events)
                    at = end
                    continue
            elif self._state is _State.SB_DATA:
                end = data.find(_IAC_BYTE, at)
                end = size if end < 0 else end
                if end > at:
                    self._sb_append(data[at:end])
                    at = end
                    continue
            self._step(data[at], events)
            at += 1
        return events

    def _step(self, byte: int, events: list[Event]) -> None:
        state = self._state
        if state is _State.CR:
            self._state = _State.DATA
            if byte in (_LF, _NUL):
                return  # the rest of a CR LF / CR NUL already ended
            state = _State.DATA
        if state is _State.DATA:
            self._data(byte, events)
        elif state is _State.IAC:
            self._command(byte, events)
        elif state is _State.VERB:
            events.append(Negotiation(self._verb, byte))
            self._state = _State.DATA
        elif state is _State.SB_OPTION:
            self._sb_option, self._sb, self._sb_overflow = byte, bytearray(), False
            self._state = _State.SB_DATA
        elif state is _State.SB_DATA:
            if byte == IAC:
                self._state = _State.SB_IAC
            else:
                self._sb_append(bytes((byte,)))
        else:  # SB_IAC
            self._sb_command(byte, events)

    def _data(self, byte: int, events: list[Event]) -> None:
        if byte == IAC:
            self._state = _State.IAC
        elif byte in (_CR, _LF):
            self._end_line(events)
            if byte == _CR:
                self._state = _State.CR
        elif byte != _NUL:  # NUL is NVT padding
            self._append(bytes((byte,)), events)

    def _append(self, chunk: bytes, events: list[Event]) -> None:
        room = self._max_line - len(self._line)
        self._line += chunk[:room]
        if len(chunk) > room and not self._line_overflow:
            self._line_overflow = True
            events.append(LineTooLong())

    def _end_line(self, events: list[Event]) -> None:
        if not self._line_overflow:
            events.append(Line(decode_line(bytes(self._line))))
        self._line.clear()
        self._line_overflow = False

    def _command(self, byte: int, events: list[Event]) -> None:
        if byte == IAC:  # IAC IAC: a literal 255 in the data
            self._state = _State.DATA
            self._append(_IAC_BYTE, events)
            return
        self.commands += 1
        if byte in _VERBS:
            self._verb = byte
            self._state = _State.VERB
        elif byte == SB:
            self._state = _State.SB_OPTION
        else:  # NOP, GA, AYT, BRK, IP, a stray SE...: nothing a line-mode server acts on
            self._state = _State.DATA

    def _sb_append(self, chunk: bytes) -> None:
        room = self._max_sb - len(self._sb)
        self._sb += chunk[:room]
        if len(chunk) > room:
            self._sb_overflow = True

    def _sb_command(self, byte: int, events: list[Event]) -> None:
        if byte == SE:
            if self._sb_overflow:
                events.append(SubnegotiationTooLong(self._sb_option))
            else:
                events.append(Subnegotiation(self._sb_option, bytes(self._sb)))
            self._sb = bytearray()
            self._state = _State.DATA
        elif byte == IAC:
            self._sb_append(_IAC_BYTE)
            self._state = _State.SB_DATA
        else:
            # IAC + anything else inside a subnegotiation is a broken client; RFC 855 has no
            # meaning for it.  Keep waiting for IAC SE (bounded by the buffer).
            self._state = _State.SB_DATA


def decode_line(raw: bytes) -> str:
    """UTF-8 with replacement characters, after the client's own backspaces and DELs."""
    text = raw.decode("utf-8", errors="replace")
    if "\b" not in text and "\x7f" not in text:
        return text
    kept: list[str] = []
    for ch in text:
        if ch in ("\b", "\x7f"):
            if kept:
                kept.pop()
        else:
            kept.append(ch)
    return "".join(kept)


# --- encoding --------------------------------------------------------------------------------


def escape(data: bytes) -> bytes:
    """Data bytes as they travel: every 255 doubled."""
    return data.replace(b"\xff", b"\xff\xff")


def command(verb: int, option: int) -> bytes:
    return bytes((IAC, verb, option))


def subnegotiation(option: int, payload: bytes) -> bytes:
    return bytes((IAC, SB, option)) + escape(payload) + bytes((IAC, SE))


def gmcp_message(package: str, data: object) -> bytes:
    """One GMCP message: ``IAC SB GMCP <package> <json> IAC SE``."""
    body = package if data is None else f"{package} {json.dumps(data, separators=(',', ':'))}"
    return subnegotiation(OPT_GMCP, body.encode("utf-8"))


def text_lines(lines: Iterable[str]) -> bytes:
    """Lines for the client's screen: CR LF after each, UTF-8, IAC escaped."""
    return b"".join(escape(line.encode("utf-8")) + b"\r\n" for line in lines)


# --- what the options mean for this session -----------------------------------------------


def parse_gmcp(payload: bytes) -> tuple[str, object] | None:
    """``Package.Name <json>`` → (package, data); None when it is not GMCP at all."""
    text = payload.decode("utf-8", errors="replace")
    package, _, body = text.partition(" ")
    if not package or len(package) > 64:
        return None
    if not body.strip():
        return package, None
    try:
        return package, json.loads(body)
    except ValueError:  # RecursionError is a RuntimeError, but the buffer bounds the depth
        return None


def parse_naws(payload: bytes) -> tuple[int, int] | None:
    """Window size (columns, rows); None for a malformed report."""
    if len(payload) != 4:
        return None
    return payload[0] << 8 | payload[1], payload[2] << 8 | payload[3]


def parse_ttype(payload: bytes) -> str | None:
    if len(payload) < 2 or payload[0] != TTYPE_IS:
        return None
    return payload[1:65].decode("ascii", errors="replace")


# The options this server offers (WILL) and asks the client for (DO) at connect.
SERVER_OPTIONS = frozenset({OPT_GMCP, OPT_ECHO})
CLIENT_OPTIONS = frozenset({OPT_NAWS, OPT_TTYPE})


@attrs.define
class Options:
    """Which options are on, per side; the replies owed for what the client says.

    A simplified RFC 1143: a request that would change nothing is not answered (so two peers
    never loop), an option we do not support is refused once per connection (so a flood of
    requests is never answered by a flood of refusals).
    """

    local: set[int] = attrs.field(factory=set)  # we WILL (client said DO)
    remote: set[int] = attrs.field(factory=set)  # they WILL (we said DO)
    offered: set[int] = attrs.field(factory=set)  # WILL sent, no answer yet
    asked: set[int] = attrs.field(factory=set)  # DO sent, no answer yet
    refused: set[int] = attrs.field(factory=set)

    def offer(self, option: int) -> bytes:
        if option in self.local or option in self.offered:
            return b""
        self.offered.add(option)
        return command(WILL, option)

    def withdraw(self, option: int) -> bytes:
        if option not in self.local and option not in self.offered:
            return b""
        self.local.discard(option)
        self.offered.discard(option)
        return command(WONT, option)

    def ask(self, option: int) -> bytes:
        if option in self.remote or option in self.asked:
            return b""
        self.asked.add(option)
        return command(DO, option)

    def on_negotiation(self, verb: int, option: int) -> bytes:
        """Apply the client's DO/DONT/WILL/WONT; the reply owed, if any."""
        if verb == DO:
            return self._on_do(option)
        if verb == DONT:
            return _turn_off(self.local, self.offered, option, WONT)
        if verb == WILL:
            return self._on_will(option)
        return _turn_off(self.remote, self.asked, option, DONT)

    def _on_do(self, option: int) -> bytes:
        # ECHO is ours to turn on and off (the password prompt), never the client's.
        agreeable = option in SERVER_OPTIONS and option != OPT_ECHO
        return self._turn_on(self.local, self.offered, agreeable, option, WILL, WONT)

    def _on_will(self, option: int) -> bytes:
        agreeable = option in CLIENT_OPTIONS
        return self._turn_on(self.remote, self.asked, agreeable, option, DO, DONT)

    def _turn_on(
        self, on: set[int], pending: set[int], agreeable: bool, option: int, yes: int, no: int
    ) -> bytes:
        """The peer asks for an option (or answers our request for it)."""
        if option in on:
            return b""
        if option in pending:  # the answer to our own request: no reply owed
            pending.discard(option)
            on.add(option)
            return b""
        if agreeable:
            on.add(option)
            return command(yes, option)
        return self._refuse(no, option)

    def _refuse(self, verb: int, option: int) -> bytes:
        if option in self.refused:
            return b""
        self.refused.add(option)
        return command(verb, option)


def _turn_off(on: set[int], pending: set[int], option: int, reply_verb: int) -> bytes:
    """The peer refused or ended an option: off.  Acknowledged only when it was on (a refusal
    of our own pending request is its answer, and needs none)."""
    answering_us = option in pending
    pending.discard(option)
    was_on = option in on
    on.discard(option)
    return command(reply_verb, option) if was_on and not answering_us else b""


def gmcp_supports(data: object) -> set[str] | None:
    """Package names from a Core.Supports.* list (``["Char 1", "Room 1"]``); None if malformed."""
    if not isinstance(data, list):
        return None
    names: set[str] = set()
    for item in data[:64]:
        if isinstance(item, str) and item.strip():
            names.add(item.split()[0].lower())
    return names


def gmcp_wanted(supported: set[str] | None, package: str) -> bool:
    """Send ``package``?  Every package until the client names its own (Core.Supports.Set)."""
    if supported is None:
        return True
    parts = package.lower().split(".")
    return any(".".join(parts[:n]) in supported for n in range(1, len(parts)))
