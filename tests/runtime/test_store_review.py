"""Regressions from the storage review: races between the store writer, the gate and the hub."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
import trio.testing

from mythos_rt.__main__ import main
from mythos_rt.core.commands.channels import GLOBALLY_MUTED
from mythos_rt.core.writes import SaveRoom
from mythos_rt.runtime.store import StoreError, TransientStoreError, postgres
from mythos_rt.runtime.store.postgres import PostgresBackend
from tests.runtime.harness import Client, Harness, running
from tests.runtime.test_social_runtime import connect_all, result


def hold_after_mute_load(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> tuple[trio.Event, trio.Event]:
    """Handshakes stop right after reading the player's mutes, until ``release`` is set."""
    writer = h.app.store_writer
    original = writer.read_after_writes
    loaded, release = trio.Event(), trio.Event()

    async def held(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        value = await original(fn, *args, **kwargs)
        # The gate reads the player and their mutes in one call; the telnet login, apart.
        if getattr(fn, "__name__", "") in {"load_mutes", "_with_mutes"}:
            loaded.set()
            await release.wait()
        return value

    monkeypatch.setattr(writer, "read_after_writes", held)
    return loaded, release


async def connect_held(h: Harness, name: str, release: trio.Event) -> Client:
    """Connect ``name`` while the handshake is held; returns once it is admitted."""
    clients: list[Client] = []

    async def connect() -> None:
        clients.append(await h.connect(name))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(connect)
        await release.wait()
    return clients[0]


@pytest.mark.parametrize("other_socket", [False, True])
async def test_a_mute_committed_between_the_mute_load_and_admission_is_not_lost(
    tmp_path: Path,
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    other_socket: bool,
) -> None:
    """An admin globally mutes Wilmarth while Wilmarth's handshake is between reading its mutes
    and being admitted.  The admin was told the mute is in force, so Wilmarth must not speak.
    (With ``other_socket``, Wilmarth's previous presence lives until just before admission.)"""
    async with running(tmp_path, grace_s=0.0) as h:
        (armitage,) = await connect_all(h, "Armitage")
        old = await h.connect("Wilmarth") if other_socket else None
        loaded, release = hold_after_mute_load(h, monkeypatch)
        async with trio.open_nursery() as nursery:

            async def mute_then_release() -> None:
                await loaded.wait()
                await armitage.command("mute_global", "Wilmarth")
                await result(armitage, "You have globally muted Wilmarth permanently.")
                if old is not None:
                    await old.ws.aclose()  # the old presence ends before the new one starts
                    await trio.testing.wait_all_tasks_blocked()
                    assert h.app.hub.presences.get(h.players["Wilmarth"].player_id) is None
                release.set()

            nursery.start_soon(mute_then_release)
            wilmarth = await connect_held(h, "Wilmarth", release)
        await wilmarth.command("say", "can you hear me")
        frames = await wilmarth.until_pong()
        replies = [f["data"]["result"] for f in frames if f.get("event_type") == "command_response"]
        assert replies == [GLOBALLY_MUTED]


def test_a_postgres_write_blocked_by_another_clients_lock_fails_transiently(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's session holding a row lock (or another instance stuck mid-transaction):
    SQLite gives up after its busy timeout and the writer retries, withdraws overdue
    confirmations and reports unhealthy.  PostgreSQL waited forever: no confirmation, no
    withdrawal, readiness green, every handshake stuck behind the marker."""
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_MS", 100)
    backend = PostgresBackend.open(postgres_url)
    try:
        (player,) = backend.add_players(["Lake"], room_id="start")
        outcome: list[BaseException | None] = []

        def write() -> None:
            try:
                backend.apply([SaveRoom(player.player_id, "elsewhere")])
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        with psycopg.connect(postgres_url) as blocker:  # a transaction, left open
            blocker.execute("SELECT 1 FROM players WHERE id = %s FOR UPDATE", (player.player_id,))
            thread = threading.Thread(target=write)
            thread.start()
            thread.join(30)
            blocked = thread.is_alive()
        thread.join()
    finally:
        backend.close()
    assert not blocked, "the write waited on the lock for 30 s"
    [error] = outcome
    assert isinstance(error, TransientStoreError)


def test_postgres_without_psycopg_is_a_clear_start_up_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """psycopg is an optional extra: a DATABASE_URL without it names the extra and exits 2 (CLI
    and server), instead of a ModuleNotFoundError traceback."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    monkeypatch.delitem(sys.modules, "mythos_rt.runtime.store.postgres", raising=False)
    environ = {
        "MYTHOS_RT_DATA_DIR": str(tmp_path),
        "MYTHOS_RT_DATABASE_URL": "postgresql://someone:hunter2@127.0.0.1:1/nowhere",
    }
    assert main(["players", "list"], environ=environ) == 2
    err = capsys.readouterr().err
    assert "mythos_rt[postgres]" in err and "hunter2" not in err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://someone@127.0.0.1:1/nowhere?password=hunter2",
        "postgresql://127.0.0.1:1/nowhere?sslmode=disable&password=hunter2&user=someone",
    ],
)
def test_postgres_errors_never_show_a_password_given_in_the_query_string(url: str) -> None:
    """libpq also takes the password as a query parameter: the operator's error line and logs
    must not show it there either."""
    with pytest.raises(StoreError) as raised:
        PostgresBackend.open(url)
    assert "127.0.0.1:1" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def terminate_sessions(postgres_url: str) -> int:
    """What a PostgreSQL restart, idle_session_timeout or a NAT dropping idle flows does to the
    backend's idle pooled connections."""
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_postgres_pooled_connections_killed_while_idle_are_replaced_not_reported(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every idle pooled connection was dead after a server restart, and each failed its next
    call: readers (a handshake, a name look-up) failed and the writer reported an outage
    (ERROR, readiness 503, confirmations refused) though the database was up again."""
    monkeypatch.setattr(postgres, "IDLE_CHECK_S", 0.0)
    backend = PostgresBackend.open(postgres_url)
    try:
        (lake,) = backend.add_players(["Lake"], room_id="start")
        assert terminate_sessions(postgres_url) >= 1
        assert backend.find_player_by_name("Lake") == lake
        assert terminate_sessions(postgres_url) >= 1
        backend.apply([SaveRoom(lake.player_id, "elsewhere")])
        record = backend.get_player(lake.player_id)
        assert record is not None and record.room_id == "elsewhere"
    finally:
        backend.close()


async def test_a_move_made_between_the_handshakes_reads_and_admission_is_not_undone(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wilmarth's second tab connects while the first walks north and closes, ending the
    presence before the second is admitted: the new presence starts where Wilmarth stands."""
    async with running(tmp_path, grace_s=0.0) as h:
        old = await h.connect("Wilmarth")
        loaded, release = hold_after_mute_load(h, monkeypatch)
        async with trio.open_nursery() as nursery:

            async def walk_then_release() -> None:
                await loaded.wait()
                await old.command("north")
                north = (await result(old, "You go north."))["data"]["room_id"]
                rooms.append(north)
                await old.ws.aclose()
                await trio.testing.wait_all_tasks_blocked()
                assert h.app.hub.presences.get(h.players["Wilmarth"].player_id) is None
                release.set()

            rooms: list[str] = []
            nursery.start_soon(walk_then_release)
            wilmarth = await connect_held(h, "Wilmarth", release)
        state = next(f for f in wilmarth.received if f.get("event_type") == "game_state")
        assert state["room_id"] == rooms[0]
