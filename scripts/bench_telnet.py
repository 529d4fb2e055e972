"""Benchmark the telnet door's pure parts: how fast input is parsed and output rendered.

Usage (from the project root)::

    .venv/bin/python scripts/bench_telnet.py [--megabytes 8] [--frames 20000] [--runs 3]

Measures, on one core, the median of the runs:

- parse: ``TelnetParser.feed`` over MEGABYTES of input in 4 KiB reads, for four inputs a client
  can send: typed lines, one giant line (dropped past 4 KiB), an IAC flood (option requests and
  NOPs, the worst case: every byte a state change) and an endless subnegotiation;
- render: the telnet sender's work per event, from the hub's frame bytes to the telnet bytes
  (split, parse the envelope, text lines with colours, GMCP), for chat lines and room views.

It prints MB/s and events/s; nothing is asserted (timing goals live here, not in tests).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from mythos_rt.core import telnet as tn
from mythos_rt.core.protocol import encode_event
from mythos_rt.core.telnet_render import (
    Style,
    gmcp_messages,
    parse_envelope,
    render,
    split_text_frames,
)
from mythos_rt.runtime.wsio import text_frame

READ_BYTES = 4096


def inputs(size: int) -> dict[str, bytes]:
    flood = bytes((tn.IAC, tn.DO, 99, tn.IAC, tn.WILL, 98, tn.IAC, tn.NOP))
    subneg = bytes((tn.IAC, tn.SB, tn.OPT_GMCP))
    return {
        "typed lines": (b"say The stars are right tonight.\r\n" * size)[:size],
        "giant line": b"A" * size,
        "IAC flood": (flood * size)[:size],
        "endless subnegotiation": subneg + b"x" * size,
    }


def parse_rate(data: bytes) -> float:
    """MB/s through one parser, in reads of READ_BYTES."""
    parser = tn.TelnetParser()
    started = time.perf_counter()
    for at in range(0, len(data), READ_BYTES):
        parser.feed(data[at : at + READ_BYTES])
    return len(data) / (time.perf_counter() - started) / 1e6


def frames(kind: str, count: int) -> bytes:
    room = {
        "id": "earth_arkhamcity_campus_quad",
        "name": "Miskatonic Quadrangle",
        "description": "Elms older than the university lean over the frost-bitten lawns. " * 3,
        "zone": "arkham",
        "subzone": "miskatonic_university",
        "exits": {"north": "a", "east": "b", "west": "c", "south": "d"},
        "occupants": ["Armitage", "Wilmarth", "Dyer"],
    }
    chat = {"channel": "say", "player_name": "Armitage", "message": "Armitage says: hello"}
    event_type, data = (
        ("room_state", {"room": room}) if kind == "room views" else ("chat_message", chat)
    )
    one = text_frame(encode_event(event_type, data, sequence_number=1, timestamp=0.0))
    return one * count


def render_rate(batch: bytes, count: int) -> float:
    """Events/s from frame bytes to telnet bytes, GMCP on."""
    style = Style(width=80, me="Dyer")
    started = time.perf_counter()
    out = bytearray()
    for text in split_text_frames(batch):
        frame = parse_envelope(text)
        out += tn.text_lines(render(frame, style))
        for package, payload in gmcp_messages(frame):
            out += tn.gmcp_message(package, payload)
    return count / (time.perf_counter() - started)


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.megabytes * 1_000_000
    print(f"parse ({args.megabytes} MB in {READ_BYTES}-byte reads, median of {args.runs}):")
    for name, data in inputs(size).items():
        rate = median_of(args.runs, lambda data=data: parse_rate(data))  # type: ignore[misc]
        print(f"  {name:<24} {rate:8.1f} MB/s")
    print(f"render ({args.frames} events, text + GMCP, median of {args.runs}):")
    for kind in ("chat lines", "room views"):
        batch = frames(kind, args.frames)
        rate = median_of(args.runs, lambda batch=batch: render_rate(batch, args.frames))  # type: ignore[misc]
        print(f"  {kind:<24} {rate:8.0f} events/s")


if __name__ == "__main__":
    main()
