"""The comparison benchmark of issue 12: mythos_rt (from this checkout) against three baselines.

Run it with ``scripts/bench/run`` (which installs what it needs first); see README.md beside this
file for what each number means.  Scenarios: fanout, handshake, idle, rtt, mixed.  Each server is
started fresh for each scenario (and each repetition) on a free loopback port and stopped after
it; the load comes from one Node process (client/client.mjs) whose CPU is reported beside the
server's.  Progress goes to stderr; the tables and the Markdown summary to stdout; the raw
results to ``bench-results/<UTC timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import harness as h
import report

SCENARIOS = ("fanout", "handshake", "idle", "rtt", "mixed")
RESULTS_DIR = h.BENCH_DIR.parent.parent / "bench-results"
DEADLINE_S = 3.0  # a line counts as delivered when it arrives within this time, in order
FAIL_P99_MS = 1000.0  # a step "fails" (no higher rate is tried) above this, or when not all arrive
QUIET_S = 0.3
# After a join storm: a loaded machine can pause a server's backlog of notices for longer than
# QUIET_S, and a step started then measures the backlog.
QUIET_AFTER_JOIN_S = 1.0
SETTLE_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 120.0
CONCURRENCY = 200
# mythos_rt drops a handshake that takes longer than its 10 s HANDSHAKE_TIMEOUT_S, which a join
# storm of 1,000 into one room does at 200 in flight; the client tries again, like a browser.
ATTEMPTS = 10
MIXED_WEIGHTS = {"say": 40, "local": 10, "whisper": 12, "go": 12, "global": 2, "look": 16, "who": 8}
DEFAULT_LOAD = 20_000.0  # deliveries/s for the rtt scenario when the fan-out did not run


@dataclass(frozen=True)
class Plan:
    """How much of everything; ``--quick`` is a smaller plan."""

    reps: int = 3
    sizes: tuple[int, ...] = (50, 200, 1000)
    low_rate: float = 2.0  # lines/s, the first step at every size
    targets: tuple[float, ...] = (10_000, 40_000, 80_000, 120_000, 160_000)  # deliveries/s
    low_step_s: float = 3.0  # at the largest size only; the others run step_s
    step_s: float = 1.5
    handshake_players: int = 1000
    handshake_reps: int = 2
    idle_sockets: int = 5000
    warm_sockets: int = 100
    rtt_listeners: int = 200
    rtt_s: float = 5.0
    mixed_players: int = 500
    mixed_s: float = 30.0
    mixed_think_ms: float = 5000.0

    def rates(self, listeners: int) -> list[float]:
        """Lines/s of each step: the low rate, then each delivery target over ``listeners``."""
        return [self.low_rate, *(target / listeners for target in self.targets)]


QUICK = Plan(
    reps=1,
    targets=(10_000, 40_000),
    low_step_s=2.0,
    step_s=1.0,
    handshake_reps=1,
    idle_sockets=1000,
    rtt_s=3.0,
    mixed_s=10.0,
)


@dataclass
class Run:
    """What the scenarios share: the client, the cast, the plan, and the results so far."""

    client: h.NodeClient
    cast: h.Cast
    plan: Plan
    kinds: list[h.ServerKind]
    only: Sequence[str]
    results: dict[str, object] = field(default_factory=dict)
    step_id: int = 0

    def rows(self, key: str) -> list[dict[str, object]]:
        rows = self.results.setdefault(key, [])
        assert isinstance(rows, list)
        return rows


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def connect(
    run: Run, kind: h.ServerKind, port: int, group: str, players: Sequence[h.Player]
) -> dict:
    if not players:
        return {"ok": 0, "failed": 0, "elapsed_s": 0.0}
    result = await run.client.call(
        "connect",
        group=group,
        urls=kind.urls(port, players),
        concurrency=CONCURRENCY,
        timeout_s=CONNECT_TIMEOUT_S,
        attempts=ATTEMPTS,
    )
    if result["failed"]:
        progress(
            f"  {kind.name}: {result['failed']} of {len(players)} failed: {set(result['errors'])}"
        )
    return result


async def settle(run: Run, prefix: str = "", quiet_s: float = QUIET_S) -> None:
    """Wait (bounded) until the sockets of the groups named ``prefix``... receive nothing more."""
    answer = await run.client.call(
        "quiet", prefix=prefix, quiet_s=quiet_s, timeout_s=SETTLE_TIMEOUT_S
    )
    if not answer["quiet"]:
        progress(f"  still receiving after {SETTLE_TIMEOUT_S:.0f} s: {prefix or 'all'}; going on")


async def close_groups(run: Run, *groups: str) -> None:
    for group in groups:
        await run.client.call("close", group=group)


class Meter:
    """CPU seconds of the server's and the client's process trees, and wall time, since start."""

    def __init__(self, server_pid: int, client_pid: int) -> None:
        self.server_pid, self.client_pid = server_pid, client_pid
        self.server0, self.client0 = h.tree_cpu_s(server_pid), h.tree_cpu_s(client_pid)
        self.start = time.perf_counter()

    def read(self) -> tuple[float, float, float]:
        """(elapsed s, server CPU s, client CPU s)."""
        return (
            time.perf_counter() - self.start,
            h.tree_cpu_s(self.server_pid) - self.server0,
            h.tree_cpu_s(self.client_pid) - self.client0,
        )


# --- fan-out (and the round trip under load, on the same servers) ---


@dataclass
class Stage:
    """One running server with its fan-out rooms: a speaker and N listeners per size, each size
    in its own room, connected once and kept for every repetition (a join storm of 1,000 into
    one room costs every server tens of seconds, and is measured once: the handshake scenario's
    "one room" row)."""

    kind: h.ServerKind
    server: h.bs.Server
    rooms: set[int] = field(default_factory=set)

    @property
    def prefix(self) -> str:
        return f"{self.kind.name}/"

    async def room(self, run: Run, listeners: int) -> tuple[str, str]:
        """The groups (speaker, listeners) of the room with ``listeners``, connected if new."""
        speaker, crowd = f"{self.prefix}s{listeners}", f"{self.prefix}l{listeners}"
        if listeners not in self.rooms:
            players = run.cast.rooms[listeners]
            await connect(run, self.kind, self.server.port, speaker, players[:1])
            if listeners == run.plan.handshake_players and "handshake" in run.only:
                await handshake_storm(
                    run, self.kind, self.server, "one room", players[1:], 1, crowd
                )
            else:
                await connect(run, self.kind, self.server.port, crowd, players[1:])
            self.rooms.add(listeners)
            await settle(run, self.prefix, QUIET_AFTER_JOIN_S)
        return speaker, crowd


@contextlib.asynccontextmanager
async def stages(run: Run) -> AsyncIterator[list[Stage]]:
    """Every server at once (idle ones cost nothing); the client's sockets closed at the end."""
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for kind in run.kinds:
            server = await stack.enter_async_context(h.started(kind))
            out.append(Stage(kind, server))
        yield out
    for group in list((await run.client.call("counts"))["groups"]):
        await close_groups(run, group)


