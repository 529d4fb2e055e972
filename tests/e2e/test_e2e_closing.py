"""Closing handshakes over real TCP (regressions from the review fixes).

- A server-initiated close must wait for the client's close reply.  Before the fix, the server
  dropped TCP right after its own close frame; a client still sending got a reset that destroyed
  the unread close frame, and saw 1006 instead of the code it was owed.
- The signal handlers stay installed for the whole run.  Before the fix, they were removed when
  the drain began, so a second SIGTERM during the drain killed the process (exit -15).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time

import attrs
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import (
    DEFAULT_PLAYERS,
    STOP_TIMEOUT_S,
    ServerProcess,
    StartServer,
    close_of,
    raw_upgrade,
    read_burst,
    wrapped,
    ws_connect,
)

ABUSE_PINGS = 2000
ROUNDS = 3
CLOSE_TIMEOUT_S = 1.0


def test_rate_limit_abuse_close_reaches_a_client_that_keeps_sending(
    start_server: StartServer,
) -> None:
    server = start_server("--frame-rate-limit", "2", "--abuse-close-after", "5")

    async def abuse(name: str) -> tuple[int, str]:
        token = server.token(name)
        async with ws_connect(server.url(token=token)) as ws:
            await read_burst(ws)
            frame = wrapped({"type": "ping"}, token)
            # As fast as possible, never reading: the server's close arrives mid-stream.
            with contextlib.suppress(ConnectionClosed):
                for _ in range(ABUSE_PINGS):
                    await ws.send(frame)
            return await close_of(ws)

    closes = [asyncio.run(abuse(DEFAULT_PLAYERS[i])) for i in range(ROUNDS)]
    assert closes == [(1008, "Policy violation")] * ROUNDS, server.output()
    assert server.proc.poll() is None, server.output()


@attrs.frozen
class DoubleSigterm:
    close: tuple[int, str]  # what the connected client saw
    returncode: int
    exit_after_s: float  # from the second SIGTERM to the process exit


def double_sigterm(server: ServerProcess) -> DoubleSigterm:
    """SIGTERM, and once the client has its 1001 (the drain is under way), SIGTERM again.

    A second socket never reads nor answers the close, so the drain lasts 2 × close_timeout_s
    (the close watchdog): the second signal surely lands while the server is draining.
    """
    holder = raw_upgrade(server.ws_port, f"/v1/api/ws?token={server.token('Pickman')}")
    second_at = 0.0

    async def scenario() -> tuple[int, str]:
        nonlocal second_at
        async with ws_connect(server.url(token=server.token("Carter"))) as ws:
            await read_burst(ws)
            server.proc.send_signal(signal.SIGTERM)
            close = await close_of(ws)  # 1001 comes from the drain: the first signal was taken
            server.proc.send_signal(signal.SIGTERM)
            second_at = time.monotonic()
            return close

    try:
        close = asyncio.run(scenario())
        try:
            returncode = server.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit after two SIGTERMs:\n{server.output()}") from None
        exit_after_s = time.monotonic() - second_at
    finally:
        holder.close()
    return DoubleSigterm(close, returncode, exit_after_s)


def test_second_sigterm_does_not_cut_the_drain_short(start_server: StartServer) -> None:
    server = start_server("--close-timeout-s", str(CLOSE_TIMEOUT_S))
    result = double_sigterm(server)
    assert result.close == (1001, "Server shutting down"), server.output()
    # The drain ran its course (the holder's close watchdog: 2 × close_timeout_s after the
    # drain began, a few milliseconds before the second signal), then the teardown.
    assert result.exit_after_s >= 2 * CLOSE_TIMEOUT_S - 0.5, (result, server.output())


def test_second_sigterm_during_the_drain_is_absorbed_and_exits_0(
    start_server: StartServer,
) -> None:
    server = start_server("--close-timeout-s", str(CLOSE_TIMEOUT_S))
    result = double_sigterm(server)
    assert result.close == (1001, "Server shutting down"), server.output()
    assert result.returncode == 0, server.output()
    assert "Traceback" not in server.output(), server.output()
