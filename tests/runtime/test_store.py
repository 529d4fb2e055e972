"""The store contract: every backend passes the same suite (SQLite file, real PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from mythos_rt.core.writes import (
    DeleteBan,
    DeleteGlobalMute,
    DeleteMute,
    SaveRoom,
    SetBan,
    SetGlobalMute,
    SetMute,
)
from mythos_rt.runtime.store import (
    Backend,
    DuplicateName,
    InvalidInvite,
    MuteRecords,
    PermanentStoreError,
    PlayerRecord,
    Store,
    StoreError,
    TransientStoreError,
    ensure_demo_players,
)
from mythos_rt.runtime.store.base import SqlBackend
from mythos_rt.runtime.store.postgres import PostgresBackend
from mythos_rt.runtime.store.sqlite import SqliteBackend
from tests.fs import read_only

ROOM = "earth_arkhamcity_campus_quad"
OTHER_ROOM = "earth_arkhamcity_campus_library_hall"
Opener = Callable[[], Backend]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.sqlite3"


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[Opener]:
    """Opens another backend on the same database each time it is called."""
    opened: list[Backend] = []
    if request.param == "sqlite":
        location: object = db_path
    else:
        location = request.getfixturevalue("postgres_url")

    def opener() -> Backend:
        backend: Backend
        if isinstance(location, Path):
            backend = SqliteBackend.open(location)
        else:
            backend = PostgresBackend.open(str(location))
        opened.append(backend)
        return backend

    yield opener
    for backend in opened:
        backend.close()


@pytest.fixture
def store(open_store: Opener) -> Backend:
    return open_store()


def count_rows(store: Backend, table: str) -> int:
    assert isinstance(store, SqlBackend)
    with store._connection() as conn:
        count: int = store._execute(conn, f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


def sqlite_journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return mode


def store_names(records: list[PlayerRecord]) -> list[str]:
    return [record.name for record in records]


def test_sqlite_open_creates_parent_dirs_and_uses_wal(db_path: Path) -> None:
    SqliteBackend.open(db_path).close()
    assert db_path.is_file()
    assert sqlite_journal_mode(db_path) == "wal"


def test_add_players_returns_fresh_records(store: Backend) -> None:
    carter, pickman = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    assert (carter.name, pickman.name) == ("Carter", "Pickman")
    assert carter.user_id != pickman.user_id
    assert carter.player_id != pickman.player_id
    uuid.UUID(carter.player_id)
    uuid.UUID(carter.user_id)
    assert carter.room_id == ROOM
    assert carter.level == 1
    assert not carter.is_admin
    assert not carter.deleted


def test_added_players_are_listed_oldest_first(store: Backend) -> None:
    first = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    second = store.add_players(["Upton"], room_id=ROOM, is_admin=True)
    assert store.list_players() == first + second
    assert store.list_players()[2].is_admin


def test_add_player_keeps_the_name_as_given(store: Backend) -> None:
    store.add_players(["deLapoer"], room_id=ROOM)
    found = store.find_player_by_name("DELAPOER")
    assert found is not None
    assert found.name == "deLapoer"


def test_find_player_by_name_is_case_insensitive(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    assert store.find_player_by_name("carter") == carter
    assert store.find_player_by_name("CARTER") == carter
    assert store.find_player_by_name("Pickman") is None


@pytest.mark.parametrize("taken", ["Carter", "carter", "CARTER"])
def test_duplicate_name_rolls_back_the_whole_batch(store: Backend, taken: str) -> None:
    store.add_players(["Carter"], room_id=ROOM)
    with pytest.raises(DuplicateName, match=f"Player name '{taken}' is taken"):
        store.add_players(["Pickman", taken, "Upton"], room_id=ROOM)
    assert [p.name for p in store.list_players()] == ["Carter"]
    assert count_rows(store, "users") == 1


def test_duplicate_name_within_one_batch_is_refused(store: Backend) -> None:
    with pytest.raises(DuplicateName, match="Player name 'pickman' is taken"):
        store.add_players(["Pickman", "pickman"], room_id=ROOM)
    assert store.list_players() == []


@pytest.mark.parametrize(
    "name", ["", "1abc", "_abc", "a b", "a" * 33, "Ärmitage", "name!", "-dash"]
)
def test_invalid_names_are_refused(store: Backend, name: str) -> None:
    with pytest.raises(StoreError, match="Invalid player name"):
        store.add_players(["Fine", name], room_id=ROOM)
    assert store.list_players() == []


def test_valid_name_edge_cases(store: Backend) -> None:
    names = ["A", "a" * 32, "Zed_the-3rd"]
    assert [p.name for p in store.add_players(names, room_id=ROOM)] == names


def test_user_id_reuse_puts_players_under_one_user(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    (alt,) = store.add_players(["Randolph"], room_id=ROOM, user_id=carter.user_id)
    assert alt.user_id == carter.user_id
    assert count_rows(store, "users") == 1
    assert store.user_exists(carter.user_id)


def test_unknown_user_id_is_refused(store: Backend) -> None:
    ghost = str(uuid.uuid4())
    with pytest.raises(StoreError, match=f"User '{ghost}' not found"):
        store.add_players(["Carter"], room_id=ROOM, user_id=ghost)
    assert store.list_players() == []
    assert not store.user_exists(ghost)


def test_first_active_player_picks_the_oldest(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.add_players(["Randolph", "Kuranes"], room_id=ROOM, user_id=carter.user_id)
    assert store.first_active_player(carter.user_id) == carter


def test_first_active_player_ignores_deleted(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    randolph, _ = store.add_players(["Randolph", "Kuranes"], room_id=ROOM, user_id=carter.user_id)
    store.delete_player(carter.player_id)
    assert store.first_active_player(carter.user_id) == randolph


def test_first_active_player_none_when_all_deleted(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    assert store.first_active_player(carter.user_id) is None
    assert store.first_active_player(str(uuid.uuid4())) is None


def test_deleted_player_is_hidden_but_still_gettable(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    assert store.list_players() == []
    assert store.find_player_by_name("Carter") is None
    fetched = store.get_player(carter.player_id)
    assert fetched is not None
    assert fetched.deleted


def test_deleted_name_stays_taken(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    with pytest.raises(DuplicateName):
        store.add_players(["carter"], room_id=ROOM)


def test_get_player_unknown_is_none(store: Backend) -> None:
    assert store.get_player(str(uuid.uuid4())) is None


def test_deleting_an_unknown_player_is_refused(store: Backend) -> None:
    with pytest.raises(StoreError, match="not found"):
        store.delete_player(str(uuid.uuid4()))


def test_a_room_save_for_an_unknown_player_changes_nothing(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.apply([SaveRoom(str(uuid.uuid4()), OTHER_ROOM)])
    assert store.list_players() == [carter]


def test_save_room_persists_across_reopen(open_store: Opener) -> None:
    store = open_store()
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.apply([SaveRoom(carter.player_id, OTHER_ROOM)])
    store.close()
    fetched = open_store().get_player(carter.player_id)
    assert fetched is not None
    assert fetched.room_id == OTHER_ROOM


def test_two_stores_on_one_database_see_each_others_writes(open_store: Opener) -> None:
    server, cli = open_store(), open_store()
    (carter,) = server.add_players(["Carter"], room_id=ROOM)
    cli_players = cli.add_players(["Pickman", "Upton"], room_id=ROOM)
    assert server.list_players() == [carter, *cli_players]
    server.apply([SaveRoom(carter.player_id, OTHER_ROOM)])
    moved = cli.get_player(carter.player_id)
    assert moved is not None
    assert moved.room_id == OTHER_ROOM
    with pytest.raises(DuplicateName):
        server.add_players(["upton"], room_id=ROOM)


def test_schema_version_is_stable_across_reopen(open_store: Opener) -> None:
    store = open_store()
    version = store.schema_version()
    store.add_players(["Carter"], room_id=ROOM)
    store.close()
    assert version == 5
    for _ in range(2):
        reopened = open_store()
        assert reopened.schema_version() == version
        assert [p.name for p in reopened.list_players()] == ["Carter"]


def test_sqlite_open_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.sqlite3"):
        SqliteBackend.open(path)


def test_ensure_demo_players_is_idempotent(store: Backend) -> None:
    created = store_names(ensure_demo_players(store, ROOM))
    assert created == ["Armitage", "Wilmarth"]
    assert ensure_demo_players(store, ROOM) == []
    armitage = store.find_player_by_name("Armitage")
    wilmarth = store.find_player_by_name("Wilmarth")
    assert armitage is not None and armitage.is_admin
    assert wilmarth is not None and not wilmarth.is_admin
    assert armitage.room_id == ROOM
    assert len(store.list_players()) == 2


def test_ensure_demo_players_creates_only_the_missing_one(store: Backend) -> None:
    store.add_players(["wilmarth"], room_id=ROOM)
    assert store_names(ensure_demo_players(store, ROOM)) == ["Armitage"]


def test_ensure_demo_players_skips_a_deleted_demo_name(store: Backend) -> None:
    (armitage, _) = ensure_demo_players(store, ROOM)
    store.delete_player(armitage.player_id)
    assert ensure_demo_players(store, ROOM) == []


def test_to_json_line_has_exactly_four_keys_in_order() -> None:
    record = PlayerRecord(
        player_id="p",
        user_id="u",
        name="Carter",
        room_id="r",
        level=3,
        is_admin=True,
        deleted=False,
        created_at=1.5,
    )
    line = record.to_json_line()
    assert line == '{"player_id":"p","user_id":"u","name":"Carter","room_id":"r"}'
    assert list(json.loads(line)) == ["player_id", "user_id", "name", "room_id"]


def test_a_thousand_players_in_one_call(store: Backend) -> None:
    names = [f"Cultist{i:04d}" for i in range(1000)]
    records = store.add_players(names, room_id=ROOM)
    assert len(records) == 1000
    assert len(store.list_players()) == 1000


async def test_async_store_runs_calls_in_a_worker_thread(store: Backend) -> None:
    async_store = Store(store)
    (carter,) = await async_store.call(store.add_players, ["Carter"], room_id=ROOM)
    found = await async_store.call(store.find_player_by_name, "carter")
    assert found == carter


async def test_async_store_serialises_concurrent_calls(store: Backend) -> None:
    async_store = Store(store)

    async def add(name: str) -> None:
        await async_store.call(store.add_players, [name], room_id=ROOM)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(add, f"Acolyte{i}")
    assert len(store.list_players()) == 20


async def test_async_store_propagates_errors(store: Backend) -> None:
    async_store = Store(store)
    await async_store.call(store.add_players, ["Carter"], room_id=ROOM)
    with pytest.raises(DuplicateName):
        await async_store.call(store.add_players, ["CARTER"], room_id=ROOM)


def test_a_batch_of_writes_lands_whole(store: Backend) -> None:
    carter, pickman, upton = store.add_players(["Carter", "Pickman", "Upton"], room_id=ROOM)
    later = time.time() + 600
    store.apply(
        [
            SaveRoom(carter.player_id, OTHER_ROOM),
            SetMute(carter.player_id, pickman.player_id, None),
            SetMute(carter.player_id, upton.player_id, later),
            SetGlobalMute(pickman.player_id, carter.player_id, None),
        ]
    )
    mutes = store.load_mutes(carter.player_id, time.time())
    assert mutes.personal == {pickman.player_id: None, upton.player_id: pytest.approx(later)}
    assert store.load_mutes(pickman.player_id, time.time()).globally_muted
    moved = store.get_player(carter.player_id)
    assert moved is not None and moved.room_id == OTHER_ROOM


def test_a_poisoned_write_rolls_back_its_whole_batch(store: Backend) -> None:
    carter, pickman = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    with pytest.raises(PermanentStoreError):
        store.apply(
            [
                SetMute(carter.player_id, pickman.player_id, None),
                SetMute(carter.player_id, str(uuid.uuid4()), None),  # no such player
            ]
        )
    assert store.load_mutes(carter.player_id, time.time()).personal == {}


def test_mutes_expire_update_and_delete(store: Backend) -> None:
    carter, pickman = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    now = time.time()
    store.apply([SetMute(carter.player_id, pickman.player_id, now + 60)])
    assert store.load_mutes(carter.player_id, now + 61).personal == {}
    store.apply([SetMute(carter.player_id, pickman.player_id, None)])  # made permanent
    assert store.load_mutes(carter.player_id, now + 61).personal == {pickman.player_id: None}
    store.apply([DeleteMute(carter.player_id, pickman.player_id)])
    assert store.load_mutes(carter.player_id, now).personal == {}


def test_global_mutes_expire_and_lift(store: Backend) -> None:
    carter, pickman = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    now = time.time()
    store.apply([SetGlobalMute(pickman.player_id, carter.player_id, now + 60)])
    live = store.load_mutes(pickman.player_id, now)
    assert live.globally_muted and live.global_expires_at == pytest.approx(now + 60)
    assert not store.load_mutes(pickman.player_id, now + 61).globally_muted
    store.apply([SetGlobalMute(pickman.player_id, carter.player_id, None)])
    store.apply([DeleteGlobalMute(pickman.player_id)])
    assert not store.load_mutes(pickman.player_id, now).globally_muted


def test_check_writable_passes_on_a_healthy_database(store: Backend) -> None:
    store.check_writable()
    store.check_writable()  # and again: it overwrites its own row


def test_sqlite_refuses_a_read_only_file_at_open_or_probe(db_path: Path) -> None:
    SqliteBackend.open(db_path).close()
    with read_only(db_path), pytest.raises(StoreError, match=str(db_path) + "|readonly"):
        backend = SqliteBackend.open(db_path)
        try:
            backend.check_writable()
        finally:
            backend.close()


def test_sqlite_probe_reports_a_database_locked_by_another_process(db_path: Path) -> None:
    SqliteBackend.open(db_path).close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            backend = SqliteBackend.open(db_path, busy_timeout_ms=50)
            try:
                backend.check_writable()
            finally:
                backend.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_postgres_open_names_an_unreachable_server_without_its_password() -> None:
    with pytest.raises(StoreError) as raised:
        PostgresBackend.open("postgresql://someone:hunter2@127.0.0.1:1/nowhere")
    assert "127.0.0.1:1" in str(raised.value)
    assert "hunter2" not in str(raised.value)


# --- passwords and invites (section 18) ----------------------------------------------------------

HASH = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="  # the store keeps whatever string it is given


def test_a_player_without_a_password_has_no_login(store: Backend) -> None:
    store.add_players(["Carter"], room_id=ROOM)
    assert store.password_hash_by_name("Carter") is None
    assert store.password_hash_by_name("Nobody") is None


def test_set_password_then_find_it_by_name_in_any_case(store: Backend) -> None:
    [carter] = store.add_players(["Carter"], room_id=ROOM)
    store.set_password(carter.player_id, HASH)
    assert store.password_hash_by_name("cARTER") == (carter, HASH)
    store.set_password(carter.player_id, HASH + "x")  # replaced, not duplicated
    assert store.password_hash_by_name("Carter") == (carter, HASH + "x")
    assert count_rows(store, "credentials") == 1


def test_set_password_for_an_unknown_or_deleted_player_is_refused(store: Backend) -> None:
    [carter] = store.add_players(["Carter"], room_id=ROOM)
    with pytest.raises(StoreError, match="not found"):
        store.set_password(str(uuid.uuid4()), HASH)
    store.delete_player(carter.player_id)
    with pytest.raises(StoreError, match="not found"):
        store.set_password(carter.player_id, HASH)


def test_a_deleted_player_cannot_log_in(store: Backend) -> None:
    [carter] = store.add_players(["Carter"], room_id=ROOM, password_hash=HASH)
    store.delete_player(carter.player_id)
    assert store.password_hash_by_name("Carter") is None


def test_add_players_with_a_password_gives_it_to_each(store: Backend) -> None:
    records = store.add_players(["Carter", "Pickman"], room_id=ROOM, password_hash=HASH)
    for record in records:
        assert store.password_hash_by_name(record.name) == (record, HASH)


def test_players_of_user_lists_active_players_oldest_first(store: Backend) -> None:
    [first] = store.add_players(["Carter"], room_id=ROOM)
    second, third = store.add_players(["Pickman", "Upton"], room_id=ROOM, user_id=first.user_id)
    store.add_players(["Dyer"], room_id=ROOM)  # another user
    store.delete_player(second.player_id)
    assert store.players_of_user(first.user_id) == [first, third]
    assert store.players_of_user(str(uuid.uuid4())) == []


def test_register_with_invite_creates_a_player_and_consumes_the_code(store: Backend) -> None:
    store.create_invites(["code-1", "code-2"])
    record = store.register_with_invite("Lavinia", HASH, "code-1", ROOM)
    assert store.password_hash_by_name("lavinia") == (record, HASH)
    assert store.players_of_user(record.user_id) == [record]
    assert record.room_id == ROOM and not record.is_admin
    with pytest.raises(InvalidInvite):
        store.register_with_invite("Wilbur", HASH, "code-1", ROOM)
    assert store.find_player_by_name("Wilbur") is None


def test_register_with_an_unknown_invite_is_refused_before_the_name(store: Backend) -> None:
    store.add_players(["Carter"], room_id=ROOM)
    with pytest.raises(InvalidInvite):
        store.register_with_invite("Carter", HASH, "no-such-code", ROOM)


def test_register_with_a_taken_name_keeps_the_invite(store: Backend) -> None:
    store.add_players(["Carter"], room_id=ROOM)
    store.create_invites(["code-1"])
    with pytest.raises(DuplicateName):
        store.register_with_invite("carter", HASH, "code-1", ROOM)
    assert count_rows(store, "users") == 1
    record = store.register_with_invite("Randolph", HASH, "code-1", ROOM)
    assert record.name == "Randolph"


def test_register_with_an_invalid_name_is_refused(store: Backend) -> None:
    store.create_invites(["code-1"])
    with pytest.raises(StoreError, match="Invalid player name"):
        store.register_with_invite("9lives", HASH, "code-1", ROOM)


def test_invites_are_seen_by_a_second_store(open_store: Opener) -> None:
    open_store().create_invites(["shared"])
    record = open_store().register_with_invite("Keziah", HASH, "shared", ROOM)
    assert open_store().password_hash_by_name("Keziah") == (record, HASH)


def test_a_store_that_lost_a_table_fails_every_write_transiently(store: Backend) -> None:
    """Not the write's fault: the store is unhealthy (retried, readiness off), not set aside."""
    carter, pickman = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    assert isinstance(store, SqlBackend)
    with store._transaction() as conn:
        store._execute(conn, "DROP TABLE global_mutes")
    with pytest.raises(TransientStoreError):
        store.apply([SetGlobalMute(pickman.player_id, carter.player_id, None)])


