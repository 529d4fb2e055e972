"""Operator mistakes at start-up: one line on stderr naming the setting or path, exit code 2.

A real ``python -m mythos_rt`` process each.  (A data directory or database that refuses writes,
a lock held elsewhere and an unreachable PostgreSQL are in test_e2e_durability.py.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mythos_rt.runtime.tokens import verify_token
from tests.e2e.conftest import (
    AUDIENCE,
    CLI_TIMEOUT_S,
    HOST,
    SECRET,
    ServerProcess,
    assert_one_line_exit_2,
    child_env,
    cli,
    serve_once,
)


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--port", "99999", "must be 0 to 65535, not 99999"),
        ("--ops-port", "-1", "must be 0 to 65535, not -1"),
        ("--grace-s", "nan", "must be a finite number >= 0, not nan"),
        ("--ping-interval-s", "inf", "must be a finite number > 0, not inf"),
        ("--handshake-timeout-s", "0", "must be a finite number > 0, not 0.0"),
        ("--max-sockets-per-player", "0", "must be >= 1, not 0"),
        ("--chat-limit-say", "-3", "must be >= 0, not -3"),
    ],
)
def test_a_setting_out_of_range_exits_2_naming_it(
    tmp_path: Path, flag: str, value: str, expected: str
) -> None:
    code, stderr = serve_once(tmp_path / "data", flag, value)
    variable = "MYTHOS_RT_" + flag.removeprefix("--").replace("-", "_").upper()
    assert_one_line_exit_2(code, stderr, flag, variable, expected)


def test_an_environment_variable_out_of_range_exits_2_naming_it(tmp_path: Path) -> None:
    env = {**child_env(SECRET), "MYTHOS_RT_IDLE_TIMEOUT_S": "-inf"}
    done = subprocess.run(
        [sys.executable, "-m", "mythos_rt", "serve", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert_one_line_exit_2(done.returncode, done.stderr, "MYTHOS_RT_IDLE_TIMEOUT_S", "-inf")
    assert not (tmp_path / "data").exists()  # refused before anything was created


@pytest.mark.parametrize(
    ("flag", "value", "problem"),
    [("--port", "eighty", "invalid integer 'eighty'"), ("--require-csrf", "maybe", "boolean")],
)
def test_a_value_that_does_not_convert_exits_2_in_one_line(
    tmp_path: Path, flag: str, value: str, problem: str
) -> None:
    code, stderr = serve_once(tmp_path / "data", flag, value)
    assert_one_line_exit_2(code, stderr, flag, problem)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("setting", ["port", "ops_port"])
def test_a_busy_port_exits_2_naming_the_setting(
    tmp_path: Path, busy_port: int, setting: str
) -> None:
    other = "ops_port" if setting == "port" else "port"
    ports = {setting: str(busy_port), other: "0"}
    args = [arg for name, v in ports.items() for arg in ("--" + name.replace("_", "-"), v)]
    code, stderr = serve_once(tmp_path / "data", *args)
    variable = "MYTHOS_RT_" + setting.upper()
    assert_one_line_exit_2(code, stderr, f"{HOST}:{busy_port}", variable, "in use")


def test_a_host_this_machine_does_not_have_exits_2_naming_it(tmp_path: Path) -> None:
    code, stderr = serve_once(tmp_path / "data", "--host", "no-such-host.invalid")
    assert_one_line_exit_2(code, stderr, "no-such-host.invalid", "MYTHOS_RT_HOST")


def test_players_list_into_a_reader_that_has_left_ends_quietly(tmp_path: Path) -> None:
    # `players list | head -1` where head has already exited: every write fails with EPIPE.
    data_dir = tmp_path / "data"
    cli("players", "add", "Carter", "Pickman", "--data-dir", str(data_dir), cwd=tmp_path)
    command = [sys.executable, "-m", "mythos_rt", "players", "list", "--data-dir", str(data_dir)]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(SECRET)
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        code = proc.wait(timeout=CLI_TIMEOUT_S)
    assert (code, stderr) == (0, "")


def test_the_banner_token_command_works_as_printed_from_anywhere(
    server: ServerProcess, tmp_path: Path
) -> None:
    line = server.wait_for_line("get a token:")
    command = line.split(":", 1)[1].strip()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        command,
        shell=True,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env={**child_env(SECRET), "PATH": "/usr/bin:/bin"},  # no venv on the PATH
        cwd=elsewhere,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (token,) = done.stdout.split()
    verified = verify_token(
        token, SECRET, algorithms=("HS256",), audience=AUDIENCE, leeway_s=0, max_bytes=8192
    )
    listed = [
        json.loads(line) for line in cli("players", "list", *server.store_flags, cwd=tmp_path)
    ]
    armitage = next(p for p in listed if p["name"] == "Armitage")
    assert verified.user_id == armitage["user_id"]
