"""Regressions for the hardening issue (11): each test failed before its fix.

The misbehaving client is played by hand over a memory stream (:class:`RawClient`), so the test
sees exactly which frames the server sends and when it hangs up; autojump clock throughout.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import trio
import trio.testing
from wsproto.events import TextMessage

from tests.runtime.harness import running
from tests.runtime.test_review_regressions import OP_CLOSE, OP_PING, OP_TEXT, RawClient, raw_player
from tests.runtime.test_slow_clients import RawClient as SlowReader
from tests.runtime.test_slow_clients import open_lockstep

OP_CONTINUATION = 0x0
FIN, RSV1 = 0x80, 0x40


async def send_frame(client: RawClient, first_byte: int, payload: bytes) -> None:
    """One masked client frame with a hand-made first byte (FIN, RSV bits, opcode)."""
    size = len(payload)
    length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    await client.stream.send_all(bytes([first_byte]) + length + mask + masked)


def command_frame(token: str, command: str, *args: str) -> bytes:
    data = {"command": command, "args": list(args)}
    return json.dumps({"type": "game_command", "data": data, "csrfToken": token}).encode()


# --- 1. protocol violations are answered with a close frame carrying the RFC's code ----------

VIOLATIONS: dict[str, tuple[int, bytes, int]] = {
    "text that is not UTF-8": (FIN | OP_TEXT, b"\xff\xfe bad", 1007),
    "a reserved bit set": (FIN | RSV1 | OP_TEXT, b"hello", 1002),
    "a reserved opcode": (FIN | 0x3, b"hello", 1002),
    "a continuation with nothing to continue": (FIN | OP_CONTINUATION, b"hello", 1002),
    "a close with an invalid code": (FIN | OP_CLOSE, struct.pack("!H", 999), 1002),
    "a ping without FIN (control frames cannot be fragmented)": (OP_PING, b"", 1002),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
async def test_a_protocol_violation_gets_a_close_frame_with_its_rfc_code(
    tmp_path: Path, autojump_clock: trio.abc.Clock, case: str
) -> None:
    first_byte, payload, code = VIOLATIONS[case]
    async with running(tmp_path) as h:
        bystander = await h.connect("Wilmarth")
        client = await raw_player(h, "Armitage")
        await send_frame(client, first_byte, payload)
        closed = await client.server_close()
        assert closed is not None, "TCP was dropped without a close frame"
        assert closed[0] == code
        await client.until_eof()
        # Nobody else is touched, and nothing is counted as a server failure.
        await bystander.until_pong()
        assert h.app.metrics.value("connection_errors") == 0


# --- 2. nothing a client sends after the server asked to close is acted upon -----------------


async def test_frames_after_a_requested_close_are_not_processed(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    # No heartbeat pings: the hand-made client below reads no frame but text and close.
    async with running(tmp_path, ping_interval_s=1000.0) as h:
        listener = await h.connect("Wilmarth")
        token = h.token("Armitage", ttl_s=100)
        # A client that stops reading: the server's writes (the token warning, then the 4401
        # close frame) stay stuck in send_all, so the close is requested but not yet sent.
        slow = SlowReader(open_lockstep(h))
        await slow.handshake(f"/v1/api/ws?token={token}")
        await slow.until_welcome()
        await listener.until_pong()
        await trio.sleep(101)  # past exp: close 4401 requested
        frame = command_frame(token, "say", "after the close").decode()
        await slow.stream.send_all(slow.ws.send(TextMessage(data=frame)))
        await trio.testing.wait_all_tasks_blocked()
        heard = await listener.until_pong()
        assert not any("after the close" in json.dumps(f) for f in heard)
        assert h.app.metrics.value("frames_after_close") == 1
