"""Benchmark two mythos_rt instances sharing one world through a real nats-server (docs/NATS.md).

Usage (from the project root)::

    .venv/bin/python scripts/bench_cluster.py [--rates 200,500,1000,2000,4000] [--seconds 3]
        [--speakers 1] [--listeners 50] [--reps 3] [--store sqlite|postgres] [--parts 1,2]

It starts a throwaway nats-server on a free loopback port (``tests/nats/conftest.py``) and a
shared store: one data directory with its SQLite file (default), or a fresh database on the
PostgreSQL server ``tests/postgres.py`` finds.  Every instance is ``python -m mythos_rt serve``
with the flags of ``bench_server.py`` (login ward and game tick off, rate and chat limits lifted).

1. Cross-instance latency.  Instances A and B (``--nats-url``, ``--instance-id a`` / ``b``).
   Speakers on A say lines at a paced rate, round-robin; one listener on A and one on B sit in
   the same room.  Each line is ``bench <phase> <seq> <monotonic ns at send>``; the listener
   stamps ``time.monotonic_ns()`` as soon as its socket yields the frame (CLOCK_MONOTONIC is one
   clock for every process on the machine).  Speakers and each listener run in their own client
   process (this script, ``_client`` mode, the ``websockets`` asyncio client; a listener does
   not decode JSON, it only searches the frame for the stamp), so the two listeners never wait
   for each other or for the speakers; their CPU is reported.  Per rate: lines sent, delivered
   fraction and p50/p99/max latency on A and on B, the added latency (B - A) at p50 and p99, the
   p50/p99 of the per-line difference (the same line's latency on B minus on A), and the CPU of
   A, B, the broker and the clients as a share of one core over the phase (and A's and B's CPU
   per line said, and how busy the whole machine was: % of all its CPUs, from /proc/stat), and
   the rate the lines arrived at on each listener ("got/s": lines over the time from the first
   send to the last arrival; below the offered rate once A saturates).  A warm-up (200 lines/s
   for 1 s) comes first and is not reported.  A rate above what instance A can take shows as
   latency growing to seconds (a backlog) and "got/s" below the rate, not as lost lines.
2. Fan-out within one instance, NATS on vs off: one instance alone (``--nats-url`` or the
   in-process bus), N listeners in one room, the clients of ``bench_server.py`` in this process.
   A paced fan-out (``--paced-rate`` lines/s for ``--paced-lines`` lines: server CPU per 1,000
   deliveries at the same load) and then bench_server's unpaced fan-out (``--lines`` as fast as
   the sender can: deliveries/s).  Repetitions interleave on/off, each on a fresh server; the
   load average is recorded before each.

Exit status 1 only on a functional failure (a server or broker failing to start, a phase timing
out, out-of-order or missing lines in part 2); slow numbers and lost lines in part 1 are reported,
never fatal.  Loopback only; every loop is bounded; the script stops only the processes it
started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import bench_server as bench
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(bench.PROJECT_ROOT))  # the tests' helpers: nats-server, PostgreSQL

from tests.nats.conftest import MISSING, NatsServer, find_nats_server, running_broker
from tests.postgres import fresh_database, postgres_server

STAMP_RE = re.compile(r"bench (\w+) (\d+) (\d+)")
CLIENT_READY_TIMEOUT_S = 30.0
QUIET_S = 1.0  # a listener reports once nothing arrived for this long (or all lines did)
REPORT_MAX_S = 30.0  # a saturated instance drains its backlog meanwhile
WARMUP = ("warm", 200, 1.0)  # phase, lines/s, seconds: discarded
CHILD = "_client"
PACE_MIN_SLEEP_S = 0.001  # a speaker sends what is due, then sleeps at least this
REPORT_LIMIT_BYTES = 64 * 1024 * 1024  # one report line holds every sample of a phase


# --- client processes (this script in _client mode) ------------------------------------------


def stamped_say(phase: str, seq: int, token: str) -> str:
    content = f"bench {phase} {seq} {time.monotonic_ns()}"
    data = {"command": "say", "args": [content]}
    return json.dumps({"type": "game_command", "data": data, "csrfToken": token})


async def open_socket(url: str) -> ClientConnection:
    return await connect(
        url,
        compression=None,
        open_timeout=CLIENT_READY_TIMEOUT_S,
        close_timeout=bench.CLOSE_TIMEOUT_S,
        ping_interval=None,
        max_queue=None,
    )


async def stdin_reader() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def answer(message: dict[str, object]) -> None:
    print(json.dumps(message), flush=True)


class Listener:
    """One socket; latency samples per phase, taken as soon as the frame is yielded."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.samples: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # seq, sent, got
        self.welcome = asyncio.Event()
        self.last_at = time.monotonic()

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                now = time.monotonic_ns()
                text = raw if isinstance(raw, str) else raw.decode()
                match = STAMP_RE.search(text)
                if match is not None:
                    self.samples[match[1]].append((int(match[2]), int(match[3]), now))
                    self.last_at = time.monotonic()
                elif not self.welcome.is_set() and '"welcome"' in text:
                    self.welcome.set()

    async def report(self, phase: str, expected: int) -> dict[str, object]:
        """Wait (bounded) until ``expected`` lines of ``phase`` arrived or the socket is quiet."""
        deadline = time.monotonic() + REPORT_MAX_S
        while len(self.samples[phase]) < expected and time.monotonic() < deadline:
            if time.monotonic() - self.last_at > QUIET_S:
                break
            await asyncio.sleep(0.02)
        return {"samples": self.samples.pop(phase, []), "cpu_s": time.process_time()}


