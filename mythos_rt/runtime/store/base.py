"""What every store backend shares: the records it returns, the errors it raises, the
interface the server and the CLI use, and the validation that does not depend on SQL."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from mythos_rt.core.writes import (
    DeleteBan,
    DeleteGlobalMute,
    DeleteMute,
    SaveRoom,
    SetBan,
    SetGlobalMute,
    SetMute,
    Write,
)

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
DEMO_PLAYERS: tuple[tuple[str, bool], ...] = (("Armitage", True), ("Wilmarth", False))


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
    banned: bool = False
    banned_until: float | None = None  # wall-clock epoch seconds; None with banned = for good
    ban_reason: str | None = None

    def banned_at(self, wall_now: float) -> bool:
        """Whether a ban is in force at ``wall_now`` (a ban past its end is over)."""
        return self.banned and (self.banned_until is None or self.banned_until > wall_now)

    def to_json_line(self, **extra: object) -> str:
        """The CLI's output line: ``player_id``, ``user_id``, ``name``, ``room_id`` and what
        the command changed (``extra``), compact."""
        fields = {
            "player_id": self.player_id,
            "user_id": self.user_id,
            "name": self.name,
            "room_id": self.room_id,
            **extra,
        }
        return json.dumps(fields, separators=(",", ":"))


class StoreError(Exception):
    """A store operation was refused; ``str(exc)`` is fit to show an operator."""


class TransientStoreError(StoreError):
    """The database could not be reached or was busy (locked, connection lost, read-only, disk
    full): the same write may succeed later, so the writer retries it."""


class PermanentStoreError(StoreError):
    """The database refused this data (a constraint, a bad value): retrying cannot help, so the
    writer sets the write aside."""


class DuplicateName(PermanentStoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Player name '{name}' is taken")
        self.name = name


class InvalidInvite(PermanentStoreError):
    def __init__(self) -> None:
        super().__init__("Invalid or already used invite code")


class Backend(Protocol):
    """One database, used by one thread at a time (the server calls it from worker threads).

    ``apply`` performs a batch of writes in one transaction: all of them or none.
    """

    description: str  # what to name in a message to the operator (a path or a redacted URL)
    max_threads: int  # how many worker threads may use it at once

    def close(self) -> None: ...
    def schema_version(self) -> int: ...
    def check_writable(self) -> None: ...
    def add_players(
        self,
        names: Sequence[str],
        *,
        room_id: str,
        is_admin: bool = False,
        user_id: str | None = None,
        password_hash: str | None = None,
    ) -> list[PlayerRecord]: ...
    def list_players(self) -> list[PlayerRecord]: ...
    def players_of_user(self, user_id: str) -> list[PlayerRecord]: ...
    def get_player(self, player_id: str) -> PlayerRecord | None: ...
    def find_player_by_name(self, name: str) -> PlayerRecord | None: ...
    def first_active_player(self, user_id: str) -> PlayerRecord | None: ...
    def user_exists(self, user_id: str) -> bool: ...
    def delete_player(self, player_id: str) -> None: ...
    def rename_player(self, player_id: str, new_name: str) -> PlayerRecord: ...
    def set_admin(self, player_id: str, is_admin: bool) -> PlayerRecord: ...
    def load_mutes(self, player_id: str, now: float) -> MuteRecords: ...
    def apply(self, writes: Sequence[Write]) -> None: ...
    def set_password(self, player_id: str, password_hash: str) -> None: ...
    def password_hash_by_name(self, name: str) -> tuple[PlayerRecord, str] | None: ...
    def create_invites(self, codes: Sequence[str]) -> None: ...
    def register_with_invite(
        self, name: str, password_hash: str, code: str, room_id: str
    ) -> PlayerRecord: ...


def check_names(names: Sequence[str]) -> None:
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


def new_records(
    names: Sequence[str], room_id: str, is_admin: bool, user_id: str | None
) -> list[PlayerRecord]:
    """Fresh records, one per name; each gets a new user unless ``user_id`` is given."""
    check_names(names)
    now = time.time()
    return [
        PlayerRecord(
            player_id=str(uuid.uuid4()),
            user_id=user_id if user_id is not None else str(uuid.uuid4()),
            name=name,
            room_id=room_id,
            level=1,
            is_admin=is_admin,
            deleted=False,
            created_at=now,
        )
        for name in names
    ]


def ensure_demo_players(store: Backend, start_room_id: str) -> list[PlayerRecord]:
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


# --- SQL both backends speak (``?`` placeholders; PostgreSQL's backend swaps in ``%s``) -------

PLAYER_COLUMNS = (
    "id, user_id, name, room_id, level, is_admin, deleted, created_at,"
    " banned, banned_until, ban_reason"
)
INSERT_USER = "INSERT INTO users (id, created_at) VALUES (?, ?)"
INSERT_PLAYER = (
    "INSERT INTO players (id, user_id, name, name_key, room_id, level, is_admin, deleted,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
LIVE_MUTE = "(expires_at IS NULL OR expires_at > ?)"
LOAD_PERSONAL_MUTES = f"SELECT target_id, expires_at FROM mutes WHERE muter_id = ? AND {LIVE_MUTE}"
LOAD_GLOBAL_MUTE = f"SELECT expires_at FROM global_mutes WHERE target_id = ? AND {LIVE_MUTE}"
SET_PASSWORD = (
    "INSERT INTO credentials (player_id, password_hash, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (player_id) DO UPDATE"
    " SET password_hash = excluded.password_hash, updated_at = excluded.updated_at"
)
# Column names shared by players and credentials would be ambiguous in the join: prefix them.
LOGIN_QUERY = (
    "SELECT {columns}, c.password_hash FROM players p JOIN credentials c ON c.player_id = p.id"
    " WHERE p.name_key = ? AND NOT p.deleted LIMIT 1"
).format(columns=", ".join(f"p.{column}" for column in PLAYER_COLUMNS.split(", ")))
INSERT_INVITE = "INSERT INTO invites (code, created_at) VALUES (?, ?)"
UNUSED_INVITE = "SELECT 1 FROM invites WHERE code = ? AND used_at IS NULL"
USE_INVITE = "UPDATE invites SET used_at = ?, used_by = ? WHERE code = ? AND used_at IS NULL"
# What deleting a player removes besides marking the row (each takes the player id per "?").
DELETE_PLAYER_DATA = (
    "DELETE FROM credentials WHERE player_id = ?",
    "DELETE FROM mutes WHERE muter_id = ? OR target_id = ?",
    "DELETE FROM global_mutes WHERE target_id = ?",
)
WRITE_META = (
    "INSERT INTO store_meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


def player_params(record: PlayerRecord) -> tuple[object, ...]:
    return (
        record.player_id,
        record.user_id,
        record.name,
        record.name.lower(),
        record.room_id,
        record.level,
        record.is_admin,
        record.deleted,
        record.created_at,
    )


def write_statement(write: Write, now: float) -> tuple[str, tuple[object, ...]]:
    """The one SQL statement that performs ``write``."""
    if isinstance(write, SaveRoom):
        # A player deleted meanwhile keeps the row, so the update still lands harmlessly.
        return "UPDATE players SET room_id = ? WHERE id = ?", (write.room_id, write.player_id)
    if isinstance(write, SetMute):
        return (
            "INSERT INTO mutes (muter_id, target_id, expires_at, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (muter_id, target_id) DO UPDATE SET expires_at = excluded.expires_at",
            (write.muter_id, write.target_id, write.expires_at, now),
        )
    if isinstance(write, DeleteMute):
        return (
            "DELETE FROM mutes WHERE muter_id = ? AND target_id = ?",
            (write.muter_id, write.target_id),
        )
    if isinstance(write, SetGlobalMute):
        return (
            "INSERT INTO global_mutes (target_id, muted_by, expires_at, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (target_id)"
            " DO UPDATE SET expires_at = excluded.expires_at, muted_by = excluded.muted_by",
            (write.target_id, write.muted_by, write.expires_at, now),
        )
    if isinstance(write, SetBan):
        return (
            "UPDATE players SET banned = ?, banned_until = ?, ban_reason = ? WHERE id = ?",
            (True, write.until, write.reason, write.player_id),
        )
    if isinstance(write, DeleteBan):
        return (
            "UPDATE players SET banned = ?, banned_until = NULL, ban_reason = NULL WHERE id = ?",
            (False, write.player_id),
        )
    assert isinstance(write, DeleteGlobalMute)
    return "DELETE FROM global_mutes WHERE target_id = ?", (write.target_id,)


def record_from_row(row: Sequence[Any]) -> PlayerRecord:
    player_id, user_id, name, room_id, level, is_admin, deleted, created_at = row[:8]
    banned, banned_until, ban_reason = row[8:]
    return PlayerRecord(
        player_id=str(player_id),
        user_id=str(user_id),
        name=str(name),
        room_id=str(room_id),
        level=int(level),
        is_admin=bool(is_admin),
        deleted=bool(deleted),
        created_at=float(created_at),
        banned=bool(banned),
        banned_until=None if banned_until is None else float(banned_until),
        ban_reason=None if ban_reason is None else str(ban_reason),
    )


def mute_records(
    personal: Sequence[Sequence[Any]], global_row: Sequence[Any] | None
) -> MuteRecords:
    return MuteRecords(
        personal={str(target): expires for target, expires in personal},
        globally_muted=global_row is not None,
        global_expires_at=None if global_row is None else global_row[0],
    )


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What both sqlite3 and psycopg connections offer."""

    def execute(self, query: Any, params: Any = ...) -> Any: ...


