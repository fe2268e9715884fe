"""The engine's sessions and a card another node holds (L{bipgw.core.CardClaims})."""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    BusyPolicy,
    CardRecord,
    CardTarget,
    FailureReason,
    LocalCardLocks,
    PushReceipt,
    SessionEngine,
    SessionPolicy,
    SessionState,
)

ICCID = "8988211000000000001"


class _Locks:
    """An L{ICardLocks} whose answers the test sets: C{held_elsewhere}."""

    def __init__(self) -> None:
        self.held_elsewhere = False
        self.broken = False
        self.calls: list[tuple[str, str]] = []

    def acquire(self, iccid: str) -> Deferred[bool]:
        self.calls.append(("acquire", iccid))
        if self.broken:
            return fail(ConnectionError("redis gone"))
        return succeed(not self.held_elsewhere)

    def release(self, iccid: str) -> None:
        self.calls.append(("release", iccid))


class _Pushes:
    def __init__(self) -> None:
        self.orders: list[object] = []

    def send_push(self, order: object) -> Deferred[PushReceipt]:
        self.orders.append(order)
        return Deferred()

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[object]:
        return Deferred()


class _Directory:
    def resolve(self, target: CardTarget) -> Deferred[CardRecord | None]:
        return succeed(CardRecord(iccid=ICCID, msisdn="33600000001", psk_identity=b"id-1"))


class CardClaimsTests(SynchronousTestCase):
    """A session starts only once its card's lock beyond the engine is taken."""

    def _engine(self, busy: BusyPolicy = BusyPolicy.QUEUE) -> SessionEngine:
        self.clock = Clock()
        self.locks = _Locks()
        self.pushes = _Pushes()
        policy = SessionPolicy(busy_policy=busy, queue_timeout=10.0)
        return SessionEngine(
            self.clock, self.pushes, _Directory(), policy=policy, card_locks=self.locks
        )

    def test_localLocksGrantAtOnce(self) -> None:
        """Alone, a lock is granted within the call (an already-fired Deferred)."""
        self.assertTrue(self.successResultOf(LocalCardLocks().acquire(ICCID)))
        LocalCardLocks().release(ICCID)

    def test_grantedStartsAndEndReleases(self) -> None:
        """A granted card is pushed at once; the session's end releases it."""
        engine = self._engine()
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        session.ready.addErrback(lambda _: None)  # cancelled by the close
        self.assertEqual(len(self.pushes.orders), 1)
        engine.close(session.id)
        self.assertEqual(self.locks.calls, [("acquire", ICCID), ("release", ICCID)])

    def test_heldElsewhereRefused(self) -> None:
        """Under the refuse policy a card another node holds fails the session
        with card-busy, naming the other node."""
        engine = self._engine(BusyPolicy.REFUSE)
        self.locks.held_elsewhere = True
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        error = self.failureResultOf(session.ready).value
        self.assertEqual(error.reason, FailureReason.CARD_BUSY)
        self.assertIn("another node", error.detail)
        self.assertEqual(self.pushes.orders, [])

    def test_heldElsewhereWaitsThenStarts(self) -> None:
        """Under the queue policy the card is tried again every second and the
        session starts once the other node let it go."""
        engine = self._engine()
        self.locks.held_elsewhere = True
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        self.clock.pump([1, 1, 1])
        self.assertEqual(self.pushes.orders, [])
        self.assertEqual(self.locks.calls.count(("acquire", ICCID)), 4)
        self.locks.held_elsewhere = False
        self.clock.advance(1)
        self.assertEqual(len(self.pushes.orders), 1)
        self.assertEqual(session.status().state, SessionState.PUSHING)
        session.ready.addErrback(lambda _: None)  # failed by the stop
        engine.stop()

    def test_heldElsewhereTimesOut(self) -> None:
        """A card held elsewhere past the queue timeout fails the session with
        queue-timeout, and no try is left behind."""
        engine = self._engine()
        self.locks.held_elsewhere = True
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        self.clock.pump([1] * 11)
        error = self.failureResultOf(session.ready).value
        self.assertEqual(error.reason, FailureReason.QUEUE_TIMEOUT)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(engine.sessions(), [])

    def test_locksUnreachable(self) -> None:
        """Locks that cannot be reached fail the session with directory-error,
        saying why."""
        engine = self._engine()
        self.locks.broken = True
        session = engine.open(CardTarget.by_iccid(ICCID), "isd")
        error = self.failureResultOf(session.ready).value
        self.assertEqual(error.reason, FailureReason.DIRECTORY_ERROR)
        self.assertIn("redis gone", error.detail)
        self.flushLoggedErrors(ConnectionError)
