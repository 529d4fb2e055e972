"""The store: players, users, mutes, passwords and invites behind one interface, with two backends.

- :class:`~mythos_rt.runtime.store.base.Backend` is the interface both backends implement:
  synchronous, called from worker threads.  The CLI uses it directly (one process, one call at
  a time, no event loop needed).
- :class:`Store` is the server's asynchronous view of a backend: every call runs in a worker
  thread behind a limiter sized for the backend.  Only the store writer
  (:mod:`mythos_rt.runtime.persistence`) writes through it during play.
- :func:`open_backend` picks the backend from the settings: SQLite in the data directory by
  default, PostgreSQL when ``DATABASE_URL`` is a ``postgresql://`` URL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import trio

from mythos_rt.runtime.store.base import (
    DEMO_PLAYERS,
    Backend,
    DuplicateName,
    InvalidInvite,
    MuteRecords,
    PermanentStoreError,
    PlayerRecord,
    StoreError,
    TransientStoreError,
    ensure_demo_players,
)
from mythos_rt.settings import Settings

__all__ = [
    "DEMO_PLAYERS",
    "Backend",
    "DuplicateName",
    "InvalidInvite",
    "MuteRecords",
    "PermanentStoreError",
    "PlayerRecord",
    "Store",
    "StoreError",
    "TransientStoreError",
    "ensure_demo_players",
    "open_backend",
]

P = ParamSpec("P")
T = TypeVar("T")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Store:
    """Runs backend calls in worker threads, at most ``backend.max_threads`` at once."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._limiter = trio.CapacityLimiter(backend.max_threads)

    async def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await trio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self._limiter
        )


def open_backend(settings: Settings) -> Backend:
    """The configured backend, migrated and ready; ``StoreError`` names what is wrong."""
    url = settings.database_url
    if not url:
        from mythos_rt.runtime.store.sqlite import SqliteBackend

        return SqliteBackend.open(settings.store_path)
    if url.startswith(POSTGRES_SCHEMES):
        # Imported only here: psycopg is an optional extra (mythos_rt[postgres]).  Without it,
        # one line naming the extra (exit 2), not a ModuleNotFoundError traceback.
        try:
            from mythos_rt.runtime.store.postgres import PostgresBackend
        except ImportError as exc:
            raise StoreError(
                f"DATABASE_URL is PostgreSQL but psycopg is not installed ({exc.name}):"
                " pip install 'mythos_rt[postgres]'"
            ) from exc

        return PostgresBackend.open(url)
    raise StoreError("DATABASE_URL must start with postgresql:// (unset it for SQLite)")
