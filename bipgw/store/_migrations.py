# -*- test-case-name: tests.unit.store.test_migrations -*-
"""Schema migrations: an ordered list of steps and a C{schema_version} table.

Why not Alembic: it is not among the project's dependencies, and what it
adds (revision graphs, autogenerate, an C{env.py} and an ini file per
deployment) is machinery the gateway would have to ship and operators to
run by hand.  bipgw migrates itself when it opens its database, on SQLite
and PostgreSQL alike, so a list of numbered steps applied in one
transaction is all it needs, and a test checks the result matches
L{bipgw.store._schema}.  If the schema ever needs branching histories,
Alembic can take over from the recorded version.

Rules for a new step: append it with the next number, make it express the
I{change} (add a column, an index...), and freeze step 1 by copying the
tables it creates into it before changing L{_schema} (step 1 uses the
current table definitions only while it is the only step).

Running L{migrate} again is a no-op; two processes migrating at once are
serialised by the database (PostgreSQL: a table lock; SQLite: the write
lock taken by C{BEGIN IMMEDIATE}).
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import frozen
from sqlalchemy import Connection, func, insert, inspect, select, text

import bipgw.store._schema as _schema
from bipgw.store._types import StoreError


class SchemaVersionError(StoreError):
    """The database was written by a newer bipgw, with steps this one lacks."""


@frozen
class Migration:
    """One schema change.

    @ivar version: its number; steps apply in increasing order.
    @ivar description: what it does, recorded in C{schema_version}.
    @ivar apply: runs the change on a connection inside the transaction.
    """

    version: int
    description: str
    apply: Callable[[Connection], None]


#: The tables step 1 created (frozen: later tables come with later steps).
_STEP1_TABLES = frozenset(
    {
        "cards",
        "card_keys",
        "msisdn_history",
        "tenants",
        "services",
        "sessions",
        "session_events",
        "apdu_traces",
        "audit_log",
        "imports",
    }
)


def _initial(connection: Connection) -> None:
    tables = [t for t in _schema.metadata.sorted_tables if t.name in _STEP1_TABLES]
    _schema.metadata.create_all(connection, tables=tables, checkfirst=True)


def _feeds(connection: Connection) -> None:
    tables = [_schema.partners, _schema.feed_files]
    _schema.metadata.create_all(connection, tables=tables, checkfirst=True)


def _portal(connection: Connection) -> None:
    tables = [_schema.operators, _schema.service_requests, _schema.session_owners]
    _schema.metadata.create_all(connection, tables=tables, checkfirst=True)


def _card_key_versions(connection: Connection) -> None:
    _schema.metadata.create_all(connection, tables=[_schema.card_key_versions], checkfirst=True)


def _audit_origin(connection: Connection) -> None:
    # Step 1 builds audit_log from the current schema, which has the column
    # and its index already: add them only where an older step 1 did not.
    found = inspect(connection)
    if "origin" not in {c["name"] for c in found.get_columns("audit_log")}:
        connection.execute(
            text("ALTER TABLE audit_log ADD COLUMN origin VARCHAR(255) NOT NULL DEFAULT ''")
        )
    if "ix_audit_log_at" not in {i["name"] for i in found.get_indexes("audit_log")}:
        connection.execute(text("CREATE INDEX ix_audit_log_at ON audit_log (at)"))


def _campaigns(connection: Connection) -> None:
    tables = [_schema.campaigns, _schema.campaign_cards]
    _schema.metadata.create_all(connection, tables=tables, checkfirst=True)


#: Every step, in order.  Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "cards, card keys, MSISDN history, tenants, services, sessions,"
        " session events, APDU traces, audit log, imports",
        _initial,
    ),
    Migration(2, "file feed partners, and the files they delivered (by content hash)", _feeds),
    # Issue 10, the portal (reserved number 3).
    Migration(
        3,
        "portal operators, tenants' service requests, and which tenant opened each session",
        _portal,
    ),
    # Issue 12, card key lifecycle.
    Migration(
        4, "card key versions: pending, active, retired, imported or derived", _card_key_versions
    ),
    # Issue 10, the audit trail's origin.
    Migration(
        5, "audit log: where each action came from (origin), and an index by time", _audit_origin
    ),
    Migration(6, "campaigns, and each campaign card's state and result", _campaigns),
)

#: The schema version this code writes and expects.
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(connection: Connection) -> int:
    """The database's schema version (0: empty database)."""
    if not connection.dialect.has_table(connection, "schema_version"):
        return 0
    version = connection.execute(select(func.max(_schema.schema_version.c.version))).scalar()
    return int(version or 0)


def migrate(connection: Connection, *, now: float) -> list[int]:
    """Bring the schema up to L{LATEST_VERSION}; the versions applied.

    Call inside a transaction (the SQL store opens one with the write
    lock); every step and its C{schema_version} row commit together, or
    none does.

    @raise SchemaVersionError: if the database is newer than this code.
    """
    _schema.schema_version.create(connection, checkfirst=True)
    if connection.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE schema_version IN EXCLUSIVE MODE"))
    found = current_version(connection)
    if found > LATEST_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {found}, but this bipgw knows versions up to"
            f" {LATEST_VERSION}: upgrade bipgw, or use another database"
        )
    applied = []
    for step in MIGRATIONS:
        if step.version <= found:
            continue
        step.apply(connection)
        connection.execute(
            insert(_schema.schema_version).values(
                version=step.version, description=step.description, applied_at=now
            )
        )
        applied.append(step.version)
    return applied
