# -*- test-case-name: tests.unit.store.test_audit -*-
"""The audit trail, searched: who did what, filtered by actor, action and time.

L{IStore.add_audit} appends and L{IStore.list_audit} pages through
everything; L{find_audit} answers the operator's questions (C{bipgw audit
list --actor cli:root --action tenant --since 2026-12-01}, the portal's
audit page) with one query on the SQL store (bound parameters only, so an
actor or action holding SQL metacharacters is just text that matches
nothing) and the same filter over the memory store's list.

An C{action} filter matches the action itself or, given without a dot,
every action on that object: C{tenant} matches C{tenant.add} and
C{tenant.disable}.
"""

from __future__ import annotations

from typing import Any, Final

import attrs
from sqlalchemy import func, insert, or_, select
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred

import bipgw.store._schema as s
from bipgw.store._engine import WRITE_OPTION, create_sql_engine, describe_error
from bipgw.store._interfaces import IStore
from bipgw.store._migrations import migrate
from bipgw.store._rows import audit_from_row, audit_values
from bipgw.store._sql import SqlStore
from bipgw.store._types import AuditRecord, StoreError

__all__ = ["MAX_AUDIT_LIMIT", "AuditFilter", "add_audit_now", "find_audit"]

#: The most records one search returns.
MAX_AUDIT_LIMIT: Final = 10_000


def _limit(value: int) -> None:
    if not 1 <= value <= MAX_AUDIT_LIMIT:
        raise ValueError(f"limit {value} is not 1 to {MAX_AUDIT_LIMIT}")


@attrs.frozen(kw_only=True)
class AuditFilter:
    """Which audit records to return, newest first.

    @ivar actor: only this actor's (exact).
    @ivar action: only this action, or every action on this object when
        it has no dot (C{tenant}: C{tenant.add}, C{tenant.disable}...).
    @ivar since: only records at or after this time (epoch seconds).
    @ivar before_id: only records older than this one (the next page).
    @ivar limit: at most this many (1 to L{MAX_AUDIT_LIMIT}).
    """

    actor: str | None = None
    action: str | None = None
    since: float | None = None
    before_id: int | None = None
    limit: int = attrs.field(default=100, validator=lambda _, __, v: _limit(v))

    def matches(self, record: AuditRecord) -> bool:
        """Whether C{record} passes the filter (the limit aside)."""
        if self.actor is not None and record.actor != self.actor:
            return False
        if self.action is not None and not _action_matches(self.action, record.action):
            return False
        if self.since is not None and record.at < self.since:
            return False
        return self.before_id is None or (record.audit_id or 0) < self.before_id


def _action_matches(wanted: str, action: str) -> bool:
    return action == wanted or ("." not in wanted and action.startswith(wanted + "."))


def find_audit(store: IStore, query: AuditFilter) -> Deferred[list[AuditRecord]]:
    """The audit records C{query} selects, newest first."""
    if isinstance(store, SqlStore):
        return store._all(_select(query), audit_from_row)
    listed: Deferred[list[AuditRecord]] = store.list_audit(limit=2**62)
    return listed.addCallback(
        lambda records: [r for r in records if query.matches(r)][: query.limit]
    )


def _select(query: AuditFilter) -> Any:
    t = s.audit_log.c
    conditions = []
    if query.actor is not None:
        conditions.append(t.actor == query.actor)
    if query.action is not None:
        if "." in query.action:
            conditions.append(t.action == query.action)
        else:
            # The prefix compared by equality of the first characters, not by
            # LIKE ('%' and '_' in it stay literal) nor by a range (a
            # collation may not order '.' and '/' as bytes do).
            prefix = query.action + "."
            conditions.append(
                or_(
                    t.action == query.action,
                    func.substr(t.action, 1, len(prefix)) == prefix,
                )
            )
    if query.since is not None:
        conditions.append(t.at >= query.since)
    if query.before_id is not None:
        conditions.append(t.audit_id < query.before_id)
    statement = select(s.audit_log).where(*conditions)
    return statement.order_by(t.audit_id.desc()).limit(query.limit)


def add_audit_now(url: str, record: AuditRecord) -> None:
    """Append C{record} to the audit log of the database C{url}, synchronously,
    for a command that changes something outside the store (the keystore)
    and runs no reactor.  The schema is migrated first, as opening the store
    would.  A C{memory:} URL names a database private to one process: nothing
    is written.

    @raise StoreError: the database cannot be opened or written.
    """
    if url.strip() == "memory:":
        return
    engine = create_sql_engine(url)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            with connection.begin():
                migrate(connection, now=record.at)
                connection.execute(insert(s.audit_log).values(audit_values(record)))
    except SQLAlchemyError as e:
        raise StoreError(f"cannot write the audit record: {describe_error(e)}") from None
    finally:
        engine.dispose()
