"""The telnet protocol, pure: the incremental parser, option negotiation, GMCP and NAWS/TTYPE."""

from __future__ import annotations

import pytest

from mythos_rt.core import telnet as tn
from mythos_rt.core.telnet import (
    DO,
    DONT,
    IAC,
    SB,
    SE,
    WILL,
    WONT,
    Line,
    LineTooLong,
    Negotiation,
    Subnegotiation,
    SubnegotiationTooLong,
    TelnetParser,
)

I = bytes([IAC])  # noqa: E741 (reads as the protocol's own name)


def feed_all(chunks: list[bytes], **limits: int) -> list[tn.Event]:
    parser = TelnetParser(**limits)
    events: list[tn.Event] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def every_split(data: bytes) -> list[list[bytes]]:
    """``data`` whole, byte by byte, and cut in two at every position."""
    cuts = [[data], [bytes([b]) for b in data]]
    cuts += [[data[:at], data[at:]] for at in range(1, len(data))]
    return cuts


CASES = [
    # (name, bytes in, events out)
    ("crlf", b"look\r\n", [Line("look")]),
    ("bare lf", b"look\n", [Line("look")]),
    ("cr nul", b"look\r\x00", [Line("look")]),
    ("bare cr then text", b"look\rnorth\n", [Line("look"), Line("north")]),
    ("two lines", b"n\r\ns\r\n", [Line("n"), Line("s")]),
    ("empty line", b"\r\n", [Line("")]),
    ("no line end yet", b"look", []),
    ("iac iac is a 255 in the data", b"a" + I + I + b"b\n", [Line("a\ufffdb")]),
    ("do", I + bytes([DO, 201]), [Negotiation(DO, 201)]),
    ("dont", I + bytes([DONT, 1]), [Negotiation(DONT, 1)]),
    ("will", I + bytes([WILL, 31]), [Negotiation(WILL, 31)]),
    ("wont", I + bytes([WONT, 24]), [Negotiation(WONT, 24)]),
    (
        "naws subnegotiation",
        I + bytes([SB, 31, 0, 80, 0, 24]) + I + bytes([SE]),
        [Subnegotiation(31, bytes([0, 80, 0, 24]))],
    ),
    (
        "escaped 255 inside a subnegotiation",
        I + bytes([SB, 31, 0, 255, 255, 0, 24]) + I + bytes([SE]),
        [Subnegotiation(31, bytes([0, 255, 0, 24]))],
    ),
    (
        "gmcp",
        I + bytes([SB, 201]) + b'Core.Hello {"client":"Mudlet"}' + I + bytes([SE]),
        [Subnegotiation(201, b'Core.Hello {"client":"Mudlet"}')],
    ),
    (
        "negotiation inside a line",
        b"lo" + I + bytes([WILL, 31]) + b"ok\n",
        [Negotiation(WILL, 31), Line("look")],
    ),
    (
        "nop, ga and ayt are ignored",
        b"a" + I + bytes([241]) + I + bytes([249]) + b"b\n",
        [Line("ab")],
    ),
    ("a stray se is ignored", I + bytes([SE]) + b"x\n", [Line("x")]),
    ("utf-8", "Ἀρχή\r\n".encode(), [Line("Ἀρχή")]),
    ("bad utf-8 is replaced", b"caf\xe9\n", [Line("caf\ufffd")]),
    ("backspace and del edit the line", b"lox\x08ok\x7f\x7fok\n", [Line("look")]),
    ("nul padding is dropped", b"lo\x00ok\n", [Line("look")]),
]


@pytest.mark.parametrize(("name", "data", "expected"), CASES, ids=[c[0] for c in CASES])
def test_parser_table(name: str, data: bytes, expected: list[tn.Event]) -> None:
    for chunks in every_split(data):
        assert feed_all(chunks) == expected, chunks


def test_a_line_over_the_limit_is_reported_once_and_dropped_to_its_end() -> None:
    events = feed_all([b"x" * 10, b"y" * 10, b"\r\nok\r\n"], max_line_bytes=8)
    assert events == [LineTooLong(), Line("ok")]


def test_a_giant_line_in_many_reads_holds_no_more_than_the_limit() -> None:
    parser = TelnetParser(max_line_bytes=16)
    for _ in range(1000):
        parser.feed(b"A" * 4096)
    assert len(parser._line) == 16
    assert parser.feed(b"\nlook\n") == [Line("look")]


def test_an_endless_subnegotiation_is_bounded_and_dropped_at_its_end() -> None:
    parser = TelnetParser(max_subnegotiation_bytes=32)
    assert parser.feed(I + bytes([SB, 201])) == []
    for _ in range(1000):
        assert parser.feed(b"z" * 4096) == []
    assert len(parser._sb) == 32
    assert parser.feed(I + bytes([SE]) + b"look\n") == [SubnegotiationTooLong(201), Line("look")]


def test_an_iac_flood_yields_events_and_keeps_lines_intact() -> None:
    flood = (I + bytes([DO, 99])) * 1000
    events = feed_all([flood[:1501], flood[1501:] + b"say hi\n"])
    assert events.count(Negotiation(DO, 99)) == 1000
    assert events[-1] == Line("say hi")


def test_commands_are_counted_but_not_escaped_data() -> None:
    parser = TelnetParser()
    parser.feed(I + bytes([DO, 1]) + I + bytes([241]) + b"a" + I + I + b"\n")
    parser.feed(I + bytes([SB, 31, 0, 80, 0, 24]) + I + bytes([SE]))
    assert parser.commands == 3  # DO, NOP, SB (its IAC SE ends it, it is not another one)


