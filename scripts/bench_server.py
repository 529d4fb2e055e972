"""Benchmark mythos_rt over loopback: handshake rate, room fan-out, ping round trip, server CPU.

Usage (from the project root)::

    .venv/bin/python scripts/bench_server.py [--players 50] [--lines 200] [--runs 3]

Each run starts its own ``python -m mythos_rt serve`` on a free loopback port (temp data dir,
players P0001..PNNNN in the start room, rate limits lifted, game tick and login ward off), then:

- handshake: all players connect at once (token in the query); time until every socket has its
  ``welcome`` frame -> connections/s, and server CPU per connection;
- fan-out: once the join storm has settled (no frame arrived for 0.2 s, bounded), the
  first player sends ``say line <i>`` L times as fast as it can; time until every
  other socket has all L ``chat_message`` events -> deliveries/s = L*(N-1)/elapsed; every
  receiver must see lines 0..L-1 exactly once and in order;
- ping: 500 sequential ``ping`` -> ``pong`` on one socket -> p50/p99 in ms;
- CPU: server process utime+stime (from /proc/<pid>/stat) and this client's CPU, per 1,000
  deliveries during the fan-out.  The machine may be shared and has few cores: if the client CPU
  per 1k deliveries approaches the elapsed time per 1k, the client is the bottleneck.

The table shows every run and the median.  Exit status 1 only on a functional failure (missing,
repeated or out-of-order chat lines, a phase timing out, or the server failing to start); slow
numbers never fail.  Only loopback traffic; every loop is bounded; the script stops the server
processes it started (SIGTERM, then SIGKILL after 15 s) and nothing else.

This module also holds helpers that other scripts import (``soak.py``, ``bench_cluster.py``,
``bench_store.py``, ``bench_idle_flood.py`` and ``bench/``: the server flags, the process
starter, the player and token set-up).  mythos_rt is imported only where tokens are minted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-only-secret-0123456789abcdef0123456789abcd"  # 48 chars, loopback only
AUDIENCE = "fastapi-users:auth"
WS_PATH = "/v1/api/ws"
HOST = "127.0.0.1"
BANNER = "mythos_rt listening on ws://"
READY_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
CLOSE_TIMEOUT_S = 2.0
PINGS = 500
SETTLE_QUIET_S = 0.2
SETTLE_MAX_CHECKS = 50
LINE_RE = re.compile(r"line (\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
UNLIMITED = "1000000"
MYTHOS_FLAGS = (
    *("--ops-port", "0", "--game-tick-s", "0", "--ward-s", "0"),
    *("--connect-rate-ip", UNLIMITED, "--connect-rate-player", UNLIMITED),
    # Every client comes from 127.0.0.1 and the join storm connects them all at once.
    *("--max-handshakes-per-ip", UNLIMITED),
    *("--frame-rate-limit", UNLIMITED, "--command-rate-limit", UNLIMITED),
    *("--chat-limit-say", UNLIMITED, "--chat-limit-local", UNLIMITED),
    *("--chat-limit-global", UNLIMITED, "--chat-limit-whisper", UNLIMITED),
)
# Frames the client must decode; everything else (occupant lists, bursts) is only counted, which
# keeps the client's own CPU out of the handshake storm as far as possible.
_WANTED = ('"welcome"', '"chat_message"', '"pong"')


class BenchError(Exception):
    """A functional failure: the benchmark cannot produce honest numbers."""


# --- one benchmark client ---


@dataclass
class Client:
    """One socket plus the state its reader task fills in."""

    ws: ClientConnection
    token: str
    welcome: asyncio.Event = field(default_factory=asyncio.Event)
    lines: list[int] = field(default_factory=list)
    expected: int = 0
    lines_done: asyncio.Event = field(default_factory=asyncio.Event)
    pongs: asyncio.Queue[float] = field(default_factory=asyncio.Queue)
    frames: int = 0
    reader: asyncio.Task[None] | None = None

    def expect_lines(self, count: int) -> None:
        self.lines.clear()
        self.expected = count
        self.lines_done.clear()

    def on_frame(self, raw: str | bytes) -> None:
        self.frames += 1
        text = raw if isinstance(raw, str) else raw.decode()
        if any(marker in text for marker in _WANTED):
            self.on_event(json.loads(text))

    def on_event(self, frame: dict[str, object]) -> None:
        kind = frame.get("event_type")
        if kind == "chat_message":
            self.on_chat(frame.get("data"))
        elif kind == "pong":
            self.pongs.put_nowait(time.perf_counter())
        elif kind == "welcome":
            self.welcome.set()

    def on_chat(self, data: object) -> None:
        message = data.get("message", "") if isinstance(data, dict) else ""
        match = LINE_RE.search(message) if isinstance(message, str) else None
        if match is None:
            return
        self.lines.append(int(match.group(1)))
        if len(self.lines) >= self.expected:
            self.lines_done.set()

    async def read_forever(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                self.on_frame(raw)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


def ws_url(port: int, token: str) -> str:
    return f"ws://{HOST}:{port}{WS_PATH}?token={token}"


async def open_client(port: int, token: str, compression: str | None) -> Client:
    ws = await connect(
        ws_url(port, token),
        compression=compression,
        open_timeout=PHASE_TIMEOUT_S,
        close_timeout=CLOSE_TIMEOUT_S,
        ping_interval=None,
        max_queue=None,
    )
    client = Client(ws, token)
    client.reader = asyncio.create_task(client.read_forever())
    return client


async def connect_and_wait(port: int, token: str, compression: str | None) -> Client:
    client = await open_client(port, token, compression)
    await client.welcome.wait()
    return client


async def close_all(clients: Sequence[Client]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S * 5):
            await asyncio.gather(*(client.close() for client in clients))


# --- frames the client sends ---


def say_frame(index: int, token: str) -> str:
    data = {"command": "say", "args": [f"line {index}"]}
    return json.dumps({"type": "game_command", "data": data, "csrfToken": token})


def ping_frame(token: str) -> str:
    return json.dumps({"type": "ping", "csrfToken": token})


# --- the server process ---


@dataclass(frozen=True)
class Server:
    port: int
    pid: int


StartServer = Callable[[], AbstractAsyncContextManager[Server]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def open_fds(pid: int) -> int:
    """File descriptors a process holds (from /proc/<pid>/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric_values(ops_port: int) -> dict[str, float]:
    """Every sample of a mythos_rt server's /metrics, keyed by its name and labels as printed
    (``mythos_rt_presences{state="active"}``)."""
    url = f"http://{HOST}:{ops_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def pump_output(
    stream: asyncio.StreamReader, tail: deque[str], banner: str | None, seen: asyncio.Event
) -> None:
    """Keep the child's pipe drained (a full pipe would block it); remember the last lines."""
    async for raw in stream:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        if banner is not None and banner in line:
            seen.set()