async def run_listener(url: str) -> None:
    listener = Listener(await open_socket(url))
    task = asyncio.create_task(listener.read())
    await asyncio.wait_for(listener.welcome.wait(), CLIENT_READY_TIMEOUT_S)
    answer({"ready": True})
    commands = await stdin_reader()
    async for line in commands:
        command = json.loads(line)
        if command["cmd"] != "report":
            break
        answer(await listener.report(command["phase"], command["expected"]))
    task.cancel()
    await listener.ws.close()


async def drain(ws: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def send_paced(
    sockets: Sequence[tuple[ClientConnection, str]], phase: str, rate: float, seconds: float
) -> dict[str, object]:
    """``rate * seconds`` lines, round-robin over the speakers, each stamped as it is sent."""
    total = int(rate * seconds)
    cpu0, start, sent = time.process_time(), time.monotonic(), 0
    async with asyncio.timeout(seconds * 3 + 10):
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                ws, token = sockets[sent % len(sockets)]
                await ws.send(stamped_say(phase, sent, token))
                sent += 1
            next_due = start + sent / rate  # line ``sent`` is due then; sleep until, >= 1 ms
            await asyncio.sleep(max(PACE_MIN_SLEEP_S, next_due - time.monotonic()))
    elapsed = time.monotonic() - start
    return {"sent": sent, "elapsed_s": elapsed, "cpu_s": time.process_time() - cpu0}


async def run_speakers(port: int, tokens: Sequence[str]) -> None:
    sockets = [(await open_socket(bench.ws_url(port, token)), token) for token in tokens]
    drains = [asyncio.create_task(drain(ws)) for ws, _ in sockets]
    answer({"ready": True})
    commands = await stdin_reader()
    async for line in commands:
        command = json.loads(line)
        if command["cmd"] != "run":
            break
        answer(await send_paced(sockets, command["phase"], command["rate"], command["seconds"]))
    for task in drains:
        task.cancel()
    for ws, _ in sockets:
        await ws.close()


def client_main(argv: Sequence[str]) -> int:
    role, port, *tokens = argv
    if role == "listener":
        asyncio.run(run_listener(bench.ws_url(int(port), tokens[0])))
    else:
        asyncio.run(run_speakers(int(port), tokens))
    return 0


@dataclass
class ClientProcess:
    """A client process driven by JSON lines on its stdin and stdout."""

    proc: asyncio.subprocess.Process

    async def call(self, message: dict[str, object], timeout_s: float) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read(timeout_s)

    async def read(self, timeout_s: float) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout_s)
        if not line:
            raise bench.BenchError(f"client process {self.proc.pid} exited")
        result: dict[str, object] = json.loads(line)
        return result


@contextlib.asynccontextmanager
async def client_process(
    role: str, port: int, tokens: Sequence[str]
) -> AsyncIterator[ClientProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        CHILD,
        role,
        str(port),
        *tokens,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=REPORT_LIMIT_BYTES,
    )
    client = ClientProcess(proc)
    try:
        await client.read(CLIENT_READY_TIMEOUT_S)
        yield client
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        await bench.stop_process(proc)


# --- part 1: cross-instance latency -----------------------------------------------------------


