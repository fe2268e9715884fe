"""The batching session recorder: history written behind, in order, bounded."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    ApduTrace,
    CardTarget,
    SessionEvent,
    SessionId,
    SessionState,
    SessionStatus,
)
from bipgw.store import BatchingRecorder, MemoryStore

ICCID = "8988211000000000018"


def status(n: int, state: SessionState = SessionState.REQUESTED, at: float = 0.0) -> SessionStatus:
    """A snapshot of session C{s<n>}."""
    return SessionStatus(
        SessionId(f"s{n}"), "isd", CardTarget.by_iccid(ICCID), state, opened_at=0.0, updated_at=at
    )


def event(n: int, seq: int) -> SessionEvent:
    """Event C{seq} of session C{s<n>}."""
    return SessionEvent(SessionId(f"s{n}"), seq, float(seq), None, SessionState.REQUESTED)


def trace(n: int, index: int) -> ApduTrace:
    """APDU C{index} of script 1 of session C{s<n>}."""
    return ApduTrace(SessionId(f"s{n}"), 1, index, b"\x80\xca\x9f\x7f\x00", b"\x90\x00", 1.0, 2.0)


class _Store(MemoryStore):
    """A memory store that logs each write, and can hold or fail them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self.writes = 0
        self.hold: list[Deferred[None]] = []
        self.holding = False
        self.failing = False

    def _logged(self, write: Deferred[None]) -> Deferred[None]:
        if self.failing:
            return fail(RuntimeError("disk full"))
        if self.holding:
            held: Deferred[None] = Deferred()
            self.hold.append(held)
            return held
        return write

    def write_history(self, sessions: Any, events: Any, traces: Any) -> Deferred[None]:
        # One write, logged as what it holds (one entry per snapshot).
        self.calls.extend(("session", 1) for _ in sessions)
        for name, records in (("events", events), ("traces", traces)):
            if records:
                self.calls.append((name, len(records)))
        self.writes += 1
        return self._logged(super().write_history(sessions, events, traces))


