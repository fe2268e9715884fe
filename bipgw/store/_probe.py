# -*- test-case-name: tests.unit.store.test_probe -*-
"""The store seen from outside, for metrics and readiness.

  - L{time_statements}: every SQL statement's duration, by operation
    (C{select}, C{insert}, C{update}, C{delete}, C{other}), reported to a
    callable (the gateway's C{bipgw_store_seconds} histogram), with
    SQLAlchemy's C{before_cursor_execute}/C{after_cursor_execute} events
    (the profiling recipe of its documentation), so no query of the store
    is touched;
  - L{probe}: one round trip to the database (C{SELECT 1}) through the
    store's own threads, which is what C{/readyz} means by "store reachable".

The memory store has no statements and is always reachable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import Connection, event, text
from twisted.internet.defer import Deferred, succeed

from bipgw.store._interfaces import IStore
from bipgw.store._sql import SqlStore

__all__ = ["OPERATIONS", "probe", "time_statements"]

#: The operations statements are sorted into.
OPERATIONS: Final = ("select", "insert", "update", "delete", "other")
_STARTED: Final = "bipgw_statement_started"


def operation(statement: str) -> str:
    """The L{OPERATIONS} entry of an SQL statement, by its first word."""
    word = statement.lstrip()[:6].lower()
    return word if word in OPERATIONS else "other"


def time_statements(store: IStore, observe: Callable[[str, float], object]) -> bool:
    """Report each SQL statement C{store} runs: C{observe(operation, seconds)}.

    Called in the store's threads (C{observe} must be thread-safe, as
    Prometheus' histograms are).

    @return: whether C{store} runs SQL statements (C{False}: the memory store).
    """
    if not isinstance(store, SqlStore):
        return False
    engine = store.engine  # the store's own engine: its statements, not a copy's

    def before(conn: Connection, *args: Any) -> None:
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    def after(conn: Connection, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info.get(_STARTED)
        if started:
            observe(operation(statement), time.perf_counter() - started.pop())

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    return True


def probe(store: IStore) -> Deferred[None]:
    """Fire once the database answered C{SELECT 1}; fail if it cannot be reached."""
    if not isinstance(store, SqlStore):
        return succeed(None)
    d: Deferred[Any] = store._read(lambda c: c.execute(text("SELECT 1")).scalar())
    return d.addCallback(lambda _: None)
