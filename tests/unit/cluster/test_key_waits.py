"""A push waits, at most L{KEYS_WAIT} seconds, for the nodes its card may
answer on to hold the card's keys (L{KeyWaits}, L{KeysReadyPushes})."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cluster import KEYS_WAIT, KeysReadyPushes, KeyWaits
from bipgw.core import PorReport, PushOrder, PushReceipt, SessionId

ICCID = "8988211000000000001"


def _results(d: Deferred[bool]) -> list[bool]:
    out: list[bool] = []
    d.addCallback(out.append)
    return out


class KeyWaitsTests(SynchronousTestCase):
    """The wait logic alone, on a clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.waits = KeyWaits(self.clock)
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def _warned(self) -> list[dict[str, Any]]:
        return [e for e in self.logged if e.get("log_level") is LogLevel.warn]

    def test_boundIsHalfASecond(self) -> None:
        """The default bound is 0.5 s (a push is late by at most that)."""
        self.assertEqual((KEYS_WAIT, self.waits.timeout), (0.5, 0.5))

    def test_noNodes(self) -> None:
        """Nothing to wait for: fires at once, nothing scheduled."""
        self.assertEqual(_results(self.waits.wait(ICCID, [])), [True])
        self.assertEqual((len(self.waits), self.clock.getDelayedCalls()), (0, []))

    def test_everyNodeAnswers(self) -> None:
        """Fires True once each node answered, not before; its timer cancelled."""
        got = _results(self.waits.wait(ICCID, ["b", "c"]))
        self.waits.acked(ICCID, "b")
        self.waits.acked(ICCID, "x")  # not waited for
        self.waits.acked("8988211000000000002", "c")  # another card
        self.assertEqual(got, [])
        self.waits.acked(ICCID, "c")
        self.assertEqual(got, [True])
        self.assertEqual((len(self.waits), self.clock.getDelayedCalls()), (0, []))
        self.waits.acked(ICCID, "c")  # late: ignored
        self.assertEqual(self._warned(), [])

    def test_timeout(self) -> None:
        """A node that does not answer: fires False after the bound (not
        earlier), counted and logged naming the node; a late answer is ignored."""
        got = _results(self.waits.wait(ICCID, ["b", "c"]))
        self.waits.acked(ICCID, "b")
        self.clock.advance(KEYS_WAIT - 0.01)
        self.assertEqual(got, [])
        self.clock.advance(0.01)
        self.assertEqual((got, self.waits.timeouts, len(self.waits)), ([False], 1, 0))
        [warning] = self._warned()
        self.assertEqual((warning["nodes"], warning["iccid"], warning["count"]), ("c", ICCID, 1))
        self.waits.acked(ICCID, "c")
        self.assertEqual(got, [False])

    def test_timeoutsLogRateLimited(self) -> None:
        """Many timeouts: one log line a minute, counting the ones in between."""
        for _ in range(5):
            self.waits.wait(ICCID, ["b"])
            self.clock.advance(KEYS_WAIT)
        self.assertEqual((self.waits.timeouts, len(self._warned())), (5, 1))
        self.clock.advance(60)
        self.waits.wait(ICCID, ["b"])
        self.clock.advance(KEYS_WAIT)
        self.assertEqual([(w["count"], w["total"]) for w in self._warned()], [(1, 1), (5, 6)])

    def test_secondWaitJoinsFirst(self) -> None:
        """A second wait for the same card ends with the first."""
        first = _results(self.waits.wait(ICCID, ["b"]))
        second = _results(self.waits.wait(ICCID, ["b"]))
        self.waits.acked(ICCID, "b")
        self.assertEqual((first, second), ([True], [True]))

    def test_drop(self) -> None:
        """A dropped wait (the prefetch was not sent) fires False at once, unlogged."""
        got = _results(self.waits.wait(ICCID, ["b"]))
        self.waits.drop(ICCID)
        self.assertEqual((got, self.clock.getDelayedCalls(), self._warned()), ([False], [], []))


class _Sender:
    def __init__(self) -> None:
        self.sent: list[PushOrder] = []

    def send_push(self, order: PushOrder) -> Deferred[PushReceipt]:
        self.sent.append(order)
        return succeed(PushReceipt(("1",), 1))

    def verify_por(self, iccid: str, user_data: bytes) -> Deferred[PorReport]:
        return succeed(PorReport(0, 1, b""))


class KeysReadyPushesTests(SynchronousTestCase):
    """The push sender's hook."""

    def setUp(self) -> None:
        self.order = PushOrder(SessionId("s1"), ICCID, "123", 1, "svc")
        self.sender = _Sender()
        self.clock = Clock()
        self.waits = KeyWaits(self.clock)

    def test_nothingToWaitFor(self) -> None:
        """C{ready} answers C{None}: sent at once."""
        KeysReadyPushes(self.sender, lambda _: None).send_push(self.order)
        self.assertEqual(self.sender.sent, [self.order])

    def test_sentOnceReady(self) -> None:
        """The push goes once the nodes answered."""
        pushes = KeysReadyPushes(self.sender, lambda iccid: self.waits.wait(iccid, ["b"]))
        receipts: list[PushReceipt] = []
        pushes.send_push(self.order).addCallback(receipts.append)
        self.assertEqual(self.sender.sent, [])
        self.waits.acked(ICCID, "b")
        self.assertEqual((self.sender.sent, len(receipts)), ([self.order], 1))

    def test_sentAfterTimeout(self) -> None:
        """No answer: the push goes anyway after the bound."""
        pushes = KeysReadyPushes(self.sender, lambda iccid: self.waits.wait(iccid, ["b"]))
        pushes.send_push(self.order)
        self.clock.advance(KEYS_WAIT)
        self.assertEqual(self.sender.sent, [self.order])
