"""End-to-end fixtures: a real ``python -m mythos_rt`` process, real sockets, another client.

The server runs as a subprocess on free loopback ports.  Tests are plain sync functions that call
``asyncio.run(scenario())`` and talk to it with the ``websockets`` asyncio client, so client and
server share no WebSocket code.  Every wait is bounded; every process and socket is closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from mythos_rt.runtime.tokens import issue_token

HOST = "127.0.0.1"
SECRET = "e2e-test-secret-" + "k" * 32  # 48 characters
AUDIENCE = "fastapi-users:auth"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
FRAME_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
DEFAULT_PLAYERS = ("Carter", "Pickman", "Upton", "Dyer", "Danforth")
BANNER = "mythos_rt listening on ws://"
Frame = dict[str, Any]


def free_port() -> int:
    """A port nobody listens on right now (bind 0, read, close)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(secret: str | None) -> dict[str, str]:
    """The environment of a CLI child: no stray MYTHOS_RT_* settings, the test secret if given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYTHOS_RT_")}
    env.pop("MYTHOSMUD_JWT_SECRET", None)
    if secret is not None:
        env["MYTHOSMUD_JWT_SECRET"] = secret
    return env


def run_cli(*args: str, cwd: Path, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mythos_rt ARGS`` to completion, whatever its exit code (a process still
    running after CLI_TIMEOUT_S, such as a server that started, is killed and the test fails)."""
    return subprocess.run(
        [sys.executable, "-m", "mythos_rt", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=child_env(secret),
        cwd=cwd,
        check=False,
    )


def cli(*args: str, cwd: Path, secret: str | None = SECRET) -> list[str]:
    """Run ``python -m mythos_rt ARGS`` to completion; return its stdout lines."""
    result = run_cli(*args, cwd=cwd, secret=secret)
    assert result.returncode == 0, f"{args} exited {result.returncode}: {result.stderr}"
    return result.stdout.splitlines()


def refused(cwd: Path, *argv: str, secret: str | None = SECRET) -> tuple[int, str]:
    """Run ``python -m mythos_rt ARGV`` expecting a refusal; its exit code and stderr."""
    done = run_cli(*argv, cwd=cwd, secret=secret)
    return done.returncode, done.stderr


def serve_once(data_dir: Path, *args: str, secret: str | None = SECRET) -> tuple[int, str]:
    ports = ("--port", "0", "--ops-port", "0")
    return refused(
        data_dir.parent, "serve", "--data-dir", str(data_dir), *ports, *args, secret=secret
    )


def assert_one_line_exit_2(code: int, stderr: str, *names: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    for name in names:
        assert name in lines[0], lines[0]


def mint_token(
    user_id: str,
    *,
    ttl_s: float = 3600,
    secret: str = SECRET,
    audience: str = AUDIENCE,
    now: float | None = None,
) -> str:
    # Rounded up: issue_token truncates exp to whole seconds, which would otherwise cut up to a
    # second off a short-lived token (iat a fraction ahead is within the 10 s leeway).
    issued_at = math.ceil(time.time()) if now is None else now
    return issue_token(secret, user_id, ttl_s=ttl_s, audience=audience, now=issued_at)


class ServerProcess:
    """A running ``python -m mythos_rt`` child with its ports, players and captured output."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        data_dir: Path,
        ws_port: int,
        ops_port: int,
        log_path: Path,
        players: dict[str, Frame],
        store_args: tuple[str, ...] = (),
    ) -> None:
        self.proc = proc
        self.data_dir = data_dir
        self.store_args = store_args  # ("--database-url", URL) for PostgreSQL, else empty
        self.ws_port = ws_port
        self.ops_port = ops_port
        self.log_path = log_path
        self.players = players
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        # stdout is read continuously, so the child can never block on a full pipe.
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/v1/api/ws"

    @property
    def ops_url(self) -> str:
        return f"http://{HOST}:{self.ops_port}"

    def url(self, path: str = "/v1/api/ws", **query: str) -> str:
        suffix = f"?{urlencode(query)}" if query else ""
        return f"ws://{HOST}:{self.ws_port}{path}{suffix}"

    def token(self, name: str, ttl_s: float = 3600) -> str:
        return mint_token(self.players[name]["user_id"], ttl_s=ttl_s)

    def player_id(self, name: str) -> str:
        player_id: str = self.players[name]["player_id"]
        return player_id

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL database this server uses; None for SQLite in its data directory."""
        return self.store_args[1] if self.store_args else None

    @property
    def store_flags(self) -> tuple[str, ...]:
        """The CLI flags that reach this server's store (data dir, database URL if any)."""
        return ("--data-dir", str(self.data_dir), *self.store_args)

    def add_players(self, *names: str) -> dict[str, Frame]:
        """``players add NAMES`` through the CLI into this server's store (it may be running);
        the new players are remembered for :meth:`token` and returned by name."""
        added = cli("players", "add", *names, *self.store_flags, cwd=self.data_dir.parent)
        records = {r["name"]: r for r in map(json.loads, added)}
        self.players.update(records)
        return records

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for_line(self, needle: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """The first stdout line containing ``needle``; fails with the output after the timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = next((line for line in self.lines if needle in line), None)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "exited" if self._eof else f"not seen after {timeout_s} s"
                    pytest.fail(f"{needle!r} {why}; output:\n{self.output()}")
                self._changed.wait(remaining)

    def output(self) -> str:
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "stdout:\n" + "\n".join(self.lines) + "\nstderr (tail):\n" + log[-4000:]

    def stop(self) -> int:
        """SIGTERM, bounded wait (then kill); close the pipe; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)
        self._reader.join(STOP_TIMEOUT_S)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode


StartServer = Callable[..., ServerProcess]


class Launcher:
    """Starts servers under ``base_dir`` and stops every one of them in :meth:`stop_all`."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.started: list[ServerProcess] = []

    def start(
        self,
        *extra_args: str,
        players: Sequence[str] = DEFAULT_PLAYERS,
        command: Sequence[str] = ("serve",),
        secret: str | None = SECRET,
        database_url: str | None = None,
    ) -> ServerProcess:
        """Create ``players`` (one user each), start the server on free ports, await its banner.

        ``command=()`` runs bare ``python -m mythos_rt`` with only the data dir and ports;
        ``secret=None`` leaves MYTHOSMUD_JWT_SECRET out of the environment;
        ``database_url`` puts the store (players included) in that PostgreSQL database.
        """
        n, base = len(self.started), self.base_dir
        data_dir = base / f"data{n}"
        store_args = ("--database-url", database_url) if database_url else ()
        records: dict[str, Frame] = {}
        if players:
            flags = ("--data-dir", str(data_dir), *store_args)
            added = cli("players", "add", *players, *flags, cwd=base)
            records = {r["name"]: r for r in map(json.loads, added)}
        return self._spawn(data_dir, records, f"server{n}", extra_args, command, secret, store_args)

    def restart(
        self, old: ServerProcess, *extra_args: str, same_ports: bool = False
    ) -> ServerProcess:
        """A new process on ``old``'s data directory (same store and players), on new ports,
        or on ``old``'s ports (``same_ports``, for clients that reconnect; ``old`` must have
        stopped)."""
        n = len(self.started)
        name = f"server{n}"
        ports = (old.ws_port, old.ops_port) if same_ports else None
        return self._spawn(
            old.data_dir, old.players, name, extra_args, ("serve",), SECRET, old.store_args, ports
        )

    def peer(self, old: ServerProcess, *extra_args: str) -> ServerProcess:
        """A second instance beside ``old`` on the same PostgreSQL database (and players), with
        its own data directory and ports; both run at once."""
        assert old.store_args, "only a shared database can hold two running instances"
        n = len(self.started)
        data_dir = self.base_dir / f"data{n}"
        return self._spawn(
            data_dir, old.players, f"server{n}", extra_args, ("serve",), SECRET, old.store_args
        )

    def _spawn(
        self,
        data_dir: Path,
        records: dict[str, Frame],
        name: str,
        extra_args: Sequence[str],
        command: Sequence[str],
        secret: str | None,
        store_args: tuple[str, ...] = (),
        ports: tuple[int, int] | None = None,
    ) -> ServerProcess:
        base = self.base_dir
        ws_port, ops_port = ports or (free_port(), free_port())
        args = [*command, "--data-dir", str(data_dir), *store_args, "--port", str(ws_port)]
        args += ["--ops-port", str(ops_port)]
        if command:
            args += ["--game-tick-s", "0", "--connect-rate-ip", "100000"]
            args += ["--connect-rate-player", "100000"]
        log_path = base / f"{name}.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mythos_rt", *args, *extra_args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=child_env(secret),
                cwd=base,
            )
        server = ServerProcess(proc, data_dir, ws_port, ops_port, log_path, records, store_args)
        self.started.append(server)
        server.wait_for_line(BANNER)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts (and restarts) servers; stops every one of them after the test."""
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture
def start_server(launcher: Launcher) -> StartServer:
    """Factory: ``start_server(*extra_serve_args, players=..., command=..., secret=...)``."""
    return launcher.start


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A server with the default settings of the brief and DEFAULT_PLAYERS."""
    return start_server()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for a module's tests that leave no lasting state (refused handshakes)."""
    launcher = Launcher(tmp_path_factory.mktemp("e2e_shared"))
    yield launcher.start()
    launcher.stop_all()


# --- WebSocket client helpers -------------------------------------------------------------------


def ws_connect(url: str, **kwargs: Any) -> connect:
    """The websockets asyncio client, loopback-only and bounded."""
    options: dict[str, Any] = {
        "proxy": None,
        "open_timeout": FRAME_TIMEOUT_S,
        "close_timeout": FRAME_TIMEOUT_S,
        "compression": None,
        "max_queue": 1024,
    }
    return connect(url, **{**options, **kwargs})


async def recv_frame(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> Frame:
    raw = await asyncio.wait_for(ws.recv(), timeout_s)
    frame: Frame = json.loads(raw)
    return frame


async def next_event(
    ws: ClientConnection, event_type: str, timeout_s: float = FRAME_TIMEOUT_S
) -> Frame:
    """Skip frames until an event of this type arrives."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = await recv_frame(ws, timeout_s)
            if frame.get("event_type") == event_type:
                return frame


async def read_burst(ws: ClientConnection) -> list[Frame]:
    """The connect burst: every frame up to and including ``welcome``."""
    frames: list[Frame] = []
    async with asyncio.timeout(FRAME_TIMEOUT_S):
        while not frames or frames[-1].get("event_type") != "welcome":
            frames.append(await recv_frame(ws))
    return frames


async def close_of(ws: ClientConnection, timeout_s: float = FRAME_TIMEOUT_S) -> tuple[int, str]:
    """Read until the server closes; the close code and reason it sent (1006: none)."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        if exc.rcvd is None:
            return 1006, ""
        return exc.rcvd.code, exc.rcvd.reason


def wrapped(inner: Frame, token: str) -> str:
    """A frame as the MythosMUD web client sends it: inner JSON as a string, CSRF outside."""
    inner = {**inner, "timestamp": datetime.now(UTC).isoformat()}
    outer = {"message": json.dumps(inner), "timestamp": int(time.time() * 1000), "csrfToken": token}
    return json.dumps(outer)


async def send_command(ws: ClientConnection, token: str, command: str, *args: str) -> None:
    inner = {"type": "game_command", "data": {"command": command, "args": list(args)}}
    await ws.send(wrapped(inner, token))


async def pipeline(
    ws: ClientConnection,
    token: str,
    commands: Iterable[Sequence[str]],
    on_reply: Callable[[str], None],
    *,
    window: int,
    timeout_s: float = FRAME_TIMEOUT_S,
) -> int:
    """Send ``commands`` (each ``(command, *args)``) with up to ``window`` of them unanswered.

    Each ``command_response`` text goes to ``on_reply`` as it arrives and lets the next command
    go out.  Returns the number of replies, once every command is answered or the server has
    closed the socket (a reply that never comes fails after ``timeout_s``).
    """
    waiting = iter(commands)
    sent = answered = 0
    with contextlib.suppress(ConnectionClosed):
        for command in itertools.islice(waiting, window):
            await send_command(ws, token, *command)
            sent += 1
        while answered < sent:
            frame = await recv_frame(ws, timeout_s)
            if frame.get("event_type") != "command_response":
                continue
            answered += 1
            on_reply(frame["data"]["result"])
            following = next(waiting, None)
            if following is not None:
                await send_command(ws, token, *following)
                sent += 1
    return answered


async def ping_pong(ws: ClientConnection, token: str) -> Frame:
    await ws.send(wrapped({"type": "ping"}, token))
    return await next_event(ws, "pong")


def http_get(url: str, timeout_s: float = FRAME_TIMEOUT_S) -> tuple[int, str]:
    """A plain GET without proxies; (status, body text)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def raw_upgrade(port: int, target: str) -> socket.socket:
    """A WebSocket upgrade by hand over a plain socket with a tiny receive buffer.

    No frame is read: whatever the server sends next stays in the kernel, so a test can play
    a reader that stops reading, or vanish with a reset.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server's writes back up
        sock.settimeout(FRAME_TIMEOUT_S)
        sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(1)  # byte by byte: leave the first frames unread in the kernel
            assert chunk, f"closed during the upgrade: {response!r}"
            response += chunk
        assert response.startswith(b"HTTP/1.1 101"), response
        return sock
    except BaseException:
        sock.close()
        raise
