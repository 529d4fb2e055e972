"""The embedded store: SQLite (stdlib ``sqlite3``), one file in the data directory.

The database runs in WAL mode with ``synchronous = FULL`` (a commit is on disk before the
writer reports it durable) and a busy timeout, so the CLI and other processes on the same
machine can use the file while a server holds it open.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from mythos_rt.runtime.store.base import (
    INSERT_PLAYER,
    Connection,
    DuplicateName,
    PermanentStoreError,
    PlayerRecord,
    SqlBackend,
    StoreError,
    TransientStoreError,
    player_params,
)

BUSY_TIMEOUT_MS = 5000

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
    (
        # The start-up probe writes here to prove the database takes writes.
        "CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # Passwords for the HTTP login (section 18): a slow salted hash, never the password.
        # Kept apart from players so player reads never carry a hash around.
        """
        CREATE TABLE credentials (
            player_id TEXT PRIMARY KEY REFERENCES players(id),
            password_hash TEXT NOT NULL,
            updated_at REAL NOT NULL
        )
        """,
        # Single-use registration codes; used_by is set when one is consumed.
        """
        CREATE TABLE invites (
            code TEXT PRIMARY KEY,
            created_at REAL NOT NULL,
            used_at REAL,
            used_by TEXT REFERENCES players(id)
        )
        """,
    ),
    (
        # Bans (issue 10): refused at every login and handshake while in force.  banned_until
        # is wall-clock epoch seconds; NULL with banned = 1 means for good.
        "ALTER TABLE players ADD COLUMN banned INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE players ADD COLUMN banned_until REAL",
        "ALTER TABLE players ADD COLUMN ban_reason TEXT",
    ),
)


class SqliteBackend(SqlBackend):
    """One SQLite connection, used by one thread at a time."""

    max_threads = 1  # SQLite has one writer anyway; a second thread would only wait
    # rowid breaks ties between players created in the same instant (one batch shares a time).
    oldest_first = "ORDER BY created_at, rowid"

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self.description = str(path)

    @classmethod
    def open(cls, path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> SqliteBackend:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date.

        ``busy_timeout_ms``: how long a statement waits for a lock another process holds.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{path.parent}: cannot create the data directory: {exc}") from exc
        try:
            conn = _connect(path, busy_timeout_ms)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the database: {exc}") from exc
        store = cls(conn, path)
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
        with self._connection() as conn:
            return _user_version(conn)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self._lock, _translated():
            yield self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
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

    def _insert_player(self, conn: Connection, record: PlayerRecord) -> None:
        try:
            self._execute(conn, INSERT_PLAYER, player_params(record))
        except sqlite3.IntegrityError as exc:
            # name_key is the only constraint a new row can break (ids are fresh uuid4s).
            raise DuplicateName(record.name) from exc

    def _migrate(self) -> None:
        for version, statements in enumerate(_MIGRATIONS, start=1):
            with self._transaction() as conn:
                # Re-read inside the transaction: another process may have migrated meanwhile.
                if _user_version(conn) >= version:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT) above.
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_ms / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms:d}")
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before we call it durable (NORMAL in WAL mode may lose the
        # last commits on power loss; acknowledgements promise more than that).
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    # Callers see StoreError only; sqlite3 stays an implementation detail of this module.
    # Only a constraint or a bad value is about the write itself (set it aside).  Locked, busy,
    # read-only, disk full, I/O errors, a missing table or a damaged file fail every write
    # alike: the store is unhealthy and the writes wait, in order, for an operator.
    try:
        yield
    except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
        raise PermanentStoreError(f"Database error: {exc}") from exc
    except sqlite3.Error as exc:
        raise TransientStoreError(f"Database error: {exc}") from exc


def _user_version(conn: Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version
