# -*- test-case-name: tests.unit.store.test_sqlite -*-
"""SQLAlchemy engines set up the way the store needs them.

SQLite (the default, a file created on first use, mode 0600) runs in WAL
mode with C{synchronous=FULL}, so a committed OTA counter survives a power
cut.  The sqlite3 driver's own transaction handling is switched off and
the store emits C{BEGIN} itself (C{BEGIN IMMEDIATE} for writes, so
concurrent writers queue on the lock for up to 30 s instead of failing),
the recipe the SQLAlchemy documentation gives for correct transactions and
transactional DDL on SQLite.  PostgreSQL is used by URL
(C{postgresql+psycopg://user@host/db}).
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from bipgw.store._types import StoreError

#: The connection execution option that marks a write transaction.
WRITE_OPTION = "bipgw_write"

_SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    "foreign_keys=ON",
    "busy_timeout=30000",
)


def create_sql_engine(url: str) -> Engine:
    """An SQLAlchemy engine for C{url} (C{sqlite:///...}, C{postgresql+psycopg://...}).

    @raise StoreError: for an unsupported URL or a missing database driver.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, parsed.database)
        if backend == "postgresql":
            return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as e:
        raise StoreError(
            f"no driver for {parsed.drivername} ({e}); for PostgreSQL install"
            " 'psycopg[binary]' and use postgresql+psycopg://..."
        ) from None
    raise StoreError(
        f"unsupported database {backend!r}: use sqlite:///PATH or postgresql+psycopg://..."
    )


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database in (None, "", ":memory:"):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        assert database is not None
        _create_private_file(database)
        engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _create_private_file(path: str) -> None:
    # The database holds identities and sealed keys: create it 0600 (SQLite
    # gives its -wal and -shm files the same mode) rather than umask-wide.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise StoreError(f"cannot create the database file {path}: {e.strerror}") from None
    os.close(fd)


def describe_error(error: BaseException) -> str:
    """A database error in words, without the statement's parameters.

    C{str(error)} lists the bound parameters (sealed keys among them); the
    driver's own message does not.
    """
    cause = getattr(error, "orig", None) or error
    text = " ".join(str(cause).split())
    return f"database error ({type(cause).__name__}): {text[:300]}"
