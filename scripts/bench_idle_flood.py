"""Idle TCP floods: can a normal player still log in, and does the server give its fds back?

Usage (from the project root)::

    .venv/bin/python scripts/bench_idle_flood.py [--connections 10000] [--logins 20]

Starts ``python -m mythos_rt serve`` on a free loopback port (temp data dir, one player), then
for each scenario opens N TCP connections that never send a byte, and while they are open logs
the player in L times in a row (connect, read the burst up to ``welcome``, close), timing each
login.  Scenarios:

- ``one address``: all N from 127.0.0.2.  Beyond MAX_HANDSHAKES_PER_IP (32) each is answered
  503 and closed at accept; the server holds at most 32 of them.
- ``spread``: N spread over many loopback addresses (127.0.1.x, 127.0.2.x, ...), at most
  MAX_HANDSHAKES_PER_IP from each, so the server really holds N silent connections until the
  handshake timeout (MAX_CONNECTIONS is raised above N, and HANDSHAKE_TIMEOUT_S to 60 s so that
  all N are held at once).  Connections are opened 1,000 at a time, each batch once the server
  has taken the previous one (beyond the kernel's listen queue SYNs are dropped and retried
  after 1, 3, 7 s, which would measure TCP's back-off rather than the server).

For each it prints how long the server took to take all N off its listen queue (the accept
storm: a login made during it waits in the same queue), the server's open fds before, with the
flood in place, and after the handshake timeout, and the login latency with the flood in place
(p50, max).  The player
logs in from 127.0.0.1.  Only loopback traffic; the script stops the server it started.  It
needs a file-descriptor limit above N + a few hundred (``ulimit -n``); it raises its own soft
limit to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import (
    BANNER,
    HOST,
    BenchError,
    connect_and_wait,
    create_players,
    free_port,
    metric_values,
    mint_tokens,
    mythos_command,
    open_fds,
    running_server,
    server_env,
)

HANDSHAKE_TIMEOUT_S = 60.0  # long enough to hold all N at once (the default is 10 s)
BATCH = 1000
ACCEPT_METRICS = ("mythos_rt_connections_opened", "mythos_rt_connections_refused")
PER_IP = 32


def spread_addresses() -> Iterator[str]:
    for b in range(1, 255):
        for c in range(1, 255):
            yield f"127.0.{b}.{c}"


def source_addresses(count: int, spread: bool) -> list[str]:
    if not spread:
        return ["127.0.0.2"] * count
    addresses = spread_addresses()
    out: list[str] = []
    while len(out) < count:
        out += [next(addresses)] * PER_IP
    return out[:count]


def silent(port: int, source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    with contextlib.suppress(BlockingIOError):
        sock.connect((HOST, port))
    return sock


async def timed_logins(port: int, token: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        client = await connect_and_wait(port, token, None)
        times.append(time.perf_counter() - started)
        await client.ws.close()
        client.reader.cancel()
    return times


def accepted_so_far(ops_port: int) -> int:
    """Connections the server has taken off its listen queue: opened plus refused at accept."""
    values = metric_values(ops_port)
    return int(sum(v for name, v in values.items() if name.startswith(ACCEPT_METRICS)))


def taken(ops_port: int, count: int) -> bool:
    return accepted_so_far(ops_port) >= count


async def wait_for(check: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)  # polling another process's counters; nothing to wait on
    return True


async def scenario(data_dir: Path, token: str, n: int, logins: int, spread: bool) -> str:
    port, ops_port = free_port(), free_port()
    flags = ["--handshake-timeout-s", str(HANDSHAKE_TIMEOUT_S), "--connect-rate-ip", "1000000"]
    flags += ["--max-connections", str(n + 1000), "--ops-port", str(ops_port)]
    flags += ["--max-handshakes-per-ip", str(PER_IP)]  # the default (bench_server lifts it)
    cmd = [*mythos_command(data_dir, port), *flags]
    async with running_server(cmd, port, banner=BANNER, env=server_env()) as server:
        before = open_fds(server.pid)
        base = accepted_so_far(ops_port)
        started = time.monotonic()
        socks: list[socket.socket] = []
        try:
            # In batches the listen queue can hold: beyond it the kernel drops SYNs and the
            # client retries after 1, 3, 7 s, which would measure TCP's back-off, not the server.
            in_place = True
            sources = source_addresses(n, spread)
            for batch in (sources[i : i + BATCH] for i in range(0, n, BATCH)):
                socks += [silent(port, source) for source in batch]
                in_place &= await wait_for(partial(taken, ops_port, base + len(socks)), 60)
            storm_s = time.monotonic() - started
            during = open_fds(server.pid)
            times = await timed_logins(port, token, logins)
            await wait_for(lambda: open_fds(server.pid) <= before, HANDSHAKE_TIMEOUT_S + 30)
            after = open_fds(server.pid)
        finally:
            for sock in socks:
                sock.close()
    if not in_place:
        raise BenchError("the server did not take every connection within 60 s")
    label = "spread over addresses" if spread else "one address"
    p50 = statistics.median(times) * 1000
    return (
        f"{label:22} {n:>7,} {storm_s:>8.1f} {before:>7} {during:>8} {after:>7}"
        f"   {p50:9.1f} {max(times) * 1000:8.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--logins", type=int, default=20)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 500:
        print(
            f"bench_idle_flood: fd limit {hard} is too low for {args.connections}", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="bench_flood_") as tmp:
        data_dir = Path(tmp)
        token = mint_tokens(create_players(data_dir, ["Flooded"]))[0]
        print(f"load average before: {os.getloadavg()}")
        print(
            f"{'flood':22} {'conns':>7} {'accept s':>8} {'fds 0':>7} {'fds held':>8}"
            f" {'fds end':>7}   {'login p50':>9} {'max ms':>8}"
        )
        try:
            for spread in (False, True):
                line = asyncio.run(scenario(data_dir, token, args.connections, args.logins, spread))
                print(line, flush=True)
        except (BenchError, TimeoutError) as exc:
            print(f"bench_idle_flood: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