async def port_open(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wait_ready(
    proc: asyncio.subprocess.Process, port: int, seen: asyncio.Event | None, tail: deque[str]
) -> None:
    """Wait for the banner (``seen``) or, without one, for the port to accept connections."""
    async with asyncio.timeout(READY_TIMEOUT_S):
        while not (seen.is_set() if seen is not None else await port_open(port)):
            if proc.returncode is not None:
                raise BenchError("server exited during start-up:\n" + "\n".join(tail))
            await asyncio.sleep(0.05)


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def running_server(
    cmd: Sequence[str], port: int, *, banner: str | None, env: dict[str, str] | None = None
) -> AsyncIterator[Server]:
    """Start ``cmd``, wait until it is ready, yield it; always stop it (only this process)."""
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
        env=env,
        cwd=PROJECT_ROOT,
    )
    tail: deque[str] = deque(maxlen=40)
    seen = asyncio.Event()
    assert proc.stdout is not None
    pump = asyncio.create_task(pump_output(proc.stdout, tail, banner, seen))
    try:
        await wait_ready(proc, port, seen if banner else None, tail)
        yield Server(port, proc.pid)
    finally:
        await stop_process(proc)
        pump.cancel()


# --- the measurements ---


@dataclass(frozen=True)
class RunResult:
    connects_per_s: float
    cpu_ms_per_connect: float
    deliveries_per_s: float
    server_cpu_ms_per_1k: float
    client_cpu_ms_per_1k: float
    ping_p50_ms: float
    ping_p99_ms: float
    problems: tuple[str, ...]


@dataclass(frozen=True)
class Handshake:
    clients: list[Client]
    connects_per_s: float
    cpu_ms_per_connect: float


@dataclass(frozen=True)
class FanOut:
    deliveries_per_s: float
    server_cpu_ms_per_1k: float
    client_cpu_ms_per_1k: float
    problems: tuple[str, ...]