async def fanout_step(
    run: Run,
    server_pid: int,
    groups: tuple[str, str],
    listeners: int,
    rate: float,
    seconds: float,
    probe: dict | None = None,
) -> dict[str, object]:
    run.step_id += 1
    load = h.loadavg()
    meter = Meter(server_pid, run.client.pid)
    result = await run.client.call(
        "fanout",
        speaker=[groups[0], 0],
        listeners=groups[1],
        rate=rate,
        duration_s=seconds,
        deadline_s=DEADLINE_S,
        step=run.step_id,
        probe=probe,
    )
    elapsed, server_cpu, client_cpu = meter.read()
    kilo = max(result["received"], 1) / 1000
    return {
        **result,
        "receivers": result["listeners"],  # connected; below ``listeners`` if some never got in
        "listeners": listeners,
        "lines_per_s": rate,
        "deliveries_per_s": rate * listeners,
        "elapsed_s": elapsed,
        "server_cpu_ms_per_1k": server_cpu * 1000 / kilo,
        "server_cpu_pct": 100 * server_cpu / elapsed,
        "client_cpu_ms_per_1k": client_cpu * 1000 / kilo,
        "client_cpu_pct": 100 * client_cpu / elapsed,
        "loadavg": load,
    }


def failed(row: dict[str, object]) -> bool:
    p99 = row.get("p99_ms")
    too_slow = not isinstance(p99, float | int) or p99 > FAIL_P99_MS
    return row["delivered"] != row["expected"] or too_slow