@dataclass(frozen=True)
class LatencyRow:
    rate: float
    sent: int
    achieved_rate: float
    delivered_a: float
    delivered_b: float
    a_ms: tuple[float, float, float]  # p50, p99, max
    b_ms: tuple[float, float, float]
    per_line_ms: tuple[float, float]  # p50, p99 of B - A for the same line
    took: tuple[float, float]  # lines/s delivered on A and on B, first send to last arrival
    cpu: dict[str, float]  # share of one core, per process, over the phase
    wall_s: float  # the phase: sending, then waiting for the listeners

    def cpu_us_per_line(self, process: str) -> float:
        return self.cpu[process] * self.wall_s / max(1, self.sent) * 1e6


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, every CPU, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal
    return total - idle, total


def pct(samples_s: Sequence[float], p: int) -> float:
    return bench.percentile_ms(samples_s, p) if len(samples_s) >= 2 else float("nan")


def spread(samples: dict[int, float]) -> tuple[float, float, float]:
    values = list(samples.values())
    top = max(values) * 1000 if values else float("nan")
    return pct(values, 50), pct(values, 99), top


def samples_of(report: dict[str, object]) -> list[tuple[int, int, int]]:
    samples = report["samples"]
    assert isinstance(samples, list)
    return [(int(seq), int(sent), int(got)) for seq, sent, got in samples]


def as_seconds(samples: Sequence[tuple[int, int, int]]) -> dict[int, float]:
    return {seq: (got - sent) / 1e9 for seq, sent, got in samples}


def lines_per_s(samples: Sequence[tuple[int, int, int]]) -> float:
    """Delivery rate: lines over the time from the first send to the last arrival."""
    if len(samples) < 2:
        return float("nan")
    span_ns = max(got for _, _, got in samples) - min(sent for _, sent, _ in samples)
    return len(samples) / (span_ns / 1e9)


def cpu_of(report: dict[str, object]) -> float:
    value = report["cpu_s"]
    assert isinstance(value, float | int)
    return float(value)


@dataclass
class Cluster:
    a_pid: int
    b_pid: int
    nats_pid: int
    speakers: ClientProcess
    on_a: ClientProcess
    on_b: ClientProcess
    client_cpu: dict[str, float]


async def run_rate(cluster: Cluster, phase: str, rate: float, seconds: float) -> LatencyRow:
    pids = {"A": cluster.a_pid, "B": cluster.b_pid, "nats": cluster.nats_pid}
    cpu0 = {name: bench.cpu_seconds(pid) for name, pid in pids.items()}
    busy0, total0 = machine_jiffies()
    start = time.monotonic()
    command = {"cmd": "run", "phase": phase, "rate": rate, "seconds": seconds}
    spoke = await cluster.speakers.call(command, seconds * 3 + 15)
    sent = int(spoke["sent"])  # type: ignore[call-overload]
    ask = {"cmd": "report", "phase": phase, "expected": sent}
    on_a, on_b = await asyncio.gather(
        cluster.on_a.call(ask, REPORT_MAX_S + 5), cluster.on_b.call(ask, REPORT_MAX_S + 5)
    )
    wall = time.monotonic() - start
    cpu = {name: (bench.cpu_seconds(pid) - cpu0[name]) / wall for name, pid in pids.items()}
    for name, report in (("listener A", on_a), ("listener B", on_b)):
        cpu[name] = (cpu_of(report) - cluster.client_cpu.get(name, 0.0)) / wall
        cluster.client_cpu[name] = cpu_of(report)
    busy1, total1 = machine_jiffies()
    cpu["machine"] = (busy1 - busy0) / max(1, total1 - total0)  # share of every CPU together
    cpu["speakers"] = cpu_of(spoke) / float(spoke["elapsed_s"])  # type: ignore[arg-type]
    got_a, got_b = samples_of(on_a), samples_of(on_b)
    lat_a, lat_b = as_seconds(got_a), as_seconds(got_b)
    both = [lat_b[seq] - lat_a[seq] for seq in lat_b.keys() & lat_a.keys()]
    return LatencyRow(
        rate,
        sent,
        sent / float(spoke["elapsed_s"]),  # type: ignore[arg-type]
        len(lat_a) / max(1, sent),
        len(lat_b) / max(1, sent),
        spread(lat_a),
        spread(lat_b),
        (pct(both, 50), pct(both, 99)),
        (lines_per_s(got_a), lines_per_s(got_b)),
        cpu,
        wall,
    )


def instance_command(data_dir: Path, port: int, store: Sequence[str], *extra: str) -> list[str]:
    return [*bench.mythos_command(data_dir, port), *store, *extra]


