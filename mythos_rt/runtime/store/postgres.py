"""The shared store: PostgreSQL through psycopg 3 (sync), in worker threads.

Several instances may use one database: every write is a transaction, player names are unique
in the database, and migrations take an advisory lock so two instances starting together apply
each migration once.  Connections are kept in a small pool, one per worker thread at most; a
connection that fails is dropped and replaced on the next call.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import errors as pg_errors

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

CONNECT_TIMEOUT_S = 5
# How long a statement waits for a lock another session holds (SQLite's busy timeout, here):
# without it, a session left idle in a transaction holding a player's row stalls the writer for
# good, and with it every confirmation, handshake and readiness check.  Past it the write fails
# transiently (LockNotAvailable) and the writer retries, withdraws and reports as for any outage.
LOCK_TIMEOUT_MS = 5000
# A pooled connection idle this long is asked "SELECT 1" before use.  A server restart,
# idle_session_timeout or a NAT forgetting idle flows kills idle connections silently, and each
# would otherwise fail its next call: a handshake dropped, a look-up answered "try again", the
# writer reporting an outage (readiness 503, confirmations refused) with the database up.
IDLE_CHECK_S = 1.0
MIGRATION_LOCK_KEY = 54768  # any constant shared by every instance of this schema
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@]*@")
# libpq also reads the password from the query string (?password=...), percent-encoded or not.
_PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE users (id TEXT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL)",
        """
        CREATE TABLE players (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id),
            name TEXT NOT NULL,
            name_key TEXT NOT NULL UNIQUE,
            room_id TEXT NOT NULL,
            level INTEGER NOT NULL DEFAULT 1,
            is_admin BOOLEAN NOT NULL DEFAULT FALSE,
            deleted BOOLEAN NOT NULL DEFAULT FALSE,
            created_at DOUBLE PRECISION NOT NULL,
            seq BIGSERIAL NOT NULL
        )
        """,
        "CREATE INDEX players_by_user ON players (user_id, created_at, seq)",
    ),
    (
        """
        CREATE TABLE mutes (
            muter_id TEXT NOT NULL REFERENCES players(id),
            target_id TEXT NOT NULL REFERENCES players(id),
            expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (muter_id, target_id)
        )
        """,
        """
        CREATE TABLE global_mutes (
            target_id TEXT PRIMARY KEY REFERENCES players(id),
            muted_by TEXT NOT NULL REFERENCES players(id),
            expires_at DOUBLE PRECISION,
            created_at DOUBLE PRECISION NOT NULL
        )
        """,
    ),
    ("CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),
    (
        """
        CREATE TABLE credentials (
            player_id TEXT PRIMARY KEY REFERENCES players(id),
            password_hash TEXT NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )
        """,
        """
        CREATE TABLE invites (
            code TEXT PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            used_at DOUBLE PRECISION,
            used_by TEXT REFERENCES players(id)
        )
        """,
    ),
    (
        "ALTER TABLE players ADD COLUMN banned BOOLEAN NOT NULL DEFAULT FALSE",
        "ALTER TABLE players ADD COLUMN banned_until DOUBLE PRECISION",
        "ALTER TABLE players ADD COLUMN ban_reason TEXT",
    ),
)


def redact(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    return _PASSWORD_IN_QUERY.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", url))


class PostgresBackend(SqlBackend):
    """A pool of psycopg connections, one per worker thread in use."""

    max_threads = 4
    oldest_first = "ORDER BY created_at, seq"

    def __init__(self, url: str) -> None:
        self._url = url
        self.description = redact(url)
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []  # (conn, idle since)
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str) -> PostgresBackend:
        backend = cls(url)
        try:
            backend._migrate()
        except StoreError as exc:
            backend.close()
            raise StoreError(f"{backend.description}: cannot prepare the database: {exc}") from exc
        return backend

    def sql(self, query: str) -> str:
        return query.replace("?", "%s")  # our own constants: no literal '?' or '%' in them

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def schema_version(self) -> int:
        with self._connection() as conn:
            return _applied_version(conn)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        """A connection for this thread's call; a broken one is dropped, not returned."""
        with _translated():
            conn = self._take()
            try:
                yield conn
            except BaseException:
                if conn.broken or conn.closed:
                    conn.close()
                else:
                    self._give_back(conn)
                raise
            self._give_back(conn)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with self._connection() as conn:
            assert isinstance(conn, psycopg.Connection)
            with conn.transaction():
                yield conn

    def _insert_player(self, conn: Connection, record: PlayerRecord) -> None:
        assert isinstance(conn, psycopg.Connection)
        try:
            with conn.transaction():  # a savepoint: the clash is reported, not an aborted batch
                self._execute(conn, INSERT_PLAYER, player_params(record))
        except pg_errors.UniqueViolation as exc:
            raise DuplicateName(record.name) from exc

    def _take(self) -> psycopg.Connection[Any]:
        while True:
            with self._lock:
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if time.monotonic() - since < IDLE_CHECK_S or _alive(conn):
                return conn
            conn.close()  # the server let it go: the next one, or a fresh one
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        try:
            conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS:d}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._idle.append((conn, time.monotonic()))

    def _migrate(self) -> None:
        with self._transaction() as conn:
            # Instances starting together queue here, however long the first one's migrations
            # take (LOCK_TIMEOUT_MS is for the writes of a running server); each is applied once.
            conn.execute("SET LOCAL lock_timeout = 0")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            applied = _applied_version(conn)
            for version, statements in enumerate(_MIGRATIONS, start=1):
                if version <= applied:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                    (version, time.time()),
                )


def _alive(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _applied_version(conn: Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    # Only a constraint or a bad value is about the write itself (set it aside).  Everything
    # else (a lost connection, a lock timeout, a read-only server, a missing table or grant)
    # fails every write alike: the store is unhealthy until an operator or the network fixes
    # it, and the writes wait in order.
    try:
        yield
    except StoreError:
        raise
    except (psycopg.IntegrityError, psycopg.DataError) as exc:
        raise PermanentStoreError(f"Database error: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise TransientStoreError(f"Database error: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
