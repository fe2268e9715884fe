"""Tests for L{bipgw.core.RateLimitedLog}: a flood becomes a bounded number of lines."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import RateLimitedLog
from bipgw.core._ratelog import OTHER_KIND


class _Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def texts(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


def _limiter(**kw: Any) -> tuple[RateLimitedLog, _Events, Clock]:
    events = _Events()
    clock = Clock()
    return RateLimitedLog(Logger(observer=events), clock, **kw), events, clock


class RateLimitedLogTests(SynchronousTestCase):
    def test_burstThenCounted(self) -> None:
        """The first C{burst} lines of a kind are logged; the rest are counted."""
        log, events, clock = _limiter(interval=10.0, burst=3)
        logged = [log.warn("bad", "bad thing {n}", n=n) for n in range(10_000)]
        self.assertEqual(logged.count(True), 3)
        self.assertEqual(len(events.events), 3)
        self.assertEqual(log.suppressed_total, 9_997)
        clock.advance(10)
        self.assertEqual(len(events.events), 4)
        summary = events.events[-1]
        self.assertEqual(summary["log_level"], LogLevel.warn)
        self.assertIn("9997 more 'bad' line(s) not logged in the last 10 s", events.texts()[-1])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_newInterval(self) -> None:
        """A new interval logs a new burst."""
        log, events, clock = _limiter(interval=10.0, burst=2)
        for _ in range(5):
            log.info("k", "x")
        clock.advance(10)
        for _ in range(5):
            log.info("k", "x")
        clock.advance(10)
        # 2 + summary, 2 + summary
        self.assertEqual(len(events.events), 6)

    def test_kindsSeparate(self) -> None:
        """Each kind has its own burst."""
        log, events, _clock = _limiter(burst=1)
        for _ in range(3):
            log.warn("a", "a")
            log.warn("b", "b")
        self.assertEqual(events.texts(), ["a", "b"])

    def test_noTimerWithoutSuppression(self) -> None:
        """Quiet kinds leave no timer behind."""
        log, _events, clock = _limiter(burst=5)
        log.warn("a", "a")
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_flush(self) -> None:
        """C{flush} logs the counts now and cancels the timer."""
        log, events, clock = _limiter(burst=1)
        log.warn("a", "a")
        log.warn("a", "a")
        log.flush()
        self.assertEqual(len(events.events), 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_kindsBounded(self) -> None:
        """Past C{max_kinds}, new kinds share one tally."""
        log, events, _clock = _limiter(burst=1, max_kinds=2)
        for n in range(1000):
            log.warn(f"kind{n}", "x")
        self.assertEqual(len(events.events), 3)
        self.assertEqual(events.events[-1]["rate_kind"], OTHER_KIND)

    def test_badArguments(self) -> None:
        """Nonsense limits are refused."""
        self.assertRaises(ValueError, RateLimitedLog, Logger(), Clock(), interval=0)
        self.assertRaises(ValueError, RateLimitedLog, Logger(), Clock(), burst=0)