@contextlib.asynccontextmanager
async def instance(
    data_dir: Path, store: Sequence[str], *extra: str
) -> AsyncIterator[bench.Server]:
    port = bench.free_port()
    cmd = instance_command(data_dir, port, store, *extra)
    async with bench.running_server(cmd, port, banner=bench.BANNER, env=bench.server_env()) as s:
        yield s


async def latency_part(
    data_dir: Path, store: Sequence[str], nats: NatsServer, tokens: dict[str, list[str]], args: Args
) -> list[LatencyRow]:
    on_nats = ("--nats-url", nats.url)
    async with (
        instance(data_dir, store, *on_nats, "--instance-id", "a") as a,
        instance(data_dir, store, *on_nats, "--instance-id", "b") as b,
        client_process("listener", a.port, tokens["listener_a"]) as on_a,
        client_process("listener", b.port, tokens["listener_b"]) as on_b,
        client_process("speakers", a.port, tokens["speakers"]) as speakers,
    ):
        assert nats._process is not None  # the broker's pid, for its CPU
        cluster = Cluster(a.pid, b.pid, nats._process.pid, speakers, on_a, on_b, {})
        warm = await run_rate(cluster, *WARMUP)
        if warm.delivered_b < 0.99:
            print(f"  warm-up: only {warm.delivered_b:.0%} reached B", file=sys.stderr)
        rows = []
        for index, rate in enumerate(args.rates):
            print(f"  latency at {rate:,.0f} lines/s ...", file=sys.stderr, flush=True)
            rows.append(await run_rate(cluster, f"r{index}", rate, args.seconds))
        return rows


def latency_table(rows: Sequence[LatencyRow]) -> list[str]:
    def ms(values: Sequence[float]) -> str:
        return "/".join(f"{v:.2f}" if v < 10 else f"{v:.1f}" for v in values)

    head = (
        f"{'lines/s':>8} {'sent':>6} {'sent/s':>6} {'A got':>6} {'B got':>6} "
        f"{'A p50/p99/max ms':>20} {'B p50/p99/max ms':>20} {'B-A p50/p99':>12} "
        f"{'per line B-A':>14}"
    )
    lines = [head]
    for r in rows:
        added = (r.b_ms[0] - r.a_ms[0], r.b_ms[1] - r.a_ms[1])
        lines.append(
            f"{r.rate:>8,.0f} {r.sent:>6} {r.achieved_rate:>6,.0f} {r.delivered_a:>6.1%} "
            f"{r.delivered_b:>6.1%} {ms(r.a_ms):>20} {ms(r.b_ms):>20} {ms(added):>12} "
            f"{ms(r.per_line_ms):>14}"
        )
    keys = ("A", "B", "nats", "speakers", "listener A", "listener B")
    lines.append("")
    lines.append(
        f"{'lines/s':>8}{'A got/s':>9}{'B got/s':>9}  CPU, % of one core:"
        + "".join(f"{k:>11}" for k in keys)
        + f"{'A µs/line':>11}{'B µs/line':>11}{'machine %':>10}"
    )
    for r in rows:
        per_line = [r.cpu_us_per_line(k) for k in ("A", "B")]
        lines.append(
            f"{r.rate:>8,.0f}{r.took[0]:>9,.0f}{r.took[1]:>9,.0f}  {'':<19}"
            + "".join(f"{r.cpu[k] * 100:>11.0f}" for k in keys)
            + "".join(f"{v:>11.0f}" for v in per_line)
            + f"{r.cpu['machine'] * 100:>10.0f}"
        )
    return lines


# --- part 2: fan-out within one instance, NATS on vs off --------------------------------------


@dataclass(frozen=True)
class FanRow:
    mode: str
    load: tuple[float, float, float]
    paced_deliveries_per_s: float
    paced_server_ms_per_1k: float
    paced_client_ms_per_1k: float
    deliveries_per_s: float
    server_ms_per_1k: float
    client_ms_per_1k: float
    problems: tuple[str, ...]


