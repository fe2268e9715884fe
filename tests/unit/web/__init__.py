"""Tests for bipgw.web: the HTTP API through treq's in-memory client.

Every test drives a real L{SessionEngine} on a L{Clock} whose card directory
and push sender is the platform tests' L{Fleet} of fake cards, so a request
goes through the API, the platform channel's relay, the engine and the TS
102 226 codecs to a card and back.  Cleanup stops the API, lets the clock
run out and checks nothing is left: no timer, no usage count, no session.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from bipgw.core import (
    ALL_INSTRUCTIONS,
    MemorySessionRecorder,
    MemoryTenantDirectory,
    ServiceGrant,
    SessionEngine,
    SessionId,
    SessionPolicy,
    Tenancy,
    TenantGrant,
)
from bipgw.web import ApiSettings, HttpApi, api_resource
from tests.unit.platform import AID, OTHER_TOKEN, POLICY, TAR, TOKEN, Fleet

BASE = "http://gw.example"
SETTINGS = ApiSettings(max_body=1024, ready_wait=30, keepalive=10)


@attrs.frozen
class Answer:
    """An HTTP answer: status, headers (lower-case names) and the decoded JSON body."""

    status: int
    headers: dict[str, str]
    body: Any


class WebTestCase(SynchronousTestCase):
    """An HTTP API on a real engine, a fleet of fake cards and a clock."""

    settings = SETTINGS
    policy: SessionPolicy = POLICY

    def setUp(self) -> None:
        self.clock = Clock()
        self.fleet = Fleet(self.clock, 10)
        self.ids = (SessionId(f"s{n}") for n in itertools.count(1))
        self.engine = SessionEngine(
            self.clock,
            self.fleet,
            self.fleet,
            MemorySessionRecorder(),
            self.policy,
            new_id=lambda: next(self.ids),
        )
        self.fleet.engine = self.engine
        self.tenants = MemoryTenantDirectory()
        self.tenants.add(
            TenantGrant(
                "acme",
                services=[
                    ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS),
                    ServiceGrant("locked", allowed_aids={AID}, allowed_tars={TAR}, max_sessions=2),
                ],
                max_sessions=5,
                max_commands=8,
            ),
            tokens=[TOKEN],
        )
        self.tenants.add(
            TenantGrant("globex", services=[ServiceGrant("demo", isd_commands=ALL_INSTRUCTIONS)]),
            tokens=[OTHER_TOKEN],
        )
        self.hub = Tenancy(self.engine, self.tenants, self.clock)
        self.api = HttpApi(self.hub, self.settings)
        self.stub: Any = StubTreq(api_resource(self.api))
        self.addCleanup(self._settle)

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Deferred[Any]:
        """Start a request; fires with the treq response."""
        hdrs = {"Content-Type": "application/json"} if body is not None or raw else {}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        hdrs.update(headers or {})
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        d: Deferred[Any] = self.stub.request(method, BASE + path, data=data, headers=hdrs)
        self.stub.flush()
        return d

    def answer(self, d: Deferred[Any]) -> Answer:
        """The answer of a finished request."""
        self.stub.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(self.stub.content(response))
        headers = {
            k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()
        }
        return Answer(response.code, headers, json.loads(content) if content else None)

    def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Answer:
        """A request answered at once."""
        return self.answer(self.send(method, path, body, **kwargs))

    def advance(self, seconds: float, step: float = 0.25) -> None:
        """Let C{seconds} pass, moving bytes after every step."""
        self.stub.flush()
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            self.stub.flush()

    def open(self, n: int = 1, service: str = "demo", **extra: Any) -> str:
        """Open a session with card C{n}; its id (201 checked)."""
        answer = self.call(
            "POST", "/v1/sessions", {"iccid": self.iccid(n), "service": service, **extra}
        )
        self.assertEqual(answer.status, 201, answer.body)
        return str(answer.body["session"])

    def ready(self, n: int = 1, **extra: Any) -> str:
        """Open a session with card C{n} and let the card connect."""
        session = self.open(n, **extra)
        self.advance(self.fleet.connect_delay)
        return session

    def iccid(self, n: int) -> str:
        return self.fleet.card(n).record.iccid

    def assertError(self, answer: Answer, status: int, code: str) -> None:
        """The answer is error C{code} with HTTP C{status}."""
        self.assertEqual((answer.status, answer.body["code"]), (status, code), answer.body)
        self.assertIsInstance(answer.body["message"], str)

    def _settle(self) -> None:
        self.successResultOf(self.api.stop())
        self.stub.flush()
        for _ in range(400):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(1)
            self.stub.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.hub.routed, 0)
        for tenant in ("acme", "globex"):
            self.assertEqual(self.hub.usage.sessions(tenant), 0)
            self.assertEqual(self.hub.usage.commands(tenant), 0)
        self.assertEqual(self.engine.sessions(), [])
        self.assertEqual(self.api.streams.count, 0)