# --- moderation (issue 10): delete, rename, admin, ban -----------------------------------------


def test_delete_removes_the_password_and_every_mute_by_or_of_the_player(store: Backend) -> None:
    carter, pickman, upton = store.add_players(["Carter", "Pickman", "Upton"], room_id=ROOM)
    store.set_password(carter.player_id, "hash")
    store.apply(
        [
            SetMute(carter.player_id, pickman.player_id, None),
            SetMute(pickman.player_id, carter.player_id, None),
            SetMute(pickman.player_id, upton.player_id, None),
            SetGlobalMute(carter.player_id, upton.player_id, None),
        ]
    )
    store.delete_player(carter.player_id)
    assert store.password_hash_by_name("Carter") is None
    assert store.load_mutes(pickman.player_id, time.time()).personal == {upton.player_id: None}
    assert store.load_mutes(carter.player_id, time.time()) == MuteRecords(personal={})
    assert count_rows(store, "credentials") == 0


def test_rename_keeps_the_player_and_frees_the_old_name(store: Backend) -> None:
    carter, _ = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    renamed = store.rename_player(carter.player_id, "Randolph")
    assert (renamed.player_id, renamed.name) == (carter.player_id, "Randolph")
    assert store.find_player_by_name("randolph") == renamed
    assert store.find_player_by_name("Carter") is None
    store.add_players(["Carter"], room_id=ROOM)  # the old name is free again
    assert store.rename_player(carter.player_id, "RANDOLPH").name == "RANDOLPH"  # case only