async def paced_fan_out(
    pid: int, clients: Sequence[bench.Client], lines: int, rate: float
) -> bench.FanOut:
    """bench_server's fan-out, with the sender paced at ``rate`` lines/s."""
    sender, receivers = clients[0], clients[1:]
    await bench.settle(clients)
    for client in receivers:
        client.expect_lines(lines)
    cpu0, own0, start = bench.cpu_seconds(pid), time.process_time(), time.perf_counter()
    async with asyncio.timeout(bench.PHASE_TIMEOUT_S):
        for index in range(lines):
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            await sender.ws.send(bench.say_frame(index, sender.token))
    await bench.wait_lines(receivers)
    elapsed = time.perf_counter() - start
    kilo = lines * len(receivers) / 1000
    server_ms = (bench.cpu_seconds(pid) - cpu0) * 1000 / kilo
    client_ms = (time.process_time() - own0) * 1000 / kilo
    problems = bench.order_problems(receivers, lines)
    return bench.FanOut(kilo * 1000 / elapsed, server_ms, client_ms, problems)


async def fan_out_once(
    mode: str,
    data_dir: Path,
    store: Sequence[str],
    extra: Sequence[str],
    tokens: list[str],
    args: Args,
) -> FanRow:
    load = os.getloadavg()
    async with instance(data_dir, store, *extra) as server:
        handshake = await bench.measure_handshake(server, tokens, None)
        try:
            paced = await paced_fan_out(
                server.pid, handshake.clients, args.paced_lines, args.paced_rate
            )
            fast = await bench.measure_fan_out(server.pid, handshake.clients, args.lines)
        finally:
            await bench.close_all(handshake.clients)
    return FanRow(
        mode,
        load,
        paced.deliveries_per_s,
        paced.server_cpu_ms_per_1k,
        paced.client_cpu_ms_per_1k,
        fast.deliveries_per_s,
        fast.server_cpu_ms_per_1k,
        fast.client_cpu_ms_per_1k,
        paced.problems + fast.problems,
    )


async def fan_out_part(
    data_dir: Path, store: Sequence[str], nats: NatsServer, tokens: list[str], args: Args
) -> list[FanRow]:
    modes = (("NATS on", ("--nats-url", nats.url)), ("NATS off", ()))
    rows = []
    for rep in range(args.reps):
        for mode, extra in modes:
            print(f"  fan-out {mode}, repetition {rep + 1}/{args.reps} ...", file=sys.stderr)
            rows.append(await fan_out_once(mode, data_dir, store, extra, tokens, args))
    return rows


def fan_out_table(rows: Sequence[FanRow]) -> list[str]:
    head = (
        f"{'run':<10}{'load 1/5/15':>16}{'paced deliv/s':>15}{'srv ms/1k':>11}{'cli ms/1k':>11}"
        f"{'unpaced deliv/s':>17}{'srv ms/1k':>11}{'cli ms/1k':>11}"
    )
    lines = [head]

    def row(label: str, load: str, values: Sequence[float]) -> str:
        cells = [f"{values[0]:>15,.0f}", f"{values[1]:>11.1f}", f"{values[2]:>11.1f}"]
        cells += [f"{values[3]:>17,.0f}", f"{values[4]:>11.1f}", f"{values[5]:>11.1f}"]
        return f"{label:<10}{load:>16}" + "".join(cells)

    def values(r: FanRow) -> list[float]:
        return [
            r.paced_deliveries_per_s,
            r.paced_server_ms_per_1k,
            r.paced_client_ms_per_1k,
            r.deliveries_per_s,
            r.server_ms_per_1k,
            r.client_ms_per_1k,
        ]

    for r in rows:
        lines.append(row(r.mode, "/".join(f"{v:.2f}" for v in r.load), values(r)))
    medians = {}
    for mode in ("NATS on", "NATS off"):
        mine = [values(r) for r in rows if r.mode == mode]
        medians[mode] = [statistics.median(column) for column in zip(*mine, strict=True)]
        lines.append(row(f"median {mode.split()[1]}", "", medians[mode]))
    on, off = medians["NATS on"], medians["NATS off"]
    lines.append(
        f"NATS on vs off: unpaced deliveries/s {on[3] / off[3] - 1:+.1%}, server CPU per 1k "
        f"deliveries {on[1] / off[1] - 1:+.1%} paced, {on[4] / off[4] - 1:+.1%} unpaced"
    )
    return lines


# --- the whole run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Args:
    rates: tuple[float, ...]
    seconds: float
    speakers: int
    listeners: int
    reps: int
    paced_rate: float
    paced_lines: int
    lines: int
    store: str
    parts: tuple[int, ...]


