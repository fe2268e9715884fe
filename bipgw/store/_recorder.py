# -*- test-case-name: tests.unit.store.test_recorder -*-
"""Session history written behind, in batches: the engine's recorder on the store.

A session produces a dozen records (a snapshot when it opens, when its card
is found and when it ends; an event per transition; a trace per script).
Written one by one, each is a database transaction, and on SQLite with
C{synchronous=FULL} each transaction waits for the disk (a few
milliseconds).  The OTA counter allocation, which I{must} be durable before
a push goes out, would then queue behind history writes that need not be,
and the gateway would push at a fraction of the rate it can.

L{BatchingRecorder} keeps what the engine hands it and writes it every
C{interval} seconds (or as soon as C{batch} records wait): the latest
snapshot of each session (earlier ones are superseded), every event and
every trace, all in one write (L{IStore.write_history}: one transaction,
one disk flush on SQLite).  Records of one session keep
their order, and a session's row is written no later than its events.  On
stop, everything still waiting is written before the store closes.  If the
store falls far behind, the oldest waiting records are dropped and counted
rather than let memory grow without bound.

A session's I{opening} snapshot (L{BatchingRecorder.record_opened}) is the
exception to writing behind: the doors wait for it before they tell the
platform the session exists (C{accepted}, HTTP C{201}), so it goes in the
next write, started at once when none is under way (otherwise as soon as
the one under way ends), and its Deferred fires when that write has
committed.  This is a group commit: every session opened while a write is
under way shares the next transaction, so the cost per session stays one
row in a batch, not a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from bipgw.core import ApduTrace, RateLimitedLog, SessionEvent, SessionId, SessionStatus
from bipgw.store._adapters import event_record, session_record, trace_record
from bipgw.store._interfaces import IStore

__all__ = ["BatchingRecorder"]

_MAX_WAITING: Final = 200_000
"""Records kept at most while the store is behind (then the oldest are dropped)."""


class BatchingRecorder:
    """An engine C{ISessionRecorder} that writes to the store in batches.

    @param store: where the history goes.
    @param clock: runs the write timer.
    @param interval: the longest a record waits before it is written.
    @param batch: write at once when this many records wait.
    @param limit: records kept while the store is behind.

    @ivar written: records written so far.
    @ivar dropped: records dropped because the store fell behind.
    @ivar failed: records whose write failed (logged).
    """

    _log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        *,
        interval: float = 0.1,
        batch: int = 1000,
        limit: int = _MAX_WAITING,
    ) -> None:
        if not interval > 0 or batch < 1 or limit < batch:
            raise ValueError("interval must be > 0, batch >= 1 and limit >= batch")
        self._store = store
        self._clock = clock
        # A store that is down fails every batch (one line per snapshot):
        # a few lines with their tracebacks, then a count per minute.
        self._ratelog = RateLimitedLog(self._log, clock)
        self._interval = interval
        self._batch = batch
        self._limit = limit
        self._sessions: dict[SessionId, SessionStatus] = {}
        self._opened: dict[SessionId, Deferred[None]] = {}
        self._events: list[SessionEvent] = []
        self._traces: list[ApduTrace] = []
        self._timer: IDelayedCall | None = None
        self._writing: Deferred[None] | None = None
        self._stopped = False
        self.written = self.dropped = self.failed = 0

    @property
    def waiting(self) -> int:
        """Records not yet written."""
        return len(self._sessions) + len(self._events) + len(self._traces)

    # -- ISessionRecorder --------------------------------------------------

    def record_opened(self, status: SessionStatus) -> Deferred[None]:
        """Keep C{status} for the next write, and start it soon.

        @return: fires when the write holding this snapshot has committed;
            fails with the store's failure if it did not.
        """
        done: Deferred[None] = Deferred()
        self._opened[status.session_id] = done
        self.record_session(status)
        return done

    def record_session(self, status: SessionStatus) -> None:
        """Keep C{status} as the session's snapshot to write."""
        self._sessions.pop(status.session_id, None)
        self._sessions[status.session_id] = status
        self._added()

    def record_event(self, event: SessionEvent) -> None:
        """Keep C{event} to write."""
        self._events.append(event)
        self._added()

    def record_apdus(self, traces: Sequence[ApduTrace]) -> None:
        """Keep C{traces} to write."""
        self._traces.extend(traces)
        self._added()

    # -- writing -------------------------------------------------------------

    def flush(self) -> Deferred[None]:
        """Write everything waiting now; fires when it is written (never fails)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        previous = self._writing if self._writing is not None else succeed(None)
        done: Deferred[None] = Deferred()
        previous.addBoth(lambda _: self._write().addBoth(lambda _: done.callback(None)))
        self._writing = done

        def finished(_: object) -> None:
            if self._writing is done:
                self._writing = None
                # What arrived during the write waited for it (see _added).
                self._schedule()

        done.addCallback(finished)
        return done

    def stop(self) -> Deferred[None]:
        """Write what waits, then stop the timer; later records are written by L{flush} only."""
        self._stopped = True
        return self.flush().addBoth(lambda _: self._ratelog.flush())

    def _added(self) -> None:
        waiting = len(self._sessions) + len(self._events) + len(self._traces)
        if waiting > self._limit:
            self._shed(waiting - self._limit)
        if self._writing is None:
            # Otherwise the write under way schedules the next when it ends:
            # one pending write at most, however far behind the store is.
            if (
                self._timer is not None
                and waiting < self._batch
                and not self._opened
                and not self._stopped
            ):
                return  # the write is already timed (what _schedule would conclude)
            self._schedule()

    def _schedule(self) -> None:
        waiting = self.waiting
        if self._stopped and self._opened:
            self.flush()  # after stop only a flush writes: one waits for this
            return
        if self._stopped or not waiting:
            return
        if waiting >= self._batch:
            self.flush()
        elif self._opened:
            # Someone waits for this write: start it in this reactor turn's
            # end, so opens of the same turn share it.
            if self._timer is None:
                self._timer = self._clock.callLater(0, self.flush)
            elif self._timer.getTime() > self._clock.seconds():
                self._timer.reset(0)
        elif self._timer is None:
            self._timer = self._clock.callLater(self._interval, self.flush)

    def _shed(self, excess: int) -> None:
        # Traces are the bulkiest and least needed, then events; snapshots last.
        for queue in (self._traces, self._events):
            n = min(excess, len(queue))
            if n:
                del queue[:n]
                excess -= n
                self._count_dropped(n)
        if excess > 0:
            for key in list(self._sessions)[:excess]:
                del self._sessions[key]
                opened = self._opened.pop(key, None)
                if opened is not None:
                    opened.errback(RuntimeError("the store fell behind: the session was dropped"))
            self._count_dropped(excess)

    def _count_dropped(self, n: int) -> None:
        if self.dropped == 0:
            self._log.warn(
                "the store is falling behind: dropping the oldest session history"
                " ({n} records so far)",
                n=n,
            )
        self.dropped += n

    def _write(self) -> Deferred[Any]:
        sessions = [session_record(s) for s in self._sessions.values()]
        events = [event_record(e) for e in self._events]
        traces = [trace_record(t) for t in self._traces]
        opened = list(self._opened.values())
        self._sessions, self._events, self._traces, self._opened = {}, [], [], {}
        if not (sessions or events or traces):
            return succeed(None)
        n = len(sessions) + len(events) + len(traces)
        d: Deferred[None] = maybeDeferred(self._store.write_history, sessions, events, traces)

        def ok(_: object) -> None:
            self.written += n
            for d in opened:
                d.callback(None)

        def failed(failure: Failure) -> None:
            self.failed += n
            for d in opened:
                d.errback(failure)
            self._ratelog.emit(
                "store-write-failed",
                LogLevel.critical,
                "writing {n} session history records to the store failed; they are lost",
                n=n,
                log_failure=failure,
            )

        return d.addCallbacks(ok, failed)
