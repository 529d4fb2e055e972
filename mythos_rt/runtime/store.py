"""Players and users in SQLite (stdlib ``sqlite3``).

:class:`Store` is synchronous; the server reaches it through :class:`AsyncStore`, which runs each
call in a worker thread.  The database is opened in WAL mode with a busy timeout so that the CLI can
add players while a server process holds the same file open.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import attrs
import trio

P = ParamSpec("P")
T = TypeVar("T")

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
_BUSY_TIMEOUT_MS = 5000
DEMO_PLAYERS: tuple[tuple[str, bool], ...] = (("Armitage", True), ("Wilmarth", False))

# Migration N (1-based) brings the schema from version N-1 to N; PRAGMA user_version records the
# last one applied.  Append new migrations; never edit an applied one.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE users (id TEXT PRIMARY KEY, created_at REAL NOT NULL)",
        """
        CREATE TABLE players (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id),
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            level INTEGER NOT NULL DEFAULT 1,
            is_admin INTEGER NOT NULL DEFAULT 0,
            deleted INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        )
        """,
        "CREATE INDEX players_by_user ON players (user_id, created_at)",
    ),
    (
        # expires_at is wall-clock epoch seconds; NULL means permanent.
        """
        CREATE TABLE mutes (
            muter_id TEXT NOT NULL REFERENCES players(id),
            target_id TEXT NOT NULL REFERENCES players(id),
            expires_at REAL,
            created_at REAL NOT NULL,
            PRIMARY KEY (muter_id, target_id)
        )
        """,
        """
        CREATE TABLE global_mutes (
            target_id TEXT PRIMARY KEY REFERENCES players(id),
            muted_by TEXT NOT NULL REFERENCES players(id),
            expires_at REAL,
            created_at REAL NOT NULL
        )
        """,
    ),
)

_PLAYER_COLUMNS = "id, user_id, name, room_id, level, is_admin, deleted, created_at"
# rowid breaks ties between players created in the same instant (one batch shares a timestamp).
_OLDEST_FIRST = "ORDER BY created_at, rowid"


@attrs.frozen
class MuteRecords:
    """What the store knows of one player's mutes (loaded when their presence starts)."""

    personal: Mapping[str, float | None]  # target id -> expires_at (epoch s), None = permanent
    globally_muted: bool = False
    global_expires_at: float | None = None


@attrs.frozen
class PlayerRecord:
    player_id: str
    user_id: str
    name: str
    room_id: str
    level: int
    is_admin: bool
    deleted: bool
    created_at: float

    def to_json_line(self) -> str:
        """The CLI's output line: ``player_id``, ``user_id``, ``name``, ``room_id``, compact."""
        fields = {
            "player_id": self.player_id,
            "user_id": self.user_id,
            "name": self.name,
            "room_id": self.room_id,
        }
        return json.dumps(fields, separators=(",", ":"))


class StoreError(Exception):
    """A store operation was refused; ``str(exc)`` is fit to show an operator."""


