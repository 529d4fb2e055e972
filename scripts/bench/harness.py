"""The benchmark's moving parts: the servers it starts, their process trees, the Node client.

The servers are started with ``bench_server.running_server`` (free loopback port, ready when the
banner or the port is there, SIGTERM then SIGKILL on the way out, only the process it started).
mythos_rt is started from this checkout (``python -m mythos_rt serve`` with the flags of
``bench_server``: rate and chat limits lifted, game tick and login ward off) on a world written
for the benchmark; the baselines are the scripts in ``servers/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # bench_server lives in scripts/

import bench_server as bs  # noqa: E402

SERVERS_DIR = BENCH_DIR / "servers"
CLIENT = BENCH_DIR / "client" / "client.mjs"
SERVER_NAMES = ("mythos_rt", "uvicorn", "trio-websocket", "picows")
CALL_TIMEOUT_S = 300.0
ROOMS = 50
RING = [f"bench_{index:02d}" for index in range(ROOMS)]


# --- the world and the players ---


def bench_world() -> dict[str, object]:
    """50 rooms in a ring (east/west), ten to a subzone, so moves always succeed and ``local``
    reaches a neighbourhood, not the world."""
    rooms = [
        {
            "id": room,
            "name": f"Bench room {index}",
            "description": "A room for the benchmark.",
            "zone": "bench",
            "subzone": f"block_{index // 10}",
            "exits": {"east": RING[(index + 1) % ROOMS], "west": RING[index - 1]},
        }
        for index, room in enumerate(RING)
    ]
    return {"name": "Benchmark ring", "start_room": RING[0], "rooms": rooms}


@dataclass(frozen=True)
class Player:
    name: str
    room: str
    mythos_token: str  # sub: the user id that mythos_rt created
    baseline_token: str  # sub: the name (the baselines have no database)


@dataclass(frozen=True)
class Cast:
    """Everyone the scenarios connect, all created in one mythos_rt data directory."""

    rooms: dict[int, list[Player]]  # listeners -> a speaker and that many listeners, own room
    ten_rooms: list[Player]  # handshakes spread over 10 rooms
    fifty_rooms: list[Player]  # idle memory, the mixed scenario (player i in room i % 50)
    probe: Player  # the round-trip probe, alone in the last room


def _players(
    data_dir: Path, world: Path, prefix: str, count: int, room_for: Callable[[int], str]
) -> list[Player]:
    names = [f"{prefix}{index:04d}" for index in range(count)]
    by_room: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        by_room.setdefault(room_for(index), []).append(name)
    user_of: dict[str, str] = {}
    for room, members in by_room.items():  # one `players add` per room
        for record in bs.add_players(data_dir, members, ["--world", str(world), "--room", room]):
            user_of[record["name"]] = record["user_id"]
    mythos = bs.mint_tokens([user_of[name] for name in names])
    baseline = bs.mint_tokens(names)
    rooms = [room_for(index) for index in range(count)]
    return [Player(*fields) for fields in zip(names, rooms, mythos, baseline, strict=True)]


def create_cast(data_dir: Path, world: Path, sizes: Sequence[int], ten: int, fifty: int) -> Cast:
    """``sizes``: the one-room sizes (listeners), each in its own room; ``ten``/``fifty``: how
    many players spread over 10 and over 50 rooms."""
    rooms = {
        size: _players(data_dir, world, f"S{index}x", size + 1, lambda _, i=index: RING[10 + i])
        for index, size in enumerate(sorted(set(sizes)))
    }
    return Cast(
        rooms=rooms,
        ten_rooms=_players(data_dir, world, "T", ten, lambda index: RING[index % 10]),
        fifty_rooms=_players(data_dir, world, "F", fifty, lambda index: RING[index % ROOMS]),
        probe=_players(data_dir, world, "Probe", 1, lambda _: RING[-1])[0],
    )


# --- the servers ---


@dataclass(frozen=True)
class ServerKind:
    name: str
    data_dir: Path
    world: Path

    def command(self, port: int) -> list[str]:
        py = sys.executable
        if self.name == "mythos_rt":
            # Warnings only, like uvicorn's `--log-level warning --no-access-log` below: at INFO
            # mythos_rt logs a line per login and per disconnect (a third of a join storm's CPU).
            quiet_log = ("--log-level", "warning")
            return bs.mythos_command(self.data_dir, port, ("--world", str(self.world), *quiet_log))
        if self.name == "uvicorn":
            app = ["-m", "uvicorn", "fastapi_app:create_app", "--factory"]
            where = ["--app-dir", str(SERVERS_DIR), "--host", bs.HOST, "--port", str(port)]
            quiet = ["--log-level", "warning", "--no-access-log", "--lifespan", "off"]
            return [py, *app, *where, "--ws", "websockets", *quiet]
        script = {"trio-websocket": "trio_ws.py", "picows": "picows_server.py"}[self.name]
        return [py, str(SERVERS_DIR / script), str(port)]

    def url(self, port: int, player: Player) -> str:
        base = f"ws://{bs.HOST}:{port}{bs.WS_PATH}"
        if self.name == "mythos_rt":  # the room is in its database
            return f"{base}?token={player.mythos_token}"
        return f"{base}?token={player.baseline_token}&room={player.room}"

    def urls(self, port: int, players: Sequence[Player]) -> list[str]:
        return [self.url(port, player) for player in players]


@contextlib.asynccontextmanager
async def started(kind: ServerKind) -> AsyncIterator[bs.Server]:
    port = bs.free_port()
    banner = bs.BANNER if kind.name == "mythos_rt" else None
    async with bs.running_server(kind.command(port), port, banner=banner, env=bs.server_env()) as s:
        yield s


# --- process trees, from /proc ---


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    return children


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn or a server may fork workers)."""
    children, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def tree_cpu_s(pid: int) -> float:
    """utime + stime of the process tree, in seconds."""
    total = 0.0
    for member in tree(pid):
        with contextlib.suppress(OSError):
            total += bs.cpu_seconds(member)
    return total


def tree_rss_kib(pid: int) -> int:
    total = 0
    for member in tree(pid):
        with (
            contextlib.suppress(OSError),
            open(f"/proc/{member}/status", encoding="ascii") as status,
        ):
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as file:
        return " ".join(file.read().split()[:3])


# --- the Node client ---


class ClientError(Exception):
    """The Node client failed or answered with an error."""


class NodeClient:
    """``node client.mjs`` with one request at a time over its stdin/stdout (JSON lines)."""

    def __init__(self, proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
        self.proc, self.tail, self.next_id = proc, tail, 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def call(self, op: str, wait_s: float = CALL_TIMEOUT_S, **params: object) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.next_id += 1
        request = {"id": self.next_id, "op": op, **params}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(wait_s):
            line = await self.proc.stdout.readline()
        if not line:
            raise ClientError("the Node client exited:\n" + "\n".join(self.tail))
        answer = json.loads(line)
        if not answer.get("ok"):
            raise ClientError(f"{op}: {answer.get('error')}")
        result: dict = answer["result"]
        return result


async def _keep_tail(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    async for raw in stream:
        tail.append(raw.decode(errors="replace").rstrip())


@contextlib.asynccontextmanager
async def node_client() -> AsyncIterator[NodeClient]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(CLIENT),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=CLIENT.parent,
        limit=16 * 1024 * 1024,
    )
    tail: deque[str] = deque(maxlen=40)
    assert proc.stderr is not None
    pump = asyncio.create_task(_keep_tail(proc.stderr, tail))
    try:
        yield NodeClient(proc, tail)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        await bs.stop_process(proc)
        pump.cancel()
