"""Flow-control pieces on a Clock: the rate cap, the backoff and the window."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.smpp import Backoff, SubmitWindow, TokenBucket


class TokenBucketTests(SynchronousTestCase):
    """The rate cap."""

    def test_spacingWithoutBurst(self) -> None:
        """At 4/s with burst 1, a token is free every 0.25 s and not before."""
        clock = Clock()
        bucket = TokenBucket(clock, 4.0)
        self.assertTrue(bucket.take())
        self.assertFalse(bucket.take())
        self.assertAlmostEqual(bucket.delay(), 0.25)
        clock.advance(0.2)
        self.assertAlmostEqual(bucket.delay(), 0.05)
        self.assertFalse(bucket.take())
        clock.advance(0.05)
        self.assertEqual(bucket.delay(), 0.0)
        self.assertTrue(bucket.take())

    def test_burstThenRate(self) -> None:
        """A full bucket of 3 lets 3 go at once; idle time refills it, never beyond 3."""
        clock = Clock()
        bucket = TokenBucket(clock, 1.0, burst=3)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])
        clock.advance(100)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])

    def test_invalid(self) -> None:
        """A rate of 0 or a burst below 1 is refused."""
        self.assertRaises(ValueError, TokenBucket, Clock(), 0)
        self.assertRaises(ValueError, TokenBucket, Clock(), 1, burst=0.5)

    @given(
        st.floats(min_value=0.5, max_value=50),
        st.integers(min_value=1, max_value=5),
        st.lists(st.floats(min_value=0, max_value=2), max_size=60),
    )
    def test_neverAboveTheCap(self, rate: float, burst: int, steps: list[float]) -> None:
        """Taking greedily at any instants never exceeds burst + rate * elapsed."""
        clock = Clock()
        bucket = TokenBucket(clock, rate, burst=burst)
        taken = 0
        for step in steps:
            clock.advance(step)
            while bucket.take():
                taken += 1
            self.assertLessEqual(taken, burst + rate * clock.seconds() + 1e-6)
            self.assertGreater(bucket.delay(), 0)


class BackoffTests(SynchronousTestCase):
    """The throttling pause."""

    def test_growsToTheCapAndResets(self) -> None:
        """Delays double up to the maximum; a success starts again from the initial delay."""
        backoff = Backoff(1.0, 10.0, 2.0)
        self.assertEqual([backoff.next_delay() for _ in range(6)], [1, 2, 4, 8, 10, 10])
        self.assertEqual(backoff.failures, 6)
        backoff.reset()
        self.assertEqual(backoff.next_delay(), 1.0)

    def test_hugeFailureCountStaysAtTheCap(self) -> None:
        """A very long run of failures neither overflows nor exceeds the maximum."""
        backoff = Backoff(1.0, 60.0, 10.0)
        backoff.failures = 10**6
        self.assertEqual(backoff.peek(), 60.0)

    def test_invalid(self) -> None:
        """The initial delay must be positive and not above the maximum."""
        self.assertRaises(ValueError, Backoff, 0, 1)
        self.assertRaises(ValueError, Backoff, 2, 1)
        self.assertRaises(ValueError, Backoff, 1, 2, 0.5)


class SubmitWindowTests(SynchronousTestCase):
    """Outstanding requests and their deadlines."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[tuple[int, str]] = []
        self.window: SubmitWindow[str] = SubmitWindow(
            self.clock, 2, 10.0, lambda seq, item: self.expired.append((seq, item))
        )
        self.addCleanup(lambda: self.assertEqual(self.clock.getDelayedCalls(), []))

    def test_roomAndMatching(self) -> None:
        """Two fit; a response frees its slot and cancels its deadline."""
        self.window.add(1, "a")
        self.window.add(2, "b")
        self.assertFalse(self.window.has_room)
        self.assertRaises(ValueError, self.window.add, 3, "c")
        self.assertEqual(self.window.pop(2), "b")
        self.assertIsNone(self.window.pop(2))
        self.assertTrue(self.window.has_room)
        self.assertRaises(ValueError, self.window.add, 1, "again")
        self.assertEqual(self.window.drain(), ["a"])

    def test_deadline(self) -> None:
        """A request unanswered for the timeout is reported and leaves the window."""
        self.window.add(1, "a")
        self.clock.advance(5)
        self.window.add(2, "b")
        self.clock.advance(5)
        self.assertEqual(self.expired, [(1, "a")])
        self.assertNotIn(1, self.window)
        self.assertEqual(list(self.window), ["b"])
        self.clock.advance(5)
        self.assertEqual(self.expired, [(1, "a"), (2, "b")])

    def test_drainKeepsSendOrder(self) -> None:
        """drain returns what is outstanding in the order it was sent."""
        self.window.add(9, "first")
        self.window.add(3, "second")
        self.assertEqual(self.window.drain(), ["first", "second"])
        self.assertEqual(len(self.window), 0)