async def measure_handshake(
    server: Server, tokens: Sequence[str], compression: str | None
) -> Handshake:
    cpu0, start = cpu_seconds(server.pid), time.perf_counter()
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        tasks = [connect_and_wait(server.port, token, compression) for token in tokens]
        clients = list(await asyncio.gather(*tasks))
    elapsed = time.perf_counter() - start
    cpu_ms = (cpu_seconds(server.pid) - cpu0) * 1000
    return Handshake(clients, len(clients) / elapsed, cpu_ms / len(clients))


def order_problems(receivers: Sequence[Client], lines: int) -> tuple[str, ...]:
    """One line per receiver that did not see 0..lines-1 exactly once, in order."""
    expected = list(range(lines))
    bad = [(i, c) for i, c in enumerate(receivers, start=1) if c.lines != expected]
    return tuple(describe_lines(index, client.lines, lines) for index, client in bad)


def describe_lines(index: int, got: list[int], lines: int) -> str:
    missing = len(set(range(lines)) - set(got))
    out_of_order = sum(1 for a, b in itertools.pairwise(got) if b <= a)
    return (
        f"receiver {index}: got {len(got)}/{lines} lines, {missing} missing, "
        f"{out_of_order} out of order or repeated"
    )


async def send_lines(sender: Client, lines: int) -> None:
    for index in range(lines):
        await sender.ws.send(say_frame(index, sender.token))


async def wait_lines(receivers: Sequence[Client]) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(PHASE_TIMEOUT_S):
            await asyncio.gather(*(client.lines_done.wait() for client in receivers))


async def settle(clients: Sequence[Client]) -> None:
    """Wait (bounded) until no frame has arrived for a while: the join storm is over."""
    seen = -1
    for _ in range(SETTLE_MAX_CHECKS):
        total = sum(client.frames for client in clients)
        if total == seen:
            return
        seen = total
        await asyncio.sleep(SETTLE_QUIET_S)


async def measure_fan_out(pid: int, clients: Sequence[Client], lines: int) -> FanOut:
    sender, receivers = clients[0], clients[1:]
    await settle(clients)
    for client in receivers:
        client.expect_lines(lines)
    cpu0, own0, start = cpu_seconds(pid), time.process_time(), time.perf_counter()
    await send_lines(sender, lines)
    await wait_lines(receivers)
    elapsed = time.perf_counter() - start
    kilo = lines * len(receivers) / 1000
    server_ms = (cpu_seconds(pid) - cpu0) * 1000 / kilo
    client_ms = (time.process_time() - own0) * 1000 / kilo
    return FanOut(kilo * 1000 / elapsed, server_ms, client_ms, order_problems(receivers, lines))


async def ping_rtts(client: Client, count: int) -> list[float]:
    rtts: list[float] = []
    frame = ping_frame(client.token)
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        for _ in range(count):
            start = time.perf_counter()
            await client.ws.send(frame)
            rtts.append((await client.pongs.get()) - start)
    return rtts


