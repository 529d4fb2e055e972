"""Storage that keeps every promise, end to end (issue "Storage that keeps every promise").

- A confirmed mute survives a SIGKILL in the middle of a burst, on SQLite and on PostgreSQL:
  every (muter, target) pair whose "You have muted <Name> permanently." reached a client is in the
  store afterwards, in every round.
- Two servers share one PostgreSQL database: a player added through the CLI while both run is
  admitted by either, and a mute set on one is honoured on the other.
- A player added through the CLI while a server runs can be muted by name at once.
- Operator mistakes (a data directory or database that refuses writes, a lock held elsewhere, an
  unreachable PostgreSQL) stop ``serve`` with exit code 2 and one line naming the path or URL.

The crash rounds print their counts (run with ``-s`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mythos_rt.core.writes import DeleteMute
from mythos_rt.runtime.store import Backend, open_backend
from mythos_rt.settings import Settings
from tests.e2e.conftest import (
    SECRET,
    STOP_TIMEOUT_S,
    Launcher,
    ServerProcess,
    assert_one_line_exit_2,
    cli,
    free_port,
    pipeline,
    read_burst,
    refused,
    serve_once,
    ws_connect,
)
from tests.e2e.test_e2e_game import CALM, Player, act, join, result_of
from tests.fs import read_only

# --- a SIGKILL in the middle of a burst of mutes --------------------------------------------

ROUNDS = 5
MUTERS = [f"Muter{i:02d}" for i in range(10)]
TARGETS = [f"Target{i:03d}" for i in range(250)]  # 10 x 250 = 2,500 mutes a round
WINDOW = 32  # mutes each client keeps in flight: sent, not yet answered
BURST_TIMEOUT_S = 90.0  # bounds one round's burst; generous for a loaded 2-core machine
CONFIRMED = re.compile(r"You have muted (\S+) permanently\.")
# The command limit is what this burst needs lifted; each mute is a frame too, so the frame limit
# goes with it.  Chat limits stay at their defaults (no chat is sent).
FLOOD = ("--command-rate-limit", "100000", "--frame-rate-limit", "100000", "--ward-s", "0")


@dataclass
class Burst:
    """What the clients saw in one round; the server is killed once ``kill_at`` are confirmed."""

    server: ServerProcess
    kill_at: int
    confirmed: set[tuple[str, str]] = field(default_factory=set)  # (muter id, target id)
    confirmed_at_kill: int = -1
    unexpected: list[str] = field(default_factory=list)

    def confirm(self, muter_id: str, target_id: str) -> None:
        self.confirmed.add((muter_id, target_id))
        if self.confirmed_at_kill < 0 and len(self.confirmed) >= self.kill_at:
            self.server.proc.kill()  # SIGKILL: no drain, no flush
            self.confirmed_at_kill = len(self.confirmed)


def confirmations(muter_id: str, ids: dict[str, str], burst: Burst) -> Callable[[str], None]:
    def on_reply(text: str) -> None:
        match = CONFIRMED.fullmatch(text)
        if match is None:
            burst.unexpected.append(text)
        else:
            burst.confirm(muter_id, ids[match.group(1)])

    return on_reply


async def run_burst(server: ServerProcess, kill_at: int) -> Burst:
    burst = Burst(server, kill_at)
    ids = {name: server.player_id(name) for name in TARGETS}
    mutes = [("mute", name) for name in TARGETS]
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for name in MUTERS:
            token = server.token(name)
            ws = await stack.enter_async_context(ws_connect(server.url(token=token)))
            await read_burst(ws)
            sockets.append((ws, token, server.player_id(name)))
        async with asyncio.timeout(BURST_TIMEOUT_S):
            # Every muter mutes every target, as fast as the server answers.
            await asyncio.gather(
                *(
                    pipeline(
                        ws,
                        token,
                        mutes,
                        confirmations(muter, ids, burst),
                        window=WINDOW,
                        timeout_s=BURST_TIMEOUT_S,
                    )
                    for ws, token, muter in sockets
                )
            )
    return burst


@contextlib.contextmanager
def store_of(server: ServerProcess) -> Iterator[Backend]:
    """The server's store, opened directly (the server is not running)."""
    settings = Settings(data_dir=server.data_dir, database_url=server.database_url)
    backend = open_backend(settings)
    try:
        yield backend
    finally:
        backend.close()


