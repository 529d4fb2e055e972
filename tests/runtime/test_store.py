from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mythos_rt.runtime.store import (
    AsyncStore,
    DuplicateName,
    PlayerRecord,
    Store,
    StoreError,
    ensure_demo_players,
)

ROOM = "earth_arkhamcity_campus_quad"
OTHER_ROOM = "earth_arkhamcity_campus_library_hall"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    opened = Store.open(db_path)
    yield opened
    opened.close()


def count_rows(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        count: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()
    return count


def store_names(records: list[PlayerRecord]) -> list[str]:
    return [record.name for record in records]


def test_open_creates_parent_dirs_and_uses_wal(db_path: Path, store: Store) -> None:
    assert db_path.is_file()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_add_players_returns_fresh_records(store: Store) -> None:
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


def test_added_players_are_listed_oldest_first(store: Store) -> None:
    first = store.add_players(["Carter", "Pickman"], room_id=ROOM)
    second = store.add_players(["Upton"], room_id=ROOM, is_admin=True)
    assert store.list_players() == first + second
    assert store.list_players()[2].is_admin


def test_add_player_keeps_the_name_as_given(store: Store) -> None:
    store.add_players(["deLapoer"], room_id=ROOM)
    found = store.find_player_by_name("DELAPOER")
    assert found is not None
    assert found.name == "deLapoer"


def test_find_player_by_name_is_case_insensitive(store: Store) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    assert store.find_player_by_name("carter") == carter
    assert store.find_player_by_name("CARTER") == carter
    assert store.find_player_by_name("Pickman") is None


@pytest.mark.parametrize("taken", ["Carter", "carter", "CARTER"])
def test_duplicate_name_rolls_back_the_whole_batch(store: Store, db_path: Path, taken: str) -> None:
    store.add_players(["Carter"], room_id=ROOM)
    with pytest.raises(DuplicateName, match=f"Player name '{taken}' is taken"):
        store.add_players(["Pickman", taken, "Upton"], room_id=ROOM)
    assert [p.name for p in store.list_players()] == ["Carter"]
    assert count_rows(db_path, "users") == 1


def test_duplicate_name_within_one_batch_is_refused(store: Store) -> None:
    with pytest.raises(DuplicateName, match="Player name 'pickman' is taken"):
        store.add_players(["Pickman", "pickman"], room_id=ROOM)
    assert store.list_players() == []


@pytest.mark.parametrize(
    "name", ["", "1abc", "_abc", "a b", "a" * 33, "Ärmitage", "name!", "-dash"]
)
def test_invalid_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(StoreError, match="Invalid player name"):
        store.add_players(["Fine", name], room_id=ROOM)
    assert store.list_players() == []


def test_valid_name_edge_cases(store: Store) -> None:
    names = ["A", "a" * 32, "Zed_the-3rd"]
    assert [p.name for p in store.add_players(names, room_id=ROOM)] == names


def test_user_id_reuse_puts_players_under_one_user(store: Store, db_path: Path) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    (alt,) = store.add_players(["Randolph"], room_id=ROOM, user_id=carter.user_id)
    assert alt.user_id == carter.user_id
    assert count_rows(db_path, "users") == 1
    assert store.user_exists(carter.user_id)


def test_unknown_user_id_is_refused(store: Store) -> None:
    ghost = str(uuid.uuid4())
    with pytest.raises(StoreError, match=f"User '{ghost}' not found"):
        store.add_players(["Carter"], room_id=ROOM, user_id=ghost)
    assert store.list_players() == []
    assert not store.user_exists(ghost)


def test_first_active_player_picks_the_oldest(store: Store) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.add_players(["Randolph", "Kuranes"], room_id=ROOM, user_id=carter.user_id)
    assert store.first_active_player(carter.user_id) == carter


def test_first_active_player_ignores_deleted(store: Store) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    randolph, _ = store.add_players(["Randolph", "Kuranes"], room_id=ROOM, user_id=carter.user_id)
    store.delete_player(carter.player_id)
    assert store.first_active_player(carter.user_id) == randolph


def test_first_active_player_none_when_all_deleted(store: Store) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    assert store.first_active_player(carter.user_id) is None
    assert store.first_active_player(str(uuid.uuid4())) is None


def test_deleted_player_is_hidden_but_still_gettable(store: Store) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    assert store.list_players() == []
    assert store.find_player_by_name("Carter") is None
    fetched = store.get_player(carter.player_id)
    assert fetched is not None
    assert fetched.deleted


def test_deleted_name_stays_taken(store: Store) -> None:
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.delete_player(carter.player_id)
    with pytest.raises(DuplicateName):
        store.add_players(["carter"], room_id=ROOM)


def test_get_player_unknown_is_none(store: Store) -> None:
    assert store.get_player(str(uuid.uuid4())) is None


def test_updates_of_unknown_players_are_refused(store: Store) -> None:
    ghost = str(uuid.uuid4())
    with pytest.raises(StoreError, match="not found"):
        store.save_room(ghost, ROOM)
    with pytest.raises(StoreError, match="not found"):
        store.delete_player(ghost)


def test_save_room_persists_across_reopen(db_path: Path) -> None:
    store = Store.open(db_path)
    (carter,) = store.add_players(["Carter"], room_id=ROOM)
    store.save_room(carter.player_id, OTHER_ROOM)
    store.close()
    reopened = Store.open(db_path)
    try:
        fetched = reopened.get_player(carter.player_id)
        assert fetched is not None
        assert fetched.room_id == OTHER_ROOM
    finally:
        reopened.close()


def test_two_stores_on_one_file_see_each_others_writes(db_path: Path) -> None:
    server = Store.open(db_path)
    cli = Store.open(db_path)
    try:
        (carter,) = server.add_players(["Carter"], room_id=ROOM)
        cli_players = cli.add_players(["Pickman", "Upton"], room_id=ROOM)
        assert server.list_players() == [carter, *cli_players]
        server.save_room(carter.player_id, OTHER_ROOM)
        moved = cli.get_player(carter.player_id)
        assert moved is not None
        assert moved.room_id == OTHER_ROOM
        with pytest.raises(DuplicateName):
            server.add_players(["upton"], room_id=ROOM)
    finally:
        cli.close()
        server.close()


def test_schema_version_is_stable_across_reopen(db_path: Path) -> None:
    store = Store.open(db_path)
    version = store.schema_version()
    store.add_players(["Carter"], room_id=ROOM)
    store.close()
    assert version >= 1
    for _ in range(2):
        reopened = Store.open(db_path)
        try:
            assert reopened.schema_version() == version
            assert [p.name for p in reopened.list_players()] == ["Carter"]
        finally:
            reopened.close()


def test_open_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.sqlite3"):
        Store.open(path)


def test_ensure_demo_players_is_idempotent(store: Store) -> None:
    created = store_names(ensure_demo_players(store, ROOM))
    assert created == ["Armitage", "Wilmarth"]
    assert ensure_demo_players(store, ROOM) == []
    armitage = store.find_player_by_name("Armitage")
    wilmarth = store.find_player_by_name("Wilmarth")
    assert armitage is not None and armitage.is_admin
    assert wilmarth is not None and not wilmarth.is_admin
    assert armitage.room_id == ROOM
    assert len(store.list_players()) == 2


def test_ensure_demo_players_creates_only_the_missing_one(store: Store) -> None:
    store.add_players(["wilmarth"], room_id=ROOM)
    assert store_names(ensure_demo_players(store, ROOM)) == ["Armitage"]


def test_ensure_demo_players_skips_a_deleted_demo_name(store: Store) -> None:
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


def test_a_thousand_players_in_one_call(store: Store) -> None:
    names = [f"Cultist{i:04d}" for i in range(1000)]
    records = store.add_players(names, room_id=ROOM)
    assert len(records) == 1000
    assert len(store.list_players()) == 1000


async def test_async_store_runs_calls_in_a_worker_thread(store: Store) -> None:
    async_store = AsyncStore(store)
    (carter,) = await async_store.call(store.add_players, ["Carter"], room_id=ROOM)
    found = await async_store.call(store.find_player_by_name, "carter")
    assert found == carter


async def test_async_store_serialises_concurrent_calls(store: Store) -> None:
    async_store = AsyncStore(store)

    async def add(name: str) -> None:
        await async_store.call(store.add_players, [name], room_id=ROOM)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(add, f"Acolyte{i}")
    assert len(store.list_players()) == 20


async def test_async_store_propagates_errors(store: Store) -> None:
    async_store = AsyncStore(store)
    await async_store.call(store.add_players, ["Carter"], room_id=ROOM)
    with pytest.raises(DuplicateName):
        await async_store.call(store.add_players, ["CARTER"], room_id=ROOM)
