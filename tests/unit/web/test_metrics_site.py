"""The metrics listener's site: /healthz, /readyz, the bearer token, and a stream fuzzer.

The real site (L{bipgw.web.metrics_site}: the guarded channels, the body
cap, the token check) over a StringTransport on a Clock.  C{/metrics} itself
is prometheus_client's WSGI resource, which renders in the reactor's thread
pool: it is served over a real socket in
C{tests/integration/test_metrics_e2e.py}; here it is the registry rendered
by prometheus_client's C{generate_latest} in a static resource, so every
request is answered synchronously.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, generate_latest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.static import Data

from bipgw.web import metrics_site
from bipgw.web._guard import GuardedSite
from tests.unit.web.test_fuzz_site import parse_responses

PEER = IPv4Address("TCP", "127.0.0.1", 41000)
TOKEN = "metrics-token-0123456789abcdef"


class FakeReadiness:
    """Answers what the test sets; C{broken} makes the checks fail outright."""

    def __init__(self) -> None:
        self.checks: dict[str, str | None] = {"store": None, "smpp": None, "listeners": None}
        self.broken = False

    def readiness(self) -> Deferred[Mapping[str, str | None]]:
        if self.broken:
            return fail(RuntimeError("checks broke"))
        return succeed(dict(self.checks))


def _request(path: str, token: str | None = None, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gw"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class MetricsSiteTestCase(SynchronousTestCase):
    token: str | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = CollectorRegistry()
        Counter("bipgw_session_setups", "test", registry=self.registry).inc(3)
        self.readiness = FakeReadiness()
        exposition = Data(generate_latest(self.registry), "text/plain; version=0.0.4")
        self.site: GuardedSite = metrics_site(
            self.registry, self.readiness, token=self.token, reactor=self.clock, metrics=exposition
        )

    def exchange(self, data: bytes) -> tuple[list[tuple[int, dict[bytes, bytes], bytes]], bool]:
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        responses, cut = parse_responses(transport.value(), head=b"HEAD" in data)
        protocol.connectionLost(Failure(ConnectionLost("done")))
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(30)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        return responses, cut

    def get(self, path: str, token: str | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
        (response,), _ = self.exchange(_request(path, token))
        return response


class OpenSiteTests(MetricsSiteTestCase):
    """Without a token (a loopback listener)."""

    def test_healthz(self) -> None:
        """/healthz says the process is alive."""
        code, headers, body = self.get("/healthz")
        self.assertEqual((code, json.loads(body)), (200, {"status": "alive"}))
        self.assertEqual(headers[b"content-type"], b"application/json")

    def test_readyWhenEveryCheckPasses(self) -> None:
        """/readyz is 200 with every check ok."""
        code, _, body = self.get("/readyz")
        self.assertEqual(code, 200)
        self.assertEqual(
            json.loads(body),
            {"ready": True, "checks": {"store": "ok", "smpp": "ok", "listeners": "ok"}},
        )

    def test_notReadyNamesWhat(self) -> None:
        """/readyz is 503 naming each check that fails, and why."""
        self.readiness.checks["smpp"] = "not bound to the SMSC"
        code, _, body = self.get("/readyz")
        self.assertEqual(code, 503)
        answer = json.loads(body)
        self.assertEqual(answer["not_ready"], ["smpp"])
        self.assertEqual(answer["checks"]["smpp"], "not bound to the SMSC")
        self.assertEqual(answer["checks"]["store"], "ok")

    def test_brokenChecksAreNotReady(self) -> None:
        """Checks that cannot be made are a 503, logged once."""
        self.readiness.broken = True
        code, _, body = self.get("/readyz")
        self.assertEqual((code, json.loads(body)["ready"]), (503, False))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_metrics(self) -> None:
        """/metrics serves the exposition."""
        code, _, body = self.get("/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"bipgw_session_setups_total 3.0", body)

    def test_otherMethods(self) -> None:
        """GET and HEAD only: anything else is a JSON 405 saying which are allowed."""
        for path in ("/healthz", "/readyz", "/metrics"):
            (response,), _ = self.exchange(_request(path, method="POST"))
            code, headers, body = response
            self.assertEqual((code, json.loads(body)["error"]), (405, "method-not-allowed"))
            self.assertEqual(headers[b"allow"], b"GET, HEAD")

    def test_unknownPath(self) -> None:
        """Anything else is a JSON 404."""
        for path in ("/", "/nowhere", "/healthz/deeper", "/metrics/x"):
            code, _, body = self.get(path)
            self.assertEqual((code, json.loads(body)["error"]), (404, "not-found"), path)


class TokenSiteTests(MetricsSiteTestCase):
    """With [metrics] token_file: every path needs the bearer token."""

    token = TOKEN

    def test_refusedWithoutToken(self) -> None:
        """No token, a wrong one, another scheme: 401, nothing served."""
        for token in (None, "wrong-token-0000000000", TOKEN + "x", TOKEN[:-1]):
            for path in ("/metrics", "/healthz", "/readyz", "/", "/nowhere"):
                code, headers, body = self.get(path, token)
                self.assertEqual(code, 401, (path, token))
                self.assertEqual(headers[b"www-authenticate"], b'Bearer realm="bipgw-metrics"')
                self.assertNotIn(b"bipgw_", body)

    def test_servedWithToken(self) -> None:
        """The right token reaches every resource."""
        self.assertEqual(self.get("/metrics", TOKEN)[0], 200)
        self.assertEqual(self.get("/healthz", TOKEN)[0], 200)
        self.assertEqual(self.get("/readyz", TOKEN)[0], 200)
        self.assertEqual(self.get("/", TOKEN)[0], 404)


paths = st.sampled_from(["/metrics", "/healthz", "/readyz", "/", "/x", "/metrics/../readyz"])
tokens = st.sampled_from([TOKEN, None, "nope", TOKEN + "\x00"])
valid = st.builds(_request, paths, tokens, st.sampled_from(["GET", "HEAD", "POST", "DELETE"]))


def _mutate(data: bytes, where: int, what: bytes, kind: int) -> bytes:
    i = where % (len(data) or 1)
    if kind == 0:
        return data[:i] + what + data[i + len(what) :]
    if kind == 1:
        return data[:i]
    return data[:i] + what + data[i:]


pieces = st.one_of(
    valid,
    valid,
    st.binary(max_size=64),
    st.builds(
        lambda n: _request("/metrics", TOKEN)[:-2] + b"X-Big: " + b"a" * n + b"\r\n\r\n",
        st.integers(1_000, 40_000),
    ),
    st.builds(
        lambda n: (
            _request("/readyz", TOKEN, "POST")[:-2]
            + f"Content-Length: {n}\r\n\r\n".encode()
            + b"x" * min(n, 5000)
        ),
        st.integers(0, 10**9),
    ),
    st.builds(
        _mutate,
        valid,
        st.integers(0, 200),
        st.sampled_from([b"\x00", b"\xff", b"\r\n", b"\n", b" ", b":", b"\r\n\r\n"])
        | st.binary(min_size=1, max_size=4),
        st.integers(0, 2),
    ),
)


class FuzzTests(MetricsSiteTestCase):
    """Random and mutated request streams get HTTP answers only, and leave nothing behind."""

    token = TOKEN

    @settings(max_examples=150, deadline=None)
    @given(st.lists(pieces, min_size=1, max_size=8), st.lists(st.integers(0, 60_000), max_size=6))
    def test_stream(self, parts: list[bytes], cuts: list[int]) -> None:
        stream = b"".join(parts)
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        start = 0
        for point in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
            if transport.disconnecting:
                break
            protocol.dataReceived(stream[start:point])
            start = max(start, point)
        written = transport.value()
        requests = stream.count(b"HTTP/1") + 1
        responses, _cut = parse_responses(written, head=b"HEAD" in stream)
        self.assertLessEqual(len(responses), 2 * requests)
        self.assertLessEqual(len(written), requests * 8192)
        for code, _headers, body in responses:
            self.assertTrue(100 <= code < 600)
            if code == 200 and b"bipgw_session_setups" in body:
                # the exposition only ever goes to a request carrying the token
                self.assertIn(f"Bearer {TOKEN}\r\n".encode(), stream)
        protocol.connectionLost(Failure(ConnectionLost("fuzzed")))
        for _ in range(100):
            if not self.clock.getDelayedCalls():
                break
            self.clock.advance(30)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(self.site.connections(PEER.host), 0)
        # the listener is still up: a fresh connection is served
        self.assertEqual(self.get("/healthz", TOKEN)[0], 200)