def parse_args(argv: Sequence[str] | None) -> Args:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--rates", default="200,500,1000,2000,4000", help="lines/s, comma-separated"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per rate")
    parser.add_argument("--speakers", type=int, default=1, help="speakers on A (round-robin)")
    parser.add_argument("--listeners", type=int, default=50, help="players in the fan-out room")
    parser.add_argument("--reps", type=int, default=3, help="fan-out repetitions per mode")
    parser.add_argument("--paced-rate", type=float, default=100.0, help="fan-out lines/s")
    parser.add_argument("--paced-lines", type=int, default=300, help="paced fan-out lines")
    parser.add_argument("--lines", type=int, default=500, help="unpaced fan-out lines")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--parts", choices=("1", "2", "1,2"), default="1,2", metavar="1|2|1,2", help="which parts"
    )
    ns = parser.parse_args(argv)
    rates = tuple(float(rate) for rate in ns.rates.split(",") if rate.strip())
    if not rates or ns.speakers < 1 or ns.listeners < 2 or ns.reps < 1 or ns.seconds <= 0:
        raise SystemExit("need rates, --speakers >= 1, --listeners >= 2, --reps >= 1")
    return Args(
        rates,
        ns.seconds,
        ns.speakers,
        ns.listeners,
        ns.reps,
        ns.paced_rate,
        ns.paced_lines,
        ns.lines,
        ns.store,
        tuple(int(part) for part in ns.parts.split(",")),
    )


@contextlib.contextmanager
def shared_store(kind: str, data_dir: Path) -> Iterator[tuple[str, ...]]:
    """The CLI flags of the store both instances share (beside ``--data-dir``)."""
    if kind == "sqlite":
        yield ()
        return
    with postgres_server() as admin_url, fresh_database(admin_url) as url:
        yield ("--database-url", url)


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[NatsServer]:
    if find_nats_server() is None:
        raise bench.BenchError(MISSING)
    with running_broker(workdir) as server:
        yield server


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "?")
    return f"{os.cpu_count()} CPUs ({model}), Python {sys.version.split()[0]}"


async def run(args: Args, data_dir: Path, store: Sequence[str], nats: NatsServer) -> int:
    names = {
        "speakers": [f"S{i:04d}" for i in range(1, args.speakers + 1)],
        "listener_a": ["A0001"],
        "listener_b": ["B0001"],
    }
    fan_names = bench.player_names(args.listeners)
    every = [name for group in names.values() for name in group] + fan_names
    records = bench.add_players(data_dir, every, store)
    uids = {record["name"]: record["user_id"] for record in records}
    tokens = {group: bench.mint_tokens([uids[n] for n in ns]) for group, ns in names.items()}
    fan_tokens = bench.mint_tokens([uids[n] for n in fan_names])

    load0 = os.getloadavg()
    rows: list[LatencyRow] = []
    fans: list[FanRow] = []
    if 1 in args.parts:
        print("part 1: cross-instance latency", file=sys.stderr, flush=True)
        rows = await latency_part(data_dir, store, nats, tokens, args)
    if 2 in args.parts:
        print("part 2: fan-out, NATS on vs off", file=sys.stderr, flush=True)
        fans = await fan_out_part(data_dir, store, nats, fan_tokens, args)

    print(f"\nmachine: {machine()}; store: {args.store}; nats-server {nats.binary}")
    print(f"load average at start: {'/'.join(f'{v:.2f}' for v in load0)}")
    if rows:
        print(
            f"\n1. cross-instance latency: {args.speakers} speaker(s) and a listener on A, "
            f"a listener on B, one room; {args.seconds:g} s per rate"
        )
        print("\n".join(latency_table(rows)))
    status = 0
    if fans:
        print(
            f"\n2. fan-out on one instance: {args.listeners - 1} listeners, paced "
            f"{args.paced_lines} lines at {args.paced_rate:g}/s, then {args.lines} lines unpaced"
        )
        print("\n".join(fan_out_table(fans)))
        problems = [f"{r.mode}: {p}" for r in fans for p in r.problems]
        if problems:
            print("fan-out check: FAILED\n  " + "\n  ".join(problems[:20]))
            status = 1
        else:
            print("fan-out check: OK (every listener saw every line once, in order)")
    print(f"load average at end: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
            data_dir = Path(tmp) / "data"
            data_dir.mkdir()
            with broker(Path(tmp)) as nats, shared_store(args.store, data_dir) as store:
                return asyncio.run(run(args, data_dir, store, nats))
    except (bench.BenchError, TimeoutError) as exc:
        print(f"bench_cluster: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        sys.exit(client_main(sys.argv[2:]))
    sys.exit(main())
