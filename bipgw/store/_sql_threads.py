# -*- test-case-name: tests.unit.store.test_sqlite -*-
"""SQL off the reactor thread: one engine's work in a thread pool, each in a transaction.

L{SqlThreads} runs each piece of work on its own connection in the pool's
threads (C{deferToThreadPool}), in one transaction that commits before its
Deferred fires, and turns a database error into a L{StoreError} naming it
(L{bipgw.store._engine.describe_error}).  It counts the work under way, so
that L{SqlThreads.close} waits for it before it releases the connections
and, when the pool is its own, the threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred, fail
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from bipgw.store._bulk import Rollback
from bipgw.store._engine import WRITE_OPTION, describe_error
from bipgw.store._types import StoreError

__all__ = ["SqlThreads"]

_T = TypeVar("_T")


class SqlThreads:
    """An engine's work, run in a thread pool (module docstring).

    @param engine: the database.
    @param reactor: for C{callFromThread} and the shutdown trigger.
    @param threadpool: where the work runs.
    @param owns_pool: whether the pool is this one's to start and stop (it
        is then stopped at reactor shutdown too); else the caller's.
    """

    def __init__(
        self, engine: Engine, *, reactor: Any, threadpool: ThreadPool, owns_pool: bool
    ) -> None:
        self.engine = engine
        self._reactor = reactor
        self._pool = threadpool
        self._owns_pool = owns_pool
        self._pending = 0
        self._idle: list[Deferred[None]] = []
        self._closed: Deferred[None] | None = None
        self._trigger: Any = None
        if owns_pool:
            self._trigger = reactor.addSystemEventTrigger("during", "shutdown", self._stop_pool)

    @property
    def closed(self) -> bool:
        """Whether L{close} was called: no work is taken any more."""
        return self._closed is not None

    def start(self) -> None:
        """Start the pool, if it is this one's and not started yet."""
        if self._owns_pool and not self._pool.started:
            self._pool.start()

    def run(self, work: Callable[[Connection], _T], *, write: bool) -> Deferred[_T]:
        """Run C{work(connection)} in one transaction (a write one if C{write});
        a L{Rollback} it raises is rolled back and its value returned."""

        def in_transaction() -> _T:
            with self.engine.connect() as connection:
                connection.execution_options(**{WRITE_OPTION: write})
                try:
                    with connection.begin():
                        return work(connection)
                except Rollback as rollback:
                    return rollback.value  # type: ignore[return-value]

        return self.call(in_transaction)

    def call(self, work: Callable[[], _T]) -> Deferred[_T]:
        """Run C{work()} in the pool (it opens its own connections)."""
        if self._closed is not None:
            return fail(StoreError("the store is closed"))

        def in_thread() -> _T:
            try:
                return work()
            except SQLAlchemyError as e:
                raise StoreError(describe_error(e)) from None

        self._pending += 1
        d = deferToThreadPool(self._reactor, self._pool, in_thread)
        return d.addBoth(self._done)

    def _done(self, result: _T) -> _T:
        self._pending -= 1
        if not self._pending:
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)
        return result

    def close(self) -> Deferred[None]:
        """Wait for the work under way, then release connections and threads."""
        if self._closed is not None:
            return self._closed
        idle: Deferred[None] = Deferred()
        if self._pending:
            self._idle.append(idle)
        else:
            idle.callback(None)

        def dispose(_: object) -> Deferred[None]:
            return deferToThreadPool(self._reactor, self._pool, self.engine.dispose)

        def stop(result: object) -> object:
            if self._trigger is not None:
                self._reactor.removeSystemEventTrigger(self._trigger)
                self._trigger = None
            self._stop_pool()
            return result

        idle.addCallback(dispose)
        idle.addBoth(stop)
        self._closed = idle
        return idle

    def _stop_pool(self) -> None:
        if self._owns_pool and self._pool.started:
            self._pool.stop()
