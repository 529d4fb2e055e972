"""The HTTP API's runtime shell over memory streams with the autojump clock: the seam with the
WebSocket handshake, the time limit, clients that stall or vanish (PROTOCOL.md section 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
import trio.testing

from mythos_rt.runtime.gate import handle_stream
from tests.runtime.harness import Harness, read_response, running


async def exchange(h: Harness, data: bytes) -> tuple[int, dict[str, str], Any, bool]:
    """Send raw request bytes; (status, headers, JSON body, whether the server then hung up)."""
    stream = h.open_stream()
    await stream.send_all(data)
    status, headers, body = await read_response(stream)
    await stream.send_eof()
    closed = await stream.receive_some(1) == b""
    return status, headers, json.loads(body) if body else None, closed


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def test_api_requests_and_upgrades_share_the_listener(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        status, headers, body, closed = await exchange(h, get("/v1/monitoring/health"))
        assert (status, body, closed) == (200, {"status": "healthy"}, True)
        assert headers["connection"] == "close"
        assert (await exchange(h, get("/v1/nope")))[::2] == (404, {"detail": "Not Found"})
        client = await h.connect("Armitage")  # the upgrade reaches trio-websocket intact
        await client.command("look")
        assert (await client.next_event("command_response"))["data"]["result"]


async def test_a_head_split_into_single_bytes_is_still_read(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        stream = h.open_stream()
        for byte in get("/v1/monitoring/health"):
            await stream.send_all(bytes([byte]))
            await trio.sleep(0.01)
        response = await stream.receive_some(65536)
        assert response.startswith(b"HTTP/1.1 200 ")


async def test_a_stalled_body_is_dropped_at_the_handshake_timeout(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        stream = h.open_stream()
        start = trio.current_time()
        head = b"POST /v1/command HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
        await stream.send_all(head)
        assert await stream.receive_some(65536) == b""  # hung up, no answer owed
        assert trio.current_time() - start == h.app.settings.handshake_timeout_s
        assert h.app.metrics.value("handshakes_timed_out") == 1
        assert (await exchange(h, get("/v1/monitoring/health")))[0] == 200


async def test_a_client_vanishing_mid_body_harms_nobody(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        stream = h.open_stream()
        await stream.send_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{"
        )
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert h.app.metrics.value("connection_errors") == 0
        assert (await exchange(h, get("/v1/monitoring/health")))[0] == 200


async def test_a_declared_large_body_is_refused_before_it_is_read(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        head = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n"
        status, _, body, _ = await exchange(h, head)
        assert status == 413 and "detail" in body


async def test_while_draining_health_is_503_and_other_routes_too(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        h.app.gate.draining = True
        status, _, body, _ = await exchange(h, get("/v1/monitoring/health"))
        assert (status, body["status"]) == (503, "draining")
        assert (await exchange(h, get("/v1/game/time")))[0] == 503


class ResetStream(trio.abc.HalfCloseableStream):
    """A client whose connection is reset after sending part of a request head."""

    def __init__(self) -> None:
        self.sent = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.sent:
            self.sent = True
            return b"GET /v1/api/ws HTTP/1.1\r\nHo"
        raise trio.BrokenResourceError("connection reset")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("connection reset")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_a_reset_during_the_head_is_not_an_error(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    async with running(tmp_path) as h:
        await handle_stream(h.app.gate, ResetStream())
        assert h.app.metrics.value("connection_errors") == 0