def test_random_garbage_never_raises() -> None:
    import random

    rng = random.Random(1926)
    parser = TelnetParser(max_line_bytes=64, max_subnegotiation_bytes=64)
    for _ in range(2000):
        parser.feed(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
    # Whatever state the garbage left, a complete subnegotiation end and a line still parse.
    parser.feed(I + bytes([SE]) + b"\n")
    assert parser.feed(b"look\n") == [Line("look")]


# --- encoding ------------------------------------------------------------------------------------


def test_text_lines_end_in_crlf_and_escape_iac() -> None:
    assert tn.text_lines(["a", "ÿ"]) == b"a\r\n\xc3\xbf\r\n"  # UTF-8 of ÿ has no 255 byte
    assert tn.escape(b"\xff") == b"\xff\xff"


def test_gmcp_message_round_trips_through_the_parser() -> None:
    wire = tn.gmcp_message("Room.Info", {"num": 1, "name": "Quad ÿ"})
    [event] = TelnetParser().feed(wire)
    assert isinstance(event, Subnegotiation) and event.option == tn.OPT_GMCP
    assert tn.parse_gmcp(event.payload) == ("Room.Info", {"num": 1, "name": "Quad ÿ"})


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'Core.Hello {"client": "Mudlet"}', ("Core.Hello", {"client": "Mudlet"})),
        (b"Core.Ping", ("Core.Ping", None)),
        (b'Core.Supports.Set ["Char 1"]', ("Core.Supports.Set", ["Char 1"])),
        (b"Core.Hello {not json", None),
        (b"", None),
        (b"x" * 100 + b" {}", None),
    ],
)
def test_parse_gmcp(payload: bytes, expected: object) -> None:
    assert tn.parse_gmcp(payload) == expected


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(bytes([0, 80, 0, 24]), (80, 24)), (bytes([1, 0, 0, 50]), (256, 50)), (b"\x00\x50", None)],
)
def test_parse_naws(payload: bytes, expected: tuple[int, int] | None) -> None:
    assert tn.parse_naws(payload) == expected


def test_parse_ttype() -> None:
    assert tn.parse_ttype(b"\x00MUDLET") == "MUDLET"
    assert tn.parse_ttype(b"\x01") is None


@pytest.mark.parametrize(
    ("supported", "package", "wanted"),
    [
        (None, "Room.Info", True),
        ({"room"}, "Room.Info", True),
        ({"char"}, "Room.Info", False),
        ({"comm.channel"}, "Comm.Channel.Text", True),
        ({"comm"}, "Comm.Channel.Text", True),
        (set(), "Char.Vitals", False),
    ],
)
def test_gmcp_wanted(supported: set[str] | None, package: str, wanted: bool) -> None:
    assert tn.gmcp_wanted(supported, package) is wanted


def test_gmcp_supports_reads_package_names() -> None:
    assert tn.gmcp_supports(["Char 1", "Room 1", "Comm.Channel 1", 5]) == {
        "char",
        "room",
        "comm.channel",
    }
    assert tn.gmcp_supports({"Char": 1}) is None


# --- option negotiation --------------------------------------------------------------------------


def cmd(verb: int, option: int) -> bytes:
    return tn.command(verb, option)


def test_our_offers_are_settled_by_the_answers_without_a_reply() -> None:
    options = tn.Options()
    assert options.offer(tn.OPT_GMCP) == cmd(WILL, tn.OPT_GMCP)
    assert options.offer(tn.OPT_GMCP) == b""  # never twice
    assert options.ask(tn.OPT_NAWS) == cmd(DO, tn.OPT_NAWS)
    assert options.on_negotiation(DO, tn.OPT_GMCP) == b""
    assert options.on_negotiation(WILL, tn.OPT_NAWS) == b""
    assert tn.OPT_GMCP in options.local and tn.OPT_NAWS in options.remote
    assert options.on_negotiation(DO, tn.OPT_GMCP) == b""  # no change, no reply: no loops


def test_a_refused_offer_is_off_and_unanswered() -> None:
    options = tn.Options()
    options.offer(tn.OPT_GMCP)
    assert options.on_negotiation(DONT, tn.OPT_GMCP) == b""
    assert tn.OPT_GMCP not in options.local


def test_unsolicited_requests_for_what_we_support_are_agreed() -> None:
    options = tn.Options()
    assert options.on_negotiation(DO, tn.OPT_GMCP) == cmd(WILL, tn.OPT_GMCP)
    assert options.on_negotiation(WILL, tn.OPT_TTYPE) == cmd(DO, tn.OPT_TTYPE)
    assert options.on_negotiation(DONT, tn.OPT_GMCP) == cmd(WONT, tn.OPT_GMCP)
    assert options.on_negotiation(WONT, tn.OPT_TTYPE) == cmd(DONT, tn.OPT_TTYPE)


def test_unsupported_options_are_refused_once_however_often_asked() -> None:
    options = tn.Options()
    replies = b"".join(options.on_negotiation(DO, 99) for _ in range(1000))
    replies += b"".join(options.on_negotiation(WILL, 98) for _ in range(1000))
    assert replies == cmd(WONT, 99) + cmd(DONT, 98)


def test_echo_is_ours_to_switch_a_client_cannot_turn_it_on() -> None:
    options = tn.Options()
    assert options.on_negotiation(DO, tn.OPT_ECHO) == cmd(WONT, tn.OPT_ECHO)
    options = tn.Options()
    assert options.offer(tn.OPT_ECHO) == cmd(WILL, tn.OPT_ECHO)
    assert options.on_negotiation(DO, tn.OPT_ECHO) == b""
    assert options.withdraw(tn.OPT_ECHO) == cmd(WONT, tn.OPT_ECHO)
    assert options.on_negotiation(DONT, tn.OPT_ECHO) == b""
    assert options.withdraw(tn.OPT_ECHO) == b""
