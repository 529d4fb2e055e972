"""Soak: churning clients and stable listeners against a server subprocess, for minutes.

Usage (from the project root)::

    .venv/bin/python scripts/soak.py [--churners 150] [--listeners 20] [--minutes 5]

Starts ``python -m mythos_rt serve`` on a free loopback port (temp data dir, rate limits lifted,
login ward off, GRACE_S 5 s) with L listeners and C churners, all in the start room.

- Listeners connect once and stay for the whole soak, reading everything.
- Each churner loops: connect, read the burst, say three numbered lines (each counted as said
  only once its own echo came back, i.e. the hub accepted it), then leave: 40 % with a clean
  close, 30 % by resetting TCP (SO_LINGER 0), 30 % with ``quit``; pause 0–0.5 s; again.

At the end every listener must have heard every line said by every churner exactly once and in
order: the script prints deliveries checked, duplicates, gaps (lines missing) and lines out of
order.  Around the run it prints the server's RSS, open file descriptors, trio task count and
presences (from /metrics when the server exports them): after warm-up, at the end of the churn,
and after the grace, when only the listeners may be left ("ghosts" = presences beyond them).
Exit status 1 on any duplicate, gap, reordering or ghost.  Only loopback traffic; the script
stops the server it started.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import random
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import (
    BANNER,
    HOST,
    WS_PATH,
    BenchError,
    create_players,
    free_port,
    metric_values,
    mint_tokens,
    mythos_command,
    open_fds,
    running_server,
    server_env,
)
from websockets.asyncio.client import ClientConnection, connect

GRACE_S = 5.0
LINES_PER_VISIT = 3
PAGE_SIZE = 4096
CLK_TCK = os.sysconf("SC_CLK_TCK")
PHASE_TIMEOUT_S = 60.0


@dataclass
class Listener:
    ws: ClientConnection
    heard: dict[str, list[int]] = field(default_factory=dict)  # speaker -> line numbers

    async def listen(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                if '"chat_message"' not in raw:
                    continue
                message = json.loads(raw)["data"].get("message", "")
                if "soak " in message:
                    _, speaker, number = message.split()[-3:]
                    self.heard.setdefault(speaker, []).append(int(number))


@dataclass
class Tally:
    said: dict[str, int] = field(default_factory=dict)  # churner -> lines accepted
    visits: int = 0
    resets: int = 0
    failures: int = 0
    why: collections.Counter[str] = field(default_factory=collections.Counter)


async def keep_alive(ws: ClientConnection, token: str) -> None:
    """A ping frame every 60 s, as the web client does: a listener that only reads would be
    closed 4001 after IDLE_TIMEOUT_S (300 s)."""
    with contextlib.suppress(Exception):
        while True:
            await asyncio.sleep(60)  # a keep-alive period, by design
            await ws.send(json.dumps({"type": "ping", "csrfToken": token}))


def url(port: int, token: str) -> str:
    return f"ws://{HOST}:{port}{WS_PATH}?token={token}"


def command(text: str, token: str) -> str:
    verb, *args = text.split(" ", 1)
    data = {"command": verb, "args": args}
    return json.dumps({"type": "game_command", "data": data, "csrfToken": token})


async def until(ws: ClientConnection, needle: str) -> None:
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        async for raw in ws:
            if needle in raw:
                return


def reset(ws: ClientConnection) -> None:
    """Drop TCP with a reset: SO_LINGER 0, then close the socket under the library."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        raw = socket.socket(fileno=os.dup(sock.fileno()))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    ws.transport.abort()


async def visit(port: int, name: str, token: str, tally: Tally, rng: random.Random) -> None:
    async with connect(url(port, token), open_timeout=PHASE_TIMEOUT_S, ping_interval=None) as ws:
        await until(ws, '"welcome"')
        for _ in range(LINES_PER_VISIT):
            number = tally.said.get(name, 0)
            line = f"soak {name} {number}"
            await ws.send(command(f"say {line}", token))
            await until(ws, line + '"')  # our own echo: the hub accepted the line
            tally.said[name] = number + 1
        how = rng.random()
        if how < 0.3:
            tally.resets += 1
            reset(ws)
        elif how < 0.6:
            await ws.send(command("quit", token))
            with contextlib.suppress(Exception):
                await until(ws, "never")
    tally.visits += 1


