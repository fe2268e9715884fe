"""The access log: refused requests are rate-limited, answered ones all logged (issue 15)."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from bipgw.web import web_site


def _request(code: int) -> DummyRequest:
    request = DummyRequest([b"v1", b"sessions"])
    request.code = code
    request.sentLength = 0
    request.clientproto = b"HTTP/1.1"
    request.uri = b"/v1/sessions"
    return request


class AccessLogTests(SynchronousTestCase):
    def test_refusedRequestsRateLimited(self) -> None:
        """10,000 requests answered 401 give a handful of access-log lines and a count."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        clock = Clock()
        site = web_site(Resource(), max_body=1024, reactor=clock)
        site._logDateTime = "07/Dec/2026:00:00:00 +0000"
        for _ in range(10_000):
            site.log(_request(401))
        clock.advance(60)
        ours = [e for e in events if e.get("rate_kind") == "web-refused-request"]
        self.assertLessEqual(len(ours), 6)
        self.assertEqual(sum(e.get("rate_suppressed", 0) for e in ours), 10_000 - 5)
        self.assertIn('"GET /v1/sessions HTTP/1.1" 401', ours[0]["line"])

    def test_answeredRequestsEachLogged(self) -> None:
        """Every answered request gives one access-log event with its line."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        site = web_site(Resource(), max_body=1024, reactor=Clock())
        site._logDateTime = "07/Dec/2026:00:00:00 +0000"
        for code in (200, 201, 204):
            site.log(_request(code))
        ours = [e for e in events if e.get("log_namespace") == "bipgw.web.access"]
        self.assertEqual(len(ours), 3)
        self.assertIn('"GET /v1/sessions HTTP/1.1" 201', ours[1]["line"])