class DuplicateName(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Player name '{name}' is taken")
        self.name = name


class Store:
    """One SQLite connection, used by one thread at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = _connect(path)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        store = cls(conn)
        try:
            store._migrate()
        except StoreError as exc:
            store.close()
            raise StoreError(f"{path}: cannot prepare the database: {exc}") from exc
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def schema_version(self) -> int:
        with self._lock, _translated():
            return _user_version(self._conn)

    def add_players(
        self,
        names: Sequence[str],
        *,
        room_id: str,
        is_admin: bool = False,
        user_id: str | None = None,
    ) -> list[PlayerRecord]:
        """Create one player per name in a single transaction: all of them, or none.

        Each player gets a new user unless ``user_id`` names an existing one.
        """
        _check_names(names)
        now = time.time()
        with self._transaction() as conn:
            if user_id is not None and not _user_exists(conn, user_id):
                raise StoreError(f"User '{user_id}' not found")
            records = [_new_record(name, room_id, is_admin, user_id, now) for name in names]
            for record in records:
                _insert(conn, record, new_user=user_id is None)
        return records

    def list_players(self) -> list[PlayerRecord]:
        return self._select_many(f"WHERE deleted = 0 {_OLDEST_FIRST}")

    def get_player(self, player_id: str) -> PlayerRecord | None:
        """The player with this id, deleted or not (the caller checks ``.deleted``)."""
        return self._select_one("WHERE id = ?", player_id)

    def find_player_by_name(self, name: str) -> PlayerRecord | None:
        return self._select_one("WHERE name_key = ? AND deleted = 0", name.lower())

    def first_active_player(self, user_id: str) -> PlayerRecord | None:
        """The user's oldest player that is not deleted."""
        return self._select_one(f"WHERE user_id = ? AND deleted = 0 {_OLDEST_FIRST}", user_id)

    def user_exists(self, user_id: str) -> bool:
        with self._lock, _translated():
            return _user_exists(self._conn, user_id)

    def save_room(self, player_id: str, room_id: str) -> None:
        self._update_player(player_id, "room_id = ?", room_id)

    def save_rooms(self, rooms: Mapping[str, str]) -> None:
        """Several players' rooms in one transaction (players deleted meanwhile are skipped)."""
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE players SET room_id = ? WHERE id = ?",
                [(room_id, player_id) for player_id, room_id in rooms.items()],
            )

    def set_mute(self, muter_id: str, target_id: str, expires_at: float | None) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO mutes (muter_id, target_id, expires_at, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (muter_id, target_id)"
                " DO UPDATE SET expires_at = excluded.expires_at",
                (muter_id, target_id, expires_at, time.time()),
            )

    def delete_mute(self, muter_id: str, target_id: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM mutes WHERE muter_id = ? AND target_id = ?", (muter_id, target_id)
            )

    def set_global_mute(self, target_id: str, muted_by: str, expires_at: float | None) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO global_mutes (target_id, muted_by, expires_at, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (target_id)"
                " DO UPDATE SET expires_at = excluded.expires_at, muted_by = excluded.muted_by",
                (target_id, muted_by, expires_at, time.time()),
            )

    def delete_global_mute(self, target_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM global_mutes WHERE target_id = ?", (target_id,))

    def load_mutes(self, player_id: str, now: float) -> MuteRecords:
        """The player's own mutes and their global mute, without the expired ones."""
        live = "(expires_at IS NULL OR expires_at > ?)"
        with self._lock, _translated():
            personal = self._conn.execute(
                f"SELECT target_id, expires_at FROM mutes WHERE muter_id = ? AND {live}",
                (player_id, now),
            ).fetchall()
            global_row = self._conn.execute(
                f"SELECT expires_at FROM global_mutes WHERE target_id = ? AND {live}",
                (player_id, now),
            ).fetchone()
        return MuteRecords(
            personal={target: expires for target, expires in personal},
            globally_muted=global_row is not None,
            global_expires_at=None if global_row is None else global_row[0],
        )

    def delete_player(self, player_id: str) -> None:
        """Soft delete: the row stays (and its name stays taken) but the player is inactive."""
        self._update_player(player_id, "deleted = ?", 1)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so checks made inside the transaction still
        # hold when it commits, even with another process writing the same file.
        with self._lock, _translated():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        for version, statements in enumerate(_MIGRATIONS, start=1):
            with self._transaction() as conn:
                # Re-read inside the transaction: another process may have migrated meanwhile.
                if _user_version(conn) >= version:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")

    def _select_many(self, where: str, *params: object) -> list[PlayerRecord]:
        with self._lock, _translated():
            rows = self._conn.execute(f"SELECT {_PLAYER_COLUMNS} FROM players {where}", params)
            return [_record(row) for row in rows]

    def _select_one(self, where: str, *params: object) -> PlayerRecord | None:
        found = self._select_many(f"{where} LIMIT 1", *params)
        return found[0] if found else None

    def _update_player(self, player_id: str, assignment: str, value: object) -> None:
        with self._transaction() as conn:
            cursor = conn.execute(
                f"UPDATE players SET {assignment} WHERE id = ?", (value, player_id)
            )
            if cursor.rowcount == 0:
                raise StoreError(f"Player '{player_id}' not found")


def ensure_demo_players(store: Store, start_room_id: str) -> list[PlayerRecord]:
    """Create the demo players that do not exist yet; return the ones created."""
    created: list[PlayerRecord] = []
    for name, is_admin in DEMO_PLAYERS:
        if store.find_player_by_name(name) is not None:
            continue
        # A deleted demo player keeps its name, and a second process may create one at the same
        # moment: either way the name is taken and there is nothing to do.
        with contextlib.suppress(DuplicateName):
            created += store.add_players([name], room_id=start_room_id, is_admin=is_admin)
    return created


class AsyncStore:
    """Runs :class:`Store` calls in a worker thread, one call at a time.

    The store's one sqlite3 connection is shared by those threads (``check_same_thread=False``).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # One thread at a time: a second would only wait for Store's lock while holding a thread.
        self._limiter = trio.CapacityLimiter(1)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await trio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self._limiter
        )


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) in Store.
    conn = sqlite3.connect(
        path,
        timeout=_BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS:d}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    # Callers see StoreError only; sqlite3 stays an implementation detail of this module.
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"Database error: {exc}") from exc


def _user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _user_exists(conn: sqlite3.Connection, user_id: str) -> bool:
    return conn.execute("SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone() is not None


def _check_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise StoreError(
                f"Invalid player name '{name}': 1-32 letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if name.lower() in seen:
            raise DuplicateName(name)
        seen.add(name.lower())


def _new_record(
    name: str, room_id: str, is_admin: bool, user_id: str | None, now: float
) -> PlayerRecord:
    return PlayerRecord(
        player_id=str(uuid.uuid4()),
        user_id=user_id if user_id is not None else str(uuid.uuid4()),
        name=name,
        room_id=room_id,
        level=1,
        is_admin=is_admin,
        deleted=False,
        created_at=now,
    )


def _insert(conn: sqlite3.Connection, record: PlayerRecord, *, new_user: bool) -> None:
    if new_user:
        conn.execute(
            "INSERT INTO users (id, created_at) VALUES (?, ?)", (record.user_id, record.created_at)
        )
    try:
        conn.execute(
            "INSERT INTO players (id, user_id, name, name_key, room_id, level, is_admin, deleted,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (
                record.player_id,
                record.user_id,
                record.name,
                record.name.lower(),
                record.room_id,
                record.level,
                int(record.is_admin),
                record.created_at,
            ),
        )
    except sqlite3.IntegrityError as exc:
        # name_key is the only constraint a new row can break (ids are fresh uuid4s).
        raise DuplicateName(record.name) from exc


def _record(row: tuple[Any, ...]) -> PlayerRecord:
    player_id, user_id, name, room_id, level, is_admin, deleted, created_at = row
    return PlayerRecord(
        player_id=str(player_id),
        user_id=str(user_id),
        name=str(name),
        room_id=str(room_id),
        level=int(level),
        is_admin=bool(is_admin),
        deleted=bool(deleted),
        created_at=float(created_at),
    )