async def fanout_size(run: Run, stage: Stage, listeners: int, rep: int) -> None:
    """The ascending steps at one size, until one fails."""
    groups = await stage.room(run, listeners)
    for step, rate in enumerate(run.plan.rates(listeners)):
        # The low rate runs longer where it is compared (the largest room): more samples for p99.
        largest = listeners == max(run.plan.sizes)
        seconds = run.plan.low_step_s if step == 0 and largest else run.plan.step_s
        row = await fanout_step(run, stage.server.pid, groups, listeners, rate, seconds)
        row.update(server=stage.kind.name, rep=rep, step=step)
        run.rows("fanout").append(row)
        progress(
            f"  fanout {stage.kind.name} rep {rep} N={listeners} {rate * listeners:,.0f}/s: "
            f"p50 {report.fmt(row['p50_ms'])} p99 {report.fmt(row['p99_ms'])} ms, "
            f"{row['delivered']}/{row['expected']}, server CPU {row['server_cpu_pct']:.0f}%, "
            f"client {row['client_cpu_pct']:.0f}%"
        )
        await settle(run, stage.prefix)
        if failed(row):
            break


async def fanout(run: Run, stages: list[Stage]) -> None:
    for rep in range(1, run.plan.reps + 1):  # interleaved: rep 1 of every server, then rep 2 ...
        for stage in stages:
            for listeners in run.plan.sizes:
                await fanout_size(run, stage, listeners, rep)


def rtt_load(run: Run) -> float:
    """Half of mythos_rt's capacity at the rtt room size (the highest rate it delivered fully
    with p99 <= 1 s), from this run's fan-out if it has one."""
    rows = [row for row in run.rows("fanout") if row["server"] == "mythos_rt"]
    size = run.plan.rtt_listeners
    best = report.best_rate(rows, "mythos_rt", size, FAIL_P99_MS) if rows else None
    return best / 2 if best else DEFAULT_LOAD


async def rtt(run: Run, stages: list[Stage]) -> None:
    """A client alone in another room sends ping (and look, to mythos_rt) frames one after
    another while the room of ``rtt_listeners`` receives at half of mythos_rt's capacity."""
    load, listeners = rtt_load(run), run.plan.rtt_listeners
    for stage in stages:
        groups = await stage.room(run, listeners)
        probe_group = f"{stage.prefix}probe"
        await connect(run, stage.kind, stage.server.port, probe_group, [run.cast.probe])
        await settle(run, stage.prefix)
        kinds = ["ping", "look"] if stage.kind.name == "mythos_rt" else ["ping"]
        probe = {"sock": [probe_group, 0], "kinds": kinds, "gap_ms": 10}
        row = await fanout_step(
            run, stage.server.pid, groups, listeners, load / listeners, run.plan.rtt_s, probe
        )
        row.update(server=stage.kind.name)
        run.rows("rtt").append(row)
        progress(f"  rtt {stage.kind.name} at {load:,.0f}/s: {row['probe']}")
        await settle(run, stage.prefix)


# --- handshakes ---


