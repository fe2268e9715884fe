# -*- test-case-name: tests.unit.store.test_sqlite -*-
"""The SQL store's write transactions, as functions of a connection.

Each function runs inside one transaction opened by L{SqlStore}, in a pool
thread; raising rolls it back.  Only portable SQLAlchemy Core constructs
are used (C{UPDATE ... RETURNING} exists in SQLite since 3.35 and in
PostgreSQL), so the same code serves both databases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

import bipgw.store._rows as r
import bipgw.store._schema as s
from bipgw.store._types import (
    FINAL_SESSION_STATES,
    MAX_OTA_COUNTER,
    ApduTraceRecord,
    CounterExhaustedError,
    ImportReport,
    SessionEvent,
    SessionRecord,
    StoreConflictError,
    UnknownRecordError,
)


def require_card(c: Connection, iccid: str) -> None:
    """@raise UnknownRecordError: if there is no card C{iccid}."""
    if c.execute(select(s.cards.c.iccid).where(s.cards.c.iccid == iccid)).first() is None:
        raise UnknownRecordError(f"no card with ICCID {iccid}")


def next_ota_counter(c: Connection, iccid: str) -> int:
    """Increment and return the card's counter; see L{IStore.next_ota_counter}."""
    column = s.cards.c.ota_counter
    value = c.execute(
        update(s.cards)
        .where(s.cards.c.iccid == iccid, column < MAX_OTA_COUNTER)
        .values(ota_counter=column + 1)
        .returning(column)
    ).scalar()
    if value is None:
        require_card(c, iccid)
        raise CounterExhaustedError(f"the OTA counter of card {iccid} is exhausted")
    return int(value)


CounterRequest = tuple[str, int | None]
"""C{(iccid, None)}: the next counter; C{(iccid, at_least)}: raise it to at least that."""


def counter_batch(c: Connection, requests: Sequence[CounterRequest]) -> list[int | Exception]:
    """Run counter requests in one transaction, in order; an outcome each.

    A request that fails on its own (no such card, counter exhausted) wrote
    nothing, so it is returned as its exception rather than raised: the
    others of the batch still commit (L{bipgw.store._group}).
    """
    outcomes: list[int | Exception] = [0] * len(requests)
    # Rows are locked in ICCID order (a card's own requests keep theirs):
    # two nodes committing batches at once on one PostgreSQL then wait for
    # each other instead of deadlocking.
    order = sorted(range(len(requests)), key=lambda i: requests[i][0])
    for i in order:
        iccid, at_least = requests[i]
        try:
            if at_least is None:
                outcomes[i] = next_ota_counter(c, iccid)
            else:
                outcomes[i] = raise_ota_counter(c, iccid, at_least)
        except (UnknownRecordError, CounterExhaustedError) as e:
            outcomes[i] = e
    return outcomes


def raise_ota_counter(c: Connection, iccid: str, at_least: int) -> int:
    """Raise the card's counter to C{at_least}; see L{IStore.raise_ota_counter}."""
    column = s.cards.c.ota_counter
    require_card(c, iccid)
    c.execute(
        update(s.cards)
        .where(s.cards.c.iccid == iccid, column < at_least)
        .values(ota_counter=at_least)
    )
    return int(c.execute(select(column).where(s.cards.c.iccid == iccid)).scalar_one())


def replace(c: Connection, table: Any, key: Any, values: dict[str, Any]) -> None:
    """Update the row matching C{key} with C{values}, or insert it."""
    if not c.execute(update(table).where(key).values(**values)).rowcount:
        c.execute(insert(table).values(**values))


