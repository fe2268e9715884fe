"""The HTTP API's peer-triggered log lines are rate-limited (issue 15)."""

from __future__ import annotations

from typing import Any

from twisted.logger import globalLogPublisher

from tests.unit.web import WebTestCase


class FailureFloodTests(WebTestCase):
    """Whatever a client can make fail is logged a bounded number of times."""

    def test_failingRequestsBoundedLines(self) -> None:
        """200 requests that each end in an unexpected failure give at most a
        burst of tracebacks and one count per minute, not 200 tracebacks."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        # Stands in for any bug a request can reach (today: a non-UTF-8
        # Authorization header); the 500 handler is what is under test.
        self.api.authenticate = self._raising  # type: ignore[method-assign]
        for _ in range(200):
            self.assertEqual(self.call("GET", "/v1/sessions/s1").status, 500)
        self.clock.advance(60)
        failures = [e for e in events if e.get("rate_kind") == "web-request-failed"]
        self.assertLessEqual(len(failures), 6)
        self.assertEqual(sum(e.get("rate_suppressed", 0) for e in failures), 195)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 5)

    async def _raising(self, request: Any) -> Any:
        raise RuntimeError("a bug a client can reach")