@pytest.mark.parametrize(("new_name", "problem"), [("pickman", DuplicateName), ("9x", StoreError)])
def test_rename_refuses_a_taken_or_invalid_name(
    store: Backend, new_name: str, problem: type[Exception]
) -> None:
    carter, _ = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    with pytest.raises(problem):
        store.rename_player(carter.player_id, new_name)
    assert store.find_player_by_name("Carter") == carter


def test_moderating_an_unknown_or_deleted_player_is_refused(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    for player_id in (carter.player_id, str(uuid.uuid4())):
        with pytest.raises(StoreError, match="not found"):
            store.rename_player(player_id, "Randolph")
        with pytest.raises(StoreError, match="not found"):
            store.set_admin(player_id, True)


def test_set_admin_both_ways(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    assert store.set_admin(carter.player_id, True).is_admin
    assert not store.set_admin(carter.player_id, False).is_admin


def test_a_ban_travels_with_every_read_of_the_player_until_lifted(store: Backend) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.set_password(carter.player_id, "hash")
    until = time.time() + 600
    store.apply([SetBan(carter.player_id, until, "spam")])
    found = store.password_hash_by_name("carter")
    for record in (store.get_player(carter.player_id), store.first_active_player(carter.user_id)):
        assert record is not None
        assert (record.banned, record.banned_until, record.ban_reason) == (True, until, "spam")
        assert record.banned_at(time.time()) and not record.banned_at(until)
    assert found is not None and found[0].banned
    store.apply([DeleteBan(carter.player_id)])
    lifted = store.get_player(carter.player_id)
    assert lifted is not None and not lifted.banned and lifted.ban_reason is None


def test_a_version_4_sqlite_store_gains_the_ban_columns_and_keeps_its_players(
    db_path: Path,
) -> None:
    from mythos_rt.runtime.store.sqlite import _MIGRATIONS

    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    for statements in _MIGRATIONS[:4]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("INSERT INTO users (id, created_at) VALUES ('u', 1)")
    conn.execute(
        "INSERT INTO players (id, user_id, name, name_key, room_id, created_at)"
        " VALUES ('p', 'u', 'Carter', 'carter', ?, 1)",
        (ROOM,),
    )
    conn.close()
    store = SqliteBackend.open(db_path)
    try:
        assert store.schema_version() == 5
        carter = store.find_player_by_name("Carter")
        assert carter is not None and not carter.banned and carter.banned_until is None
    finally:
        store.close()