async def churn(port: int, name: str, token: str, tally: Tally, stop_at: float) -> None:
    rng = random.Random(name)
    while time.monotonic() < stop_at:
        try:
            await visit(port, name, token, tally, rng)
        except Exception as exc:  # a refused or broken visit is counted; the soak goes on
            tally.failures += 1
            tally.why[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
        await asyncio.sleep(rng.uniform(0, 0.5))  # pacing between visits, by design


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE / 2**20


def gauge(values: dict[str, float], name: str) -> str:
    """A gauge's value, summed over its labels (``presences{state="active"}``, ...)."""
    found = [v for key, v in values.items() if key == name or key.startswith(name + "{")]
    return f"{sum(found):.0f}" if found else "-"


def snapshot(label: str, pid: int, ops_port: int) -> tuple[str, float]:
    values = metric_values(ops_port)
    presences = gauge(values, "mythos_rt_presences")
    tasks = gauge(values, "mythos_rt_trio_tasks")
    line = (
        f"{label:24} RSS {rss_mb(pid):7.1f} MiB   fds {open_fds(pid):5}   tasks {tasks:>6}"
        f"   presences {presences:>5}"
    )
    return line, float(presences) if presences != "-" else -1.0


@dataclass(frozen=True)
class Verdict:
    checked: int
    duplicates: int
    gaps: int
    reordered: int


def judge(listeners: Sequence[Listener], said: dict[str, int]) -> Verdict:
    checked = duplicates = gaps = reordered = 0
    for listener in listeners:
        for speaker, count in said.items():
            heard = listener.heard.get(speaker, [])
            checked += len(heard)
            duplicates += len(heard) - len(set(heard))
            gaps += len(set(range(count)) - set(heard))
            reordered += sum(1 for a, b in itertools.pairwise(heard) if b <= a)
    return Verdict(checked, duplicates, gaps, reordered)


async def soak(args: argparse.Namespace, data_dir: Path) -> int:
    listener_names = [f"L{i:03d}" for i in range(args.listeners)]
    churner_names = [f"C{i:03d}" for i in range(args.churners)]
    tokens = dict(
        zip(
            listener_names + churner_names,
            mint_tokens(create_players(data_dir, listener_names + churner_names)),
            strict=True,
        )
    )
    port, ops_port = free_port(), free_port()
    flags = ["--grace-s", str(GRACE_S), "--ops-port", str(ops_port)]
    flags += ["--max-sockets-per-player", "20", "--retired-session-s", "1"]
    # Every client comes from 127.0.0.1, as from behind one NAT: 150 churners handshake at
    # once, more than MAX_HANDSHAKES_PER_IP's default of 32 allows one address.
    flags += ["--max-handshakes-per-ip", "1000"]
    cmd = [*mythos_command(data_dir, port), *flags]
    async with running_server(cmd, port, banner=BANNER, env=server_env()) as server:
        listeners = []
        for name in listener_names:
            ws = await connect(url(port, tokens[name]), ping_interval=None, max_queue=None)
            listeners.append(Listener(ws))
        readers = [asyncio.create_task(listener.listen()) for listener in listeners]
        readers += [
            asyncio.create_task(keep_alive(listener.ws, tokens[name]))
            for listener, name in zip(listeners, listener_names, strict=True)
        ]
        tally = Tally()
        print(f"load average at start: {os.getloadavg()}", flush=True)
        started = time.monotonic()
        warm_up_at = started + min(30.0, args.minutes * 60 / 5)
        stop_at = started + args.minutes * 60
        churners = [
            asyncio.create_task(churn(port, name, tokens[name], tally, stop_at))
            for name in churner_names
        ]
        await asyncio.sleep(warm_up_at - time.monotonic())  # a timed phase, by design
        print(snapshot("after warm-up", server.pid, ops_port)[0], flush=True)
        await asyncio.gather(*churners)
        print(snapshot("end of churn", server.pid, ops_port)[0], flush=True)
        await asyncio.sleep(GRACE_S + 2)  # let every grace run out: what is left is a ghost
        line, presences = snapshot("after the grace", server.pid, ops_port)
        print(line, flush=True)
        for listener in listeners:
            await listener.ws.close()
        for reader in readers:
            reader.cancel()
    verdict = judge(listeners, tally.said)
    ghosts = int(presences) - len(listeners) if presences >= 0 else 0
    lines_said = sum(tally.said.values())
    print(
        f"visits {tally.visits:,} (resets {tally.resets:,}, failed {tally.failures:,})"
        f"   lines said {lines_said:,}   deliveries checked {verdict.checked:,}"
    )
    print(
        f"duplicates {verdict.duplicates}   gaps {verdict.gaps}   out of order"
        f" {verdict.reordered}   ghosts {ghosts}"
    )
    for why, count in tally.why.most_common(5):
        print(f"  failed visits: {count:,} x {why}")
    print(f"load average at end: {os.getloadavg()}")
    bad = verdict.duplicates or verdict.gaps or verdict.reordered or ghosts
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--churners", type=int, default=150)
    parser.add_argument("--listeners", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak_") as tmp:
        try:
            return asyncio.run(soak(args, Path(tmp)))
        except (BenchError, TimeoutError) as exc:
            print(f"soak: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