def history_rows(
    sessions: Sequence[SessionRecord],
    events: Sequence[SessionEvent],
    traces: Sequence[ApduTraceRecord],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of L{write_history}, made on the caller's thread."""
    return (
        [r.session_values(record) for record in sessions],
        [r.event_values(e) for e in events],
        [r.trace_values(t) for t in traces],
    )


def write_history(
    c: Connection,
    snapshots: list[dict[str, Any]],
    events: list[dict[str, Any]],
    traces: list[dict[str, Any]],
) -> None:
    """Snapshots, events and traces in one transaction; see L{IStore.write_history}."""
    save_snapshots(c, snapshots)
    if events:
        c.execute(insert(s.session_events), events)
    if traces:
        c.execute(insert(s.apdu_traces), traces)


def save_snapshots(c: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Create or replace session rows, as one statement run for every row.

    SQLite and PostgreSQL both have C{INSERT ... ON CONFLICT DO UPDATE}; any
    other database takes the row-by-row L{replace}.
    """
    if not rows:
        return
    name = c.dialect.name
    if name not in ("sqlite", "postgresql"):
        for values in rows:
            replace(c, s.sessions, s.sessions.c.session_id == values["session_id"], values)
        return
    from sqlalchemy.dialects import postgresql, sqlite

    statement: Any = (sqlite.insert if name == "sqlite" else postgresql.insert)(s.sessions)
    columns = {k: statement.excluded[k] for k in rows[0] if k != "session_id"}
    c.execute(statement.on_conflict_do_update(index_elements=["session_id"], set_=columns), rows)


def delete_tenant(c: Connection, tenant_id: str) -> None:
    """Remove a tenant without services; see L{IStore.delete_tenant}."""
    used = select(s.services.c.service_id).where(s.services.c.tenant_id == tenant_id)
    if c.execute(used.limit(1)).first() is not None:
        raise StoreConflictError(f"tenant {tenant_id!r} still has services")
    if not c.execute(delete(s.tenants).where(s.tenants.c.tenant_id == tenant_id)).rowcount:
        raise UnknownRecordError(f"no tenant {tenant_id!r}")


def put_service(c: Connection, values: dict[str, Any]) -> None:
    """Create or replace a service of an existing tenant."""
    tenant = select(s.tenants.c.tenant_id).where(s.tenants.c.tenant_id == values["tenant_id"])
    if c.execute(tenant).first() is None:
        raise UnknownRecordError(f"no tenant {values['tenant_id']!r}")
    replace(c, s.services, s.services.c.service_id == values["service_id"], values)


def delete_where(c: Connection, table: Any, key: Any, what: str) -> None:
    """Delete the row matching C{key}; @raise UnknownRecordError: naming C{what}."""
    if not c.execute(delete(table).where(key)).rowcount:
        raise UnknownRecordError(f"no {what}")


def update_where(c: Connection, table: Any, key: Any, values: dict[str, Any], what: str) -> None:
    """Update the row matching C{key}; @raise UnknownRecordError: naming C{what}."""
    if not c.execute(update(table).where(key).values(**values)).rowcount:
        raise UnknownRecordError(f"no {what}")


def insert_returning_id(c: Connection, table: Any, values: dict[str, Any]) -> int:
    """Insert one row; its generated primary key."""
    key = c.execute(insert(table).values(**values)).inserted_primary_key
    if not key or key[0] is None:
        raise UnknownRecordError(f"the database returned no id for the new {table.name} row")
    return int(key[0])


def insert_rows(c: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert C{rows} into C{table} in one statement."""
    c.execute(insert(table), rows)


def record_import(c: Connection, values: dict[str, Any]) -> ImportReport:
    """Insert an import report; the report as stored, with its id."""
    import_id = insert_returning_id(c, s.imports, values)
    query = select(s.imports).where(s.imports.c.import_id == import_id)
    return r.import_from_row(c.execute(query).one())


_CHUNK = 500
"""Ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits."""


def end_unfinished(c: Connection, reason: str, detail: str, at: float, opened_before: float) -> int:
    """End every session opened before C{opened_before} not in a final state (in C{c}'s
    transaction): C{failed} with C{reason}, and one transition each."""
    t, e = s.sessions.c, s.session_events.c
    final = sorted(FINAL_SESSION_STATES)
    rows = c.execute(
        select(t.session_id, t.state).where(t.state.not_in(final), t.opened_at <= opened_before)
    ).all()
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        ids = [row.session_id for row in chunk]
        last = dict(
            c.execute(
                select(e.session_id, func.max(e.seq)).where(e.session_id.in_(ids))
                .group_by(e.session_id)
            ).all()
        )  # fmt: skip
        c.execute(
            update(s.sessions)
            .where(t.session_id.in_(ids), t.state.not_in(final))
            .values(state="failed", updated_at=at, ended_at=at, reason=reason, detail=detail)
        )
        events = [
            SessionEvent(
                row.session_id,
                int(last.get(row.session_id) or 0) + 1,
                at,
                "failed",
                previous=row.state,
                reason=reason,
                detail=detail,
            )
            for row in chunk
        ]
        c.execute(insert(s.session_events), [r.event_values(ev) for ev in events])
    return len(rows)