def percentile_ms(samples: Sequence[float], pct: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[pct - 1] * 1000


async def measure_all(
    server: Server, tokens: Sequence[str], lines: int, compression: str | None
) -> RunResult:
    handshake = await measure_handshake(server, tokens, compression)
    try:
        fan = await measure_fan_out(server.pid, handshake.clients, lines)
        rtts = await ping_rtts(handshake.clients[1], PINGS)
    finally:
        await close_all(handshake.clients)
    return RunResult(
        handshake.connects_per_s,
        handshake.cpu_ms_per_connect,
        fan.deliveries_per_s,
        fan.server_cpu_ms_per_1k,
        fan.client_cpu_ms_per_1k,
        percentile_ms(rtts, 50),
        percentile_ms(rtts, 99),
        fan.problems,
    )


async def run_once(
    start: StartServer, tokens: Sequence[str], lines: int, compression: str | None
) -> RunResult:
    async with start() as server:
        return await measure_all(server, tokens, lines, compression)


# --- command line and report, shared with the baseline ---


@dataclass(frozen=True)
class BenchArgs:
    players: int
    lines: int
    runs: int


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--players", type=int, default=50, help="clients in one room (>= 2)")
    parser.add_argument("--lines", type=int, default=200, help="say lines in the fan-out")
    parser.add_argument("--runs", type=int, default=3, help="runs, each on a fresh server")


def bench_args(ns: argparse.Namespace) -> BenchArgs:
    if ns.players < 2 or ns.lines < 1 or ns.runs < 1:
        raise SystemExit("need --players >= 2, --lines >= 1, --runs >= 1")
    return BenchArgs(ns.players, ns.lines, ns.runs)


def player_names(count: int) -> list[str]:
    return [f"P{index:04d}" for index in range(1, count + 1)]


async def run_all(
    start: StartServer, tokens: Sequence[str], args: BenchArgs, compression: str | None = None
) -> list[RunResult]:
    results = []
    for index in range(args.runs):
        print(f"  run {index + 1}/{args.runs} ...", file=sys.stderr, flush=True)
        results.append(await run_once(start, tokens, args.lines, compression))
    return results


ROWS: tuple[tuple[str, str, str], ...] = (
    ("handshake", "conn/s", "connects_per_s"),
    ("server CPU per connection", "ms", "cpu_ms_per_connect"),
    ("fan-out", "deliveries/s", "deliveries_per_s"),
    ("server CPU per 1k deliveries", "ms", "server_cpu_ms_per_1k"),
    ("client CPU per 1k deliveries", "ms", "client_cpu_ms_per_1k"),
    ("ping round trip p50", "ms", "ping_p50_ms"),
    ("ping round trip p99", "ms", "ping_p99_ms"),
)


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table_lines(results: Sequence[RunResult]) -> list[str]:
    heads = [f"run {i}" for i in range(1, len(results) + 1)] + ["median"]
    lines = [f"{'metric':<30}{'unit':<14}" + "".join(f"{h:>11}" for h in heads)]
    for label, unit, attr in ROWS:
        values = [float(getattr(result, attr)) for result in results]
        cells = [*values, statistics.median(values)]
        lines.append(f"{label:<30}{unit:<14}" + "".join(f"{fmt(v):>11}" for v in cells))
    return lines


def report(title: str, args: BenchArgs, results: Sequence[RunResult]) -> int:
    """Print the table and the functional check; return the exit status."""
    print(f"\n{title}: {args.players} players, {args.lines} lines, {args.runs} runs")
    print("\n".join(table_lines(results)))
    problems = [f"run {i}: {p}" for i, r in enumerate(results, 1) for p in r.problems]
    receivers = args.players - 1
    if not problems:
        print(f"fan-out check: OK ({receivers} receivers x {args.lines} lines, in order, per run)")
        return 0
    print("fan-out check: FAILED\n  " + "\n  ".join(problems[:20]))
    return 1


# --- mythos_rt specifics ---


def add_players(
    data_dir: Path, names: Sequence[str], flags: Sequence[str] = ()
) -> list[dict[str, str]]:
    """Create the players in one ``players add`` call (``flags``: e.g. ``--database-url``);
    return their records (player_id, user_id, name, room_id), in order."""
    cmd = [sys.executable, "-m", "mythos_rt", "players", "add", *names, "--data-dir", data_dir]
    done = subprocess.run(
        [str(part) for part in [*cmd, *flags]],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
    )
    if done.returncode != 0:
        raise BenchError(f"players add failed: {done.stderr.strip()}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def create_players(data_dir: Path, names: Sequence[str]) -> list[str]:
    """Create the players in one call; return their user ids, in order."""
    return [record["user_id"] for record in add_players(data_dir, names)]


def mint_tokens(user_ids: Sequence[str]) -> list[str]:
    # Imported here: the baseline imports this module from a venv without mythos_rt.
    from mythos_rt.runtime.tokens import issue_token

    now = time.time()
    return [
        issue_token(JWT_SECRET, uid, ttl_s=3600, audience=AUDIENCE, now=now) for uid in user_ids
    ]


def server_env() -> dict[str, str]:
    return {**os.environ, "MYTHOSMUD_JWT_SECRET": JWT_SECRET}


def mythos_command(data_dir: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    serve = [sys.executable, "-m", "mythos_rt", "serve", "--data-dir", str(data_dir)]
    return [*serve, "--port", str(port), *MYTHOS_FLAGS, *extra]


def mythos_starter(data_dir: Path) -> StartServer:
    def start() -> AbstractAsyncContextManager[Server]:
        port = free_port()
        return running_server(mythos_command(data_dir, port), port, banner=BANNER, env=server_env())

    return start


def run_mythos(args: BenchArgs) -> int:
    with tempfile.TemporaryDirectory(prefix="bench_mythos_") as tmp:
        data_dir = Path(tmp)
        tokens = mint_tokens(create_players(data_dir, player_names(args.players)))
        results = asyncio.run(run_all(mythos_starter(data_dir), tokens, args))
    return report("mythos_rt (trio + trio-websocket)", args, results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_common_args(parser)
    args = bench_args(parser.parse_args(argv))
    try:
        return run_mythos(args)
    except (BenchError, TimeoutError) as exc:
        print(f"bench_server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