def present_pairs(store: Backend, muter_ids: list[str]) -> set[tuple[str, str]]:
    now = time.time()
    return {(m, t) for m in muter_ids for t in store.load_mutes(m, now).personal}


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite in the data directory, else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_every_confirmed_mute_survives_a_sigkill_mid_burst(
    launcher: Launcher, database_url: str | None
) -> None:
    pairs = len(MUTERS) * len(TARGETS)
    server = launcher.start(*FLOOD, players=[*MUTERS, *TARGETS], database_url=database_url)
    muter_ids = [server.player_id(name) for name in MUTERS]
    names = {record["player_id"]: name for name, record in server.players.items()}
    backend = "postgres" if database_url else "sqlite"
    for round_no in range(1, ROUNDS + 1):
        if round_no > 1:
            server = launcher.restart(server, *FLOOD)
        burst = asyncio.run(run_burst(server, kill_at=pairs // 2))
        assert server.proc.wait(STOP_TIMEOUT_S) == -9, server.output()
        with store_of(server) as store:
            present = present_pairs(store, muter_ids)
            # The next round starts from no mutes at all.
            store.apply([DeleteMute(muter, target) for muter, target in present])
        lost = burst.confirmed - present
        print(
            f"\n{backend} round {round_no}: {len(burst.confirmed)} confirmed"
            f" (killed at {burst.confirmed_at_kill}), {len(present)} present,"
            f" {len(lost)} lost, {pairs} in the burst"
        )
        assert burst.unexpected == []
        assert burst.confirmed_at_kill >= pairs // 2
        # At most WINDOW per client were in flight at the kill: the burst was cut, not finished.
        assert len(burst.confirmed) < pairs
        named = sorted((names[muter], names[target]) for muter, target in lost)
        assert not lost, f"round {round_no}: confirmed but not stored: {named[:5]}"


# --- two servers, one PostgreSQL database ----------------------------------------------------


def test_two_servers_share_one_postgres_database(launcher: Launcher, postgres_url: str) -> None:
    a = launcher.start(*CALM, players=["Carter", "Pickman", "Upton"], database_url=postgres_url)
    b = launcher.peer(a, *CALM)

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            # Added through A's CLI while both run: B admits the new player.
            a.add_players("Lake")
            lake = await join(stack, b, "Lake")
            assert lake.player_id == b.player_id("Lake")

            carter_a = await join(stack, a, "Carter")
            seen = await act(carter_a, [carter_a], "mute", "Pickman")
            assert result_of(seen["Carter"]) == "You have muted Pickman permanently."

            # Carter's socket admitted later on B loads the mute from the shared store.
            carter = await join(stack, b, "Carter", label="Carter on B")
            pickman = await join(stack, b, "Pickman")
            upton = await join(stack, b, "Upton")
            everyone = [carter, pickman, upton, lake]
            for player in everyone:
                await player.settle()
            seen = await act(carter, everyone, "mutes")
            assert result_of(seen["Carter on B"]) == "Muted players: Pickman (permanent)"

            seen = await act(pickman, everyone, "say", "Over", "here!")
            assert result_of(seen["Pickman"]) == "You say: Over here!"
            assert [chat_texts(seen[p.label]) for p in (upton, lake)] == [["Over here!"]] * 2
            assert seen["Carter on B"] == []
            seen = await act(upton, everyone, "say", "Marker.")
            assert chat_texts(seen["Carter on B"]) == ["Marker."]

    asyncio.run(scenario())


def chat_texts(frames: list[dict[str, object]]) -> list[object]:
    texts = []
    for frame in frames:
        data = frame.get("data")
        if frame.get("event_type") == "chat_message" and isinstance(data, dict):
            texts.append(data["original_content"])
    return texts


# --- a player added while the server runs ----------------------------------------------------


def test_a_player_added_during_play_can_be_muted_by_name(launcher: Launcher) -> None:
    server = launcher.start(*CALM, players=["Carter"])

    async def scenario() -> None:
        async with contextlib.AsyncExitStack() as stack:
            carter: Player = await join(stack, server, "Carter")
            seen = await act(carter, [carter], "mute", "Lake")
            assert result_of(seen["Carter"]) == "Player 'Lake' not found."
            server.add_players("Lake")
            seen = await act(carter, [carter], "mute", "Lake")
            assert result_of(seen["Carter"]) == "You have muted Lake permanently."

    asyncio.run(scenario())


# --- operator mistakes: exit 2, one line -----------------------------------------------------


@pytest.mark.parametrize("secret", [SECRET, None], ids=["secret-in-env", "secret-in-data-dir"])
def test_a_data_directory_that_cannot_be_created_exits_2(
    tmp_path: Path, secret: str | None
) -> None:
    # Without the secret in the environment the server writes it there first.
    parent = tmp_path / "locked"
    parent.mkdir()
    data_dir = parent / "data"
    with read_only(parent):
        code, stderr = serve_once(data_dir, secret=secret)
    assert_one_line_exit_2(code, stderr, str(data_dir))


@pytest.mark.parametrize("secret", [SECRET, None], ids=["secret-in-env", "secret-in-data-dir"])
def test_a_read_only_data_directory_exits_2(tmp_path: Path, secret: str | None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with read_only(data_dir):
        code, stderr = serve_once(data_dir, secret=secret)
    assert_one_line_exit_2(code, stderr, str(data_dir))


def created_store(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory holding a database with one player (Carter), made by the CLI."""
    data_dir = tmp_path / "data"
    cli("players", "add", "Carter", "--data-dir", str(data_dir), cwd=tmp_path)
    path = Settings(data_dir=data_dir).store_path
    assert path.exists()
    return data_dir, path


def test_a_read_only_database_file_exits_2(tmp_path: Path) -> None:
    data_dir, path = created_store(tmp_path)
    with read_only(path):
        code, stderr = serve_once(data_dir)
    assert_one_line_exit_2(code, stderr, str(path))


def test_a_database_locked_by_another_process_exits_2(tmp_path: Path) -> None:
    # The server waits out its busy timeout (5 s) before it gives up.
    data_dir, path = created_store(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        code, stderr = serve_once(data_dir)
    finally:
        holder.close()
    assert_one_line_exit_2(code, stderr, str(path), "locked")


def test_an_unreachable_postgres_exits_2_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://nobody:hunter2-secret@127.0.0.1:{port}/x"
    code, stderr = serve_once(tmp_path / "data", "--database-url", url)
    assert_one_line_exit_2(code, stderr, f"postgresql://nobody:***@127.0.0.1:{port}/x")
    assert "hunter2" not in stderr


def test_token_with_an_unreadable_secret_file_exits_2(tmp_path: Path) -> None:
    data_dir, _ = created_store(tmp_path)
    secret_file = Settings(data_dir=data_dir).secret_path
    secret_file.mkdir()  # there, but not a file anyone can read
    code, stderr = refused(tmp_path, "token", "Carter", "--data-dir", str(data_dir), secret=None)
    assert_one_line_exit_2(code, stderr, str(secret_file))


def test_token_with_postgres_and_an_unwritable_data_directory_exits_2(
    tmp_path: Path, postgres_url: str
) -> None:
    # The players live in PostgreSQL; only the new JWT secret needs the data directory.
    data_dir = tmp_path / "locked" / "data"
    data_dir.parent.mkdir()
    store = ("--data-dir", str(data_dir), "--database-url", postgres_url)
    cli("players", "add", "Carter", *store, cwd=tmp_path)
    with read_only(data_dir.parent):
        code, stderr = refused(tmp_path, "token", "Carter", *store, secret=None)
    assert_one_line_exit_2(code, stderr, str(data_dir), "MYTHOSMUD_JWT_SECRET")
