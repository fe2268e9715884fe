"""Tests for L{bipgw.cluster._renewal.Renewal}: what a node holds in Redis, renewed together.

The renewing call is the test's own (its Deferreds answered by the test), on
a L{Clock}; the four holders that compose a renewal run on a real Redis in
tests.integration.test_cluster_redis, test_cluster_forwarding and
test_cluster_campaigns.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from bipgw.cluster._renewal import Renewal


class _Calls:
    """The renewing calls made, answered by the test."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[tuple[str, int]], Deferred[Iterable[str] | None]]] = []

    def __call__(self, held: list[tuple[str, int]]) -> Deferred[Iterable[str] | None]:
        d: Deferred[Iterable[str] | None] = Deferred()
        self.calls.append((held, d))
        return d


class RenewalTests(SynchronousTestCase):
    """One timer, one call a round, lost members forgotten, one warning an outage."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.calls = _Calls()
        self.renewal: Renewal[int] = Renewal(
            self.clock, self.calls, every=3.0, ttl=10.0, what="test members"
        )
        self.lost: list[tuple[str, int]] = []
        self.renewal.on_lost = lambda member, value: self.lost.append((member, value))
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def tearDown(self) -> None:
        self.renewal.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_ttlMustExceedEvery(self) -> None:
        """A renewal slower than the members' expiry is refused when built."""
        with self.assertRaises(ValueError):
            Renewal(self.clock, self.calls, every=3.0, ttl=3.0, what="x")
        with self.assertRaises(ValueError):
            Renewal(self.clock, self.calls, every=0, ttl=3.0, what="x")

    def test_roundsRenewEverythingHeldInOneCall(self) -> None:
        """Every C{every} seconds, one call renews every member held, with
        its value, in member order; none is made while nothing is held."""
        self.renewal.start()
        self.clock.advance(3.0)
        self.assertEqual(self.calls.calls, [])
        self.renewal.add("b", 2)
        self.renewal.add("a", 1)
        self.assertEqual((len(self.renewal), "a" in self.renewal), (2, True))
        self.clock.advance(2.9)
        self.assertEqual(self.calls.calls, [])
        self.clock.advance(0.1)
        ((held, d),) = self.calls.calls
        self.assertEqual(held, [("a", 1), ("b", 2)])
        d.callback(None)
        self.assertEqual(dict(self.renewal.held), {"a": 1, "b": 2})
        self.assertEqual(self.renewal.discard("a"), 1)
        self.assertIsNone(self.renewal.discard("a"))
        self.clock.advance(3.0)
        self.assertEqual(self.calls.calls[1][0], [("b", 2)])
        self.calls.calls[1][1].callback(None)

    def test_lostForgottenAndReported(self) -> None:
        """Members the call found lost are forgotten and handed to C{on_lost};
        one released while the call ran is not reported."""
        for n, member in enumerate("abc"):
            self.renewal.add(member, n)
        done = self.renewal.renew()
        ((_, d),) = self.calls.calls
        self.renewal.discard("c")
        d.callback(["a", "c"])
        self.successResultOf(done)
        self.assertEqual(self.lost, [("a", 0)])
        self.assertEqual(dict(self.renewal.held), {"b": 1})

    def test_failuresLoggedOncePerOutage(self) -> None:
        """A failed round keeps the members (they may still be Redis's) and
        warns once however many rounds fail; the first round that goes
        through again says so."""
        self.renewal.add("a", 1)
        self.renewal.start()
        for _ in range(3):
            self.clock.advance(3.0)
            self.calls.calls[-1][1].errback(Failure(ConnectionError("Redis is down")))
        self.assertEqual(self.renewal.failures, 3)
        self.assertEqual(dict(self.renewal.held), {"a": 1})
        warnings = [e for e in self.log if "failed" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(
            (warnings[0]["what"], warnings[0]["why"]), ("test members", "Redis is down")
        )
        self.clock.advance(3.0)
        self.calls.calls[-1][1].callback(None)
        self.assertEqual(len([e for e in self.log if "again" in e["log_format"]]), 1)
        self.clock.advance(3.0)
        self.calls.calls[-1][1].callback([])
        self.assertEqual(len([e for e in self.log if "again" in e["log_format"]]), 1)

    def test_stopEndsTheRounds(self) -> None:
        """After L{Renewal.stop}, no round runs (the members expire in Redis)."""
        self.renewal.add("a", 1)
        self.renewal.start()
        self.assertTrue(self.renewal.running)
        self.renewal.stop()
        self.clock.advance(30.0)
        self.assertEqual((self.calls.calls, self.renewal.running), ([], False))