class SqlBackend:
    """Every query, written once; a backend supplies connections, transactions and its dialect.

    ``?`` placeholders are the dialect's: :meth:`sql` translates them where needed.
    """

    description: str
    max_threads: int
    oldest_first: str  # ORDER BY clause; ties within one batch broken by insertion order

    def sql(self, query: str) -> str:
        return query

    def _connection(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _execute(self, conn: Connection, query: str, params: Sequence[object] = ()) -> Cursor:
        cursor: Cursor = conn.execute(self.sql(query), tuple(params))
        return cursor

    def check_writable(self) -> None:
        """Prove the database takes a write now (read-only files, locks, roles show up here)."""
        with self._transaction() as conn:
            self._execute(conn, WRITE_META, ("last_start", str(time.time())))

    def apply(self, writes: Sequence[Write]) -> None:
        """Every write in one transaction: all of them land, or none."""
        now = time.time()
        with self._transaction() as conn:
            for write in writes:
                self._execute(conn, *write_statement(write, now))

    def add_players(
        self,
        names: Sequence[str],
        *,
        room_id: str,
        is_admin: bool = False,
        user_id: str | None = None,
        password_hash: str | None = None,
    ) -> list[PlayerRecord]:
        """Create one player per name in a single transaction: all of them, or none.

        Each player gets a new user unless ``user_id`` names an existing one, and the password
        ``password_hash`` when one is given.
        """
        records = new_records(names, room_id, is_admin, user_id)
        with self._transaction() as conn:
            if user_id is not None and not self._user_exists(conn, user_id):
                raise StoreError(f"User '{user_id}' not found")
            for record in records:
                if user_id is None:
                    self._execute(conn, INSERT_USER, (record.user_id, record.created_at))
                self._insert_player(conn, record)
                if password_hash is not None:
                    params = (record.player_id, password_hash, record.created_at)
                    self._execute(conn, SET_PASSWORD, params)
        return records

    def _insert_player(self, conn: Connection, record: PlayerRecord) -> None:
        raise NotImplementedError  # name clashes are reported in each dialect's own way

    def list_players(self) -> list[PlayerRecord]:
        return self._select_many(f"WHERE NOT deleted {self.oldest_first}")

    def players_of_user(self, user_id: str) -> list[PlayerRecord]:
        """The user's players that are not deleted, oldest first."""
        return self._select_many(f"WHERE user_id = ? AND NOT deleted {self.oldest_first}", user_id)

    def get_player(self, player_id: str) -> PlayerRecord | None:
        """The player with this id, deleted or not (the caller checks ``.deleted``)."""
        return self._select_one("WHERE id = ?", player_id)

    def find_player_by_name(self, name: str) -> PlayerRecord | None:
        return self._select_one("WHERE name_key = ? AND NOT deleted", name.lower())

    def first_active_player(self, user_id: str) -> PlayerRecord | None:
        """The user's oldest player that is not deleted."""
        return self._select_one(f"WHERE user_id = ? AND NOT deleted {self.oldest_first}", user_id)

    def user_exists(self, user_id: str) -> bool:
        with self._connection() as conn:
            return self._user_exists(conn, user_id)

    def delete_player(self, player_id: str) -> None:
        """The player can no longer play: their password and every mute by or of them go; the
        row stays, inactive, so its id keeps its history and its name stays taken (a deleted
        demo admin must not come back at the next start)."""
        with self._transaction() as conn:
            query = "UPDATE players SET deleted = ? WHERE id = ?"
            if self._execute(conn, query, (True, player_id)).rowcount == 0:
                raise StoreError(f"Player '{player_id}' not found")
            for statement in DELETE_PLAYER_DATA:
                self._execute(conn, statement, (player_id,) * statement.count("?"))

    def rename_player(self, player_id: str, new_name: str) -> PlayerRecord:
        """Give an active player a new name (the rules of ``add_players``; unique in any case).

        A change of case only ("carter" to "Carter") is allowed: the name is the same player's.
        """
        check_names([new_name])
        with self._transaction() as conn:
            self._active_or_refuse(conn, player_id)
            taken = "SELECT 1 FROM players WHERE name_key = ? AND id <> ?"
            if self._execute(conn, taken, (new_name.lower(), player_id)).fetchone() is not None:
                raise DuplicateName(new_name)
            rename = "UPDATE players SET name = ?, name_key = ? WHERE id = ?"
            self._execute(conn, rename, (new_name, new_name.lower(), player_id))
        return self._changed(player_id)

    def set_admin(self, player_id: str, is_admin: bool) -> PlayerRecord:
        with self._transaction() as conn:
            self._active_or_refuse(conn, player_id)
            query = "UPDATE players SET is_admin = ? WHERE id = ?"
            self._execute(conn, query, (is_admin, player_id))
        return self._changed(player_id)

    def _active_or_refuse(self, conn: Connection, player_id: str) -> None:
        query = "SELECT 1 FROM players WHERE id = ? AND NOT deleted"
        if self._execute(conn, query, (player_id,)).fetchone() is None:
            raise StoreError(f"Player '{player_id}' not found")

    def _changed(self, player_id: str) -> PlayerRecord:
        record = self.get_player(player_id)
        if record is None:  # players are never removed, only marked deleted
            raise StoreError(f"Player '{player_id}' not found")
        return record

    def load_mutes(self, player_id: str, now: float) -> MuteRecords:
        """The player's own mutes and their global mute, without the expired ones."""
        with self._connection() as conn:
            personal = self._execute(conn, LOAD_PERSONAL_MUTES, (player_id, now)).fetchall()
            global_row = self._execute(conn, LOAD_GLOBAL_MUTE, (player_id, now)).fetchone()
        return mute_records(personal, global_row)

    def set_password(self, player_id: str, password_hash: str) -> None:
        """Set (or replace) the player's password hash; the player must exist, not deleted."""
        with self._transaction() as conn:
            query = "SELECT 1 FROM players WHERE id = ? AND NOT deleted"
            if self._execute(conn, query, (player_id,)).fetchone() is None:
                raise StoreError(f"Player '{player_id}' not found")
            self._execute(conn, SET_PASSWORD, (player_id, password_hash, time.time()))

    def password_hash_by_name(self, name: str) -> tuple[PlayerRecord, str] | None:
        """The active player of this name (any case) and its hash; None without a password."""
        with self._connection() as conn:
            row = self._execute(conn, LOGIN_QUERY, (name.lower(),)).fetchone()
        return None if row is None else (record_from_row(row[:-1]), str(row[-1]))

    def create_invites(self, codes: Sequence[str]) -> None:
        """Store fresh single-use invite codes, all in one transaction."""
        now = time.time()
        with self._transaction() as conn:
            for code in codes:
                self._execute(conn, INSERT_INVITE, (code, now))

    def register_with_invite(
        self, name: str, password_hash: str, code: str, room_id: str
    ) -> PlayerRecord:
        """Create a player (with a new user and the password) and consume ``code``, atomically.

        The code is checked first, so without a valid one nobody learns whether a name is taken.
        """
        [record] = new_records([name], room_id, False, None)
        with self._transaction() as conn:
            if self._execute(conn, UNUSED_INVITE, (code,)).fetchone() is None:
                raise InvalidInvite()
            self._execute(conn, INSERT_USER, (record.user_id, record.created_at))
            self._insert_player(conn, record)
            self._execute(conn, SET_PASSWORD, (record.player_id, password_hash, record.created_at))
            # A concurrent registration may have taken the code since the check (PostgreSQL).
            used = self._execute(conn, USE_INVITE, (record.created_at, record.player_id, code))
            if used.rowcount != 1:
                raise InvalidInvite()
        return record

    def _user_exists(self, conn: Connection, user_id: str) -> bool:
        found = self._execute(conn, "SELECT 1 FROM users WHERE id = ?", (user_id,)).fetchone()
        return found is not None

    def _select_many(self, where: str, *params: object) -> list[PlayerRecord]:
        with self._connection() as conn:
            query = f"SELECT {PLAYER_COLUMNS} FROM players {where}"
            return [record_from_row(row) for row in self._execute(conn, query, params).fetchall()]

    def _select_one(self, where: str, *params: object) -> PlayerRecord | None:
        found = self._select_many(f"{where} LIMIT 1", *params)
        return found[0] if found else None