async def handshake_storm(
    run: Run,
    kind: h.ServerKind,
    server: h.bs.Server,
    layout: str,
    players: list[h.Player],
    rep: int,
    group: str,
) -> None:
    """Connect ``players`` (200 in flight) and time it until every socket has its welcome."""
    load = h.loadavg()
    meter = Meter(server.pid, run.client.pid)
    result = await connect(run, kind, server.port, group, players)
    _elapsed, server_cpu, client_cpu = meter.read()
    row = {
        "server": kind.name,
        "layout": layout,
        "rep": rep,
        "players": len(players),
        **result,
        "per_s": result["ok"] / result["elapsed_s"],
        "server_cpu_ms_per_connect": server_cpu * 1000 / max(result["ok"], 1),
        "client_cpu_pct": 100 * client_cpu / result["elapsed_s"],
        "loadavg": load,
    }
    run.rows("handshake").append(row)
    progress(
        f"  handshake {kind.name} {layout} rep {rep}: {row['per_s']:,.0f}/s "
        f"({result['retries']} retried, client CPU {row['client_cpu_pct']:.0f}%)"
    )


async def handshake_fresh(
    run: Run, kind: h.ServerKind, layout: str, players: list[h.Player], rep: int
) -> None:
    async with h.started(kind) as server:
        await handshake_storm(run, kind, server, layout, players, rep, "storm")
    await close_groups(run, "storm")


async def handshake(run: Run) -> None:
    """Spread over 10 rooms, with repetitions; into one room only when the fan-out does not
    run (its largest room is that storm, measured while it is set up)."""
    count = run.plan.handshake_players
    layouts = [("10 rooms", run.cast.ten_rooms[:count])]
    if "fanout" not in run.only:
        layouts.append(("one room", run.cast.rooms[count][1:]))
    for rep in range(1, run.plan.handshake_reps + 1):
        for layout, players in layouts:
            for kind in run.kinds:
                await handshake_fresh(run, kind, layout, players, rep)


# --- idle memory ---