class BatchingRecorderTests(SynchronousTestCase):
    """L{BatchingRecorder} batches, orders and bounds the history it writes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = _Store()
        self.recorder = BatchingRecorder(self.store, self.clock, interval=0.1, batch=10, limit=20)

    def tearDown(self) -> None:
        self.successResultOf(self.recorder.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_writtenAfterInterval(self) -> None:
        """Records wait for the interval, then go in one batch: snapshot, events, traces."""
        self.recorder.record_session(status(1))
        self.recorder.record_event(event(1, 1))
        self.recorder.record_event(event(1, 2))
        self.recorder.record_apdus([trace(1, 0), trace(1, 1)])
        self.assertEqual(self.store.calls, [])
        self.clock.advance(0.1)
        self.assertEqual(self.store.calls, [("session", 1), ("events", 2), ("traces", 2)])
        self.assertEqual(self.store.writes, 1, "one write (one transaction) for the batch")
        self.assertEqual(self.recorder.written, 5)
        events = self.successResultOf(self.store.session_events("s1"))
        self.assertEqual([e.seq for e in events], [1, 2])
        self.assertEqual(len(self.successResultOf(self.store.apdu_traces("s1"))), 2)

    def test_latestSnapshotOnly(self) -> None:
        """Snapshots of one session superseded before a write are not written."""
        self.recorder.record_session(status(1))
        self.recorder.record_session(status(1, SessionState.CLOSED, at=5.0))
        self.clock.advance(0.1)
        self.assertEqual(self.store.calls, [("session", 1)])
        record = self.successResultOf(self.store.get_session("s1"))
        assert record is not None
        self.assertEqual((record.state, record.updated_at), ("closed", 5.0))

    def test_fullBatchWrittenAtOnce(self) -> None:
        """A batch's worth of records is written without waiting for the timer."""
        for seq in range(1, 11):
            self.recorder.record_event(event(1, seq))
        self.assertEqual(self.store.calls, [("events", 10)])

    def test_writesDoNotOverlap(self) -> None:
        """A batch waits for the previous one, so a session's records stay in order."""
        self.store.holding = True
        self.recorder.record_event(event(1, 1))
        first = self.recorder.flush()
        self.recorder.record_session(status(2))
        self.recorder.record_event(event(2, 1))
        second = self.recorder.flush()
        self.assertEqual(self.store.calls, [("events", 1)])
        self.store.holding = False
        self.store.hold.pop().callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual(self.store.calls, [("events", 1), ("session", 1), ("events", 1)])

    def test_oneWriteWaitsBehindSlowStore(self) -> None:
        """Records arriving while a write is under way are written together when
        it ends: a slow store gets bigger batches, not more of them."""
        recorder = BatchingRecorder(self.store, self.clock, interval=0.1, batch=10, limit=1000)
        self.store.holding = True
        recorder.record_event(event(1, 1))
        recorder.flush()
        for seq in range(2, 102):
            recorder.record_event(event(1, seq))
        self.assertEqual(self.store.calls, [("events", 1)])
        self.store.holding = False
        self.store.hold.pop().callback(None)
        self.assertEqual(self.store.calls, [("events", 1), ("events", 100)])
        self.successResultOf(recorder.stop())

    def test_stopWritesWhatWaits(self) -> None:
        """Stopping writes everything waiting and leaves no timer."""
        self.recorder.record_session(status(1))
        self.successResultOf(self.recorder.stop())
        self.assertEqual(self.store.calls, [("session", 1)])
        self.recorder.record_event(event(1, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failedWriteCountedAndLogged(self) -> None:
        """A failed write is logged and counted; later writes go on."""
        self.store.failing = True
        self.recorder.record_event(event(1, 1))
        self.successResultOf(self.recorder.flush())
        self.assertEqual(self.recorder.failed, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.store.failing = False
        self.recorder.record_event(event(1, 2))
        self.successResultOf(self.recorder.flush())
        self.assertEqual(self.recorder.written, 1)

    def test_boundedWhenStoreFallsBehind(self) -> None:
        """While the store is stuck, the oldest traces, then events, are dropped
        beyond the limit; snapshots are kept longest."""
        self.store.holding = True
        self.recorder.record_event(event(9, 1))
        self.recorder.flush()
        for n in range(5):
            self.recorder.record_session(status(n))
        for seq in range(1, 9):
            self.recorder.record_event(event(1, seq))
        self.recorder.record_apdus([trace(1, i) for i in range(12)])
        self.assertEqual(self.recorder.waiting, 20)
        self.assertEqual(self.recorder.dropped, 5)
        self.store.holding = False
        for held in list(self.store.hold):
            held.callback(None)
        self.successResultOf(self.recorder.flush())
        self.assertEqual(len(self.successResultOf(self.store.apdu_traces("s1"))), 7)
        self.assertEqual(len(self.successResultOf(self.store.session_events("s1"))), 8)

    def test_badSettings(self) -> None:
        """Settings that cannot work are refused."""
        self.assertRaises(ValueError, BatchingRecorder, self.store, self.clock, interval=0)
        self.assertRaises(ValueError, BatchingRecorder, self.store, self.clock, batch=0)
        self.assertRaises(ValueError, BatchingRecorder, self.store, self.clock, batch=5, limit=4)


class RecordOpenedTests(SynchronousTestCase):
    """L{BatchingRecorder.record_opened}: a session's opening row, durable by group commit."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = _Store()
        self.recorder = BatchingRecorder(self.store, self.clock, interval=0.1, batch=10, limit=20)

    def tearDown(self) -> None:
        self.store.holding = self.store.failing = False
        for held in self.store.hold:
            held.callback(None)
        self.successResultOf(self.recorder.stop())

    def test_firesWhenCommitted(self) -> None:
        """The Deferred fires once the write holding the row commits, not before."""
        self.store.holding = True
        done = self.recorder.record_opened(status(1))
        self.assertNoResult(done)
        self.clock.advance(0)  # written at once, not after the interval
        self.assertEqual(self.store.writes, 1)
        self.assertNoResult(done)
        self.store.hold.pop().callback(None)
        self.assertIsNone(self.successResultOf(done))
        self.assertIsNotNone(self.successResultOf(self.store.get_session("s1")))

    def test_manyOpensShareOneCommit(self) -> None:
        """Opens of one turn share a write; opens during a write share the next."""
        self.store.holding = True
        first = [self.recorder.record_opened(status(n)) for n in range(3)]
        self.clock.advance(0)
        self.assertEqual(self.store.writes, 1)
        later = [self.recorder.record_opened(status(n)) for n in range(3, 7)]
        self.clock.advance(0)
        self.assertEqual(self.store.writes, 1)  # one write at a time
        self.store.hold.pop().callback(None)
        for d in first:
            self.successResultOf(d)
        for d in later:
            self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.store.writes, 2)
        self.store.hold.pop().callback(None)
        for d in later:
            self.successResultOf(d)
        self.assertEqual(self.store.calls, [("session", 1)] * 7)

    def test_failedWriteFailsTheOpen(self) -> None:
        """A write that fails fails every open in it, with the store's error."""
        self.store.failing = True
        done = self.recorder.record_opened(status(1))
        self.clock.advance(0)
        self.assertEqual(str(self.failureResultOf(done, RuntimeError).value), "disk full")
        self.flushLoggedErrors(RuntimeError)

    def test_afterStop(self) -> None:
        """After stop (no timer), an open is still written at once."""
        self.successResultOf(self.recorder.stop())
        done = self.recorder.record_opened(status(1))
        self.successResultOf(done)
        self.assertEqual(self.store.writes, 1)