async def idle_once(run: Run, kind: h.ServerKind) -> None:
    plan, players = run.plan, run.cast.fifty_rooms
    warm, idle = players[plan.idle_sockets :], players[: plan.idle_sockets]
    async with h.started(kind) as server:
        # A few sockets first, so what a server allocates once (imports, caches) is in "before".
        await connect(run, kind, server.port, "warm", warm)
        await settle(run)
        before = h.tree_rss_kib(server.pid)
        result = await connect(run, kind, server.port, "idle", idle)
        await settle(run)
        after = h.tree_rss_kib(server.pid)
    await close_groups(run, "warm", "idle")
    row = {
        "server": kind.name,
        "sockets": result["ok"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_socket": (after - before) / max(result["ok"], 1),
        "connect_s": result["elapsed_s"],
        "loadavg": h.loadavg(),
    }
    run.rows("idle").append(row)
    progress(f"  idle {kind.name}: {row['kib_per_socket']:.1f} KiB per socket")


async def idle(run: Run) -> None:
    for kind in run.kinds:
        await idle_once(run, kind)


# --- mixed (mythos_rt only) ---


async def mixed(run: Run) -> None:
    kinds = [kind for kind in run.kinds if kind.name == "mythos_rt"]
    if not kinds:
        return
    plan, kind = run.plan, kinds[0]
    players = run.cast.fifty_rooms[: plan.mixed_players]
    async with h.started(kind) as server:
        await connect(run, kind, server.port, "mixed", players)
        await settle(run)
        load = h.loadavg()
        meter = Meter(server.pid, run.client.pid)
        result = await run.client.call(
            "mixed",
            group="mixed",
            names=[player.name for player in players],
            duration_s=plan.mixed_s,
            think_ms=plan.mixed_think_ms,
            weights=MIXED_WEIGHTS,
            seed=12,
        )
        elapsed, server_cpu, client_cpu = meter.read()
    await close_groups(run, "mixed")
    run.results["mixed"] = {
        **result,
        "rooms": len({player.room for player in players}),
        "duration_s": elapsed,
        "think_ms": plan.mixed_think_ms,
        "weights": MIXED_WEIGHTS,
        "server_cpu_pct": 100 * server_cpu / elapsed,
        "client_cpu_pct": 100 * client_cpu / elapsed,
        "loadavg": load,
    }
    progress(f"  mixed: rtt {result['rtt_all']}, delivery {result['delivery_all']}")


# --- set-up and the command line ---


def raise_fd_limit() -> None:
    """5,000 sockets in one client and in one server: the children inherit the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def cast_for(data_dir: Path, plan: Plan, only: Sequence[str]) -> h.Cast:
    world = data_dir / "bench_world.json"
    world.write_text(json.dumps(h.bench_world()), encoding="utf-8")
    sizes = [
        *(plan.sizes if "fanout" in only else ()),
        *((plan.rtt_listeners,) if "rtt" in only else ()),
        *((plan.handshake_players,) if "handshake" in only else ()),
    ]
    ten = plan.handshake_players if "handshake" in only else 0
    fifty = max(
        plan.idle_sockets + plan.warm_sockets if "idle" in only else 0,
        plan.mixed_players if "mixed" in only else 0,
    )
    return h.create_cast(data_dir, world, sizes, ten, fifty)


def git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=h.BENCH_DIR,
    )
    return done.stdout.strip() or "unknown"


async def run_all(plan: Plan, only: Sequence[str], servers: Sequence[str], data_dir: Path) -> dict:
    progress(f"creating players in {data_dir} ...")
    cast = cast_for(data_dir, plan, only)
    kinds = [h.ServerKind(name, data_dir, data_dir / "bench_world.json") for name in servers]
    async with h.node_client() as client:
        run = Run(client, cast, plan, kinds, only)
        if "fanout" in only or "rtt" in only:
            async with stages(run) as staged:
                for scenario in (fanout, rtt):
                    if scenario.__name__ in only:
                        progress(f"{scenario.__name__} ...")
                        await scenario(run, staged)
        for scenario in (handshake, idle, mixed):
            if scenario.__name__ in only:
                progress(f"{scenario.__name__} ...")
                await scenario(run)
        return run.results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one rep, fewer steps (~2 min)")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument(
        "--servers", default=",".join(h.SERVER_NAMES), help="servers, comma-separated"
    )
    parser.add_argument("--reps", type=int, help="fan-out and handshake repetitions")
    ns = parser.parse_args(argv)
    ns.only = [part for part in ns.only.split(",") if part]
    ns.servers = [part for part in ns.servers.split(",") if part]
    unknown = set(ns.only) - set(SCENARIOS) | set(ns.servers) - set(h.SERVER_NAMES)
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    return ns


def plan_for(ns: argparse.Namespace) -> Plan:
    plan = QUICK if ns.quick else Plan()
    if ns.reps:
        plan = Plan(**{**asdict(plan), "reps": ns.reps, "handshake_reps": ns.reps})
    return plan


def write_results(results: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    plan = plan_for(ns)
    raise_fd_limit()
    started, load = time.perf_counter(), h.loadavg()
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        try:
            results = asyncio.run(run_all(plan, ns.only, ns.servers, Path(tmp)))
        except (h.ClientError, h.bs.BenchError, TimeoutError) as exc:
            print(f"bench: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    results["meta"] = {
        "command": " ".join(["scripts/bench/run", *(argv if argv is not None else sys.argv[1:])]),
        "plan": asdict(plan),
        "servers": ns.servers,
        "commit": git_commit(),
        "cpus": os.cpu_count(),
        "loadavg_start": load,
        "loadavg_end": h.loadavg(),
        "duration_s": time.perf_counter() - started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = write_results(results)
    print("\n".join(report.render(results)))
    print(f"\nraw results: {path}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
