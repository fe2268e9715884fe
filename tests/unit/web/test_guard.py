"""Tests for what bounds the HTTP API before and around a request (issue 15).

The real site (L{bipgw.web.api_site}: a L{GuardedSite} of L{GuardedChannel}s
with the API's authentication gate) on a L{StringTransport} and the test's
clock: the token is checked before the body is read, the Authorization header
is read as bytes, partial headers and bodies and idle connections are aborted
in time, one peer cannot take every connection, and an event stream whose
client does not read is dropped before its queue passes its limit.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.core import TenantGrant
from bipgw.web import ApiSettings, api_site
from bipgw.web._guard import GuardedSite
from tests.unit.platform import TOKEN
from tests.unit.web import WebTestCase

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


class Connection:
    """One connection to the API's real site, bytes in and out."""

    def __init__(self, site: GuardedSite, peer: IPv4Address = PEER) -> None:
        self.protocol: Any = site.buildProtocol(peer)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    @property
    def out(self) -> bytes:
        return self.transport.value()

    @property
    def aborted(self) -> bool:
        return bool(self.transport.disconnected)

    def close(self) -> None:
        if not getattr(self, "_closed", False):
            self._closed = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


def post_head(
    path: str, length: int, token: str | None = TOKEN, kind: str = "application/json"
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: gw",
        f"Content-Type: {kind}",
        f"Content-Length: {length}",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()


def status_of(out: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body) if body else {}


class SiteTestCase(WebTestCase):
    """A WebTestCase with the real site on the test's clock."""

    settings = ApiSettings(
        max_body=1024,
        ready_wait=30,
        keepalive=10,
        header_timeout=5,
        body_timeout=7,
        idle_timeout=20,
        max_connections_per_peer=3,
        stream_buffer=4096,
    )

    def setUp(self) -> None:
        super().setUp()
        self.site: GuardedSite = api_site(self.api, self.clock)
        self.connections: list[Connection] = []
        self.addCleanup(self._close_all)

    def connect(self, peer: IPv4Address = PEER) -> Connection:
        connection = Connection(self.site, peer)
        self.connections.append(connection)
        return connection

    def _close_all(self) -> None:
        for connection in self.connections:
            connection.close()


class AuthorizationHeaderTests(WebTestCase):
    """The Authorization header is read as bytes: one, ASCII, a bearer token."""

    def test_notUtf8(self) -> None:
        """A header that is not UTF-8 is a 401, not a 500 with a traceback."""
        answer = self.call(
            "GET",
            "/v1/sessions/s1",
            token=None,
            headers={"Authorization": b"Bearer \xff\xfe"},  # type: ignore[dict-item]
        )
        self.assertError(answer, 401, "auth-failed")
        self.assertIn("not ASCII", answer.body["message"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_twoHeaders(self) -> None:
        """Two Authorization headers are refused, whichever is valid."""
        d = self.stub.request(
            "GET",
            "http://gw.example/v1/sessions/s1",
            headers={"Authorization": [f"Bearer {TOKEN}", "Bearer tok-nobody-000000"]},
        )
        answer = self.answer(d)
        self.assertError(answer, 401, "auth-failed")
        self.assertIn("2 Authorization headers", answer.body["message"])

    def test_tokenTooLong(self) -> None:
        """A token the platform channel could not take is refused before any lookup."""
        answer = self.call("GET", "/v1/sessions/s1", token="x" * 600)
        self.assertError(answer, 401, "auth-failed")


class AuthFirstTests(WebTestCase):
    """Without a valid token every request gets 401 first, whatever its body."""

    def test_malformedJson(self) -> None:
        self.assertError(
            self.call("POST", "/v1/sessions", raw=b"{not json", token=None), 401, "auth-failed"
        )

    def test_wrongMediaType(self) -> None:
        answer = self.call(
            "POST", "/v1/sessions", raw=b"{}", token=None, headers={"Content-Type": "text/plain"}
        )
        self.assertError(answer, 401, "auth-failed")

    def test_largeBody(self) -> None:
        body = {"iccid": self.iccid(1), "service": "demo", "pad": "x" * 2000}
        self.assertError(self.call("POST", "/v1/sessions", body, token=None), 401, "auth-failed")

    def test_commandBody(self) -> None:
        answer = self.call("POST", "/v1/sessions/s1/commands", raw=b"[", token="tok-nobody-000000")
        self.assertError(answer, 401, "auth-failed")


class BodyAfterAuthTests(SiteTestCase):
    """On the real site the token is checked when the headers are in, before the body."""

    def test_refusedBeforeBody(self) -> None:
        """A bad token with a large announced body is answered 401 before a body byte
        is sent; the body that follows is drained, not kept, and the connection closes."""
        connection = self.connect()
        connection.send(post_head("/v1/sessions", 1000, token="tok-nobody-000000"))
        status, body = status_of(connection.out)
        self.assertEqual((status, body["code"]), (401, "auth-failed"))
        self.assertIn(b"Connection: close", connection.out)
        request = connection.protocol.requests[0]
        connection.send(b"x" * 1000)
        self.assertEqual(request.content.tell(), 0)
        self.assertTrue(connection.transport.disconnecting)

    def test_refusedWithoutContinue(self) -> None:
        """A refused request that expects 100-continue gets the 401 alone, no 100 after it."""
        connection = self.connect()
        head = post_head("/v1/sessions", 1000, token=None)
        connection.send(head[:-2] + b"Expect: 100-continue\r\n\r\n")
        self.assertTrue(connection.out.startswith(b"HTTP/1.1 401 "), connection.out[:40])
        self.assertNotIn(b"100 Continue", connection.out)

    def test_noTokenWrongTypeIs401(self) -> None:
        """No token and a body that is not JSON: 401, not 415."""
        connection = self.connect()
        connection.send(post_head("/v1/sessions", 2, token=None, kind="text/plain") + b"{}")
        self.assertEqual(status_of(connection.out)[0], 401)

    def test_bodyWaitsForLookup(self) -> None:
        """While the token is being looked up the connection is not read."""
        pending: Deferred[TenantGrant | None] = Deferred()
        self.patch(self.tenants, "by_token", lambda token: pending)
        connection = self.connect()
        fields = json.dumps({"iccid": self.iccid(1), "service": "demo"}).encode()
        connection.send(post_head("/v1/sessions", len(fields)))
        self.assertEqual(connection.transport.producerState, "paused")
        self.assertEqual(connection.out, b"")
        pending.callback(None)
        self.assertEqual(connection.transport.producerState, "producing")
        self.assertEqual(status_of(connection.out)[0], 401)

    def test_validTokenServed(self) -> None:
        """A valid token: the body is read and the session opened."""
        connection = self.connect()
        fields = json.dumps({"iccid": self.iccid(1), "service": "demo"}).encode()
        connection.send(post_head("/v1/sessions", len(fields)) + fields)
        status, body = status_of(connection.out)
        self.assertEqual(status, 201, body)
        self.call("DELETE", f"/v1/sessions/{body['session']}")

    def test_overLimitAfterAuth(self) -> None:
        """A valid token and a body over the limit: 413, the body not kept past the limit."""
        connection = self.connect()
        connection.send(post_head("/v1/sessions", 5000) + b"x" * 5000)
        self.assertEqual(status_of(connection.out)[0], 413)


class TimeoutTests(SiteTestCase):
    """Partial headers, slow bodies and idle connections are aborted."""

    def test_partialHeaders(self) -> None:
        """Headers sent a byte at a time are cut at header_timeout, however often bytes come."""
        connection = self.connect()
        for byte in b"GET /v1/sessions/s1 HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"a" * 200:
            connection.send(bytes([byte]))
            self.clock.advance(0.1)
            if connection.aborted:
                break
        self.assertTrue(connection.aborted)
        self.assertEqual(self.site.aborted, 1)

    def test_silentConnection(self) -> None:
        """A connection that sends nothing is cut at header_timeout."""
        connection = self.connect()
        self.clock.advance(4.9)
        self.assertFalse(connection.aborted)
        self.clock.advance(0.2)
        self.assertTrue(connection.aborted)

    def test_slowBody(self) -> None:
        """A body that does not arrive within body_timeout of the headers is cut."""
        connection = self.connect()
        connection.send(post_head("/v1/sessions", 500))
        connection.send(b"{")
        self.clock.advance(6)
        self.assertFalse(connection.aborted)
        self.clock.advance(1.5)
        self.assertTrue(connection.aborted)

    def test_idleBetweenRequests(self) -> None:
        """After an answer the connection may idle for idle_timeout, then it is cut."""
        connection = self.connect()
        connection.send(get_request("/v1/openapi.json"))
        self.assertTrue(connection.out.startswith(b"HTTP/1.1 200 "))
        self.clock.advance(19)
        self.assertFalse(connection.aborted)
        self.clock.advance(1.5)
        self.assertTrue(connection.aborted)

    def test_longRequestNotCut(self) -> None:
        """A request being answered (an event stream) is not cut by any timeout."""
        connection = self.connect()
        connection.send(get_request("/v1/events"))
        self.assertTrue(connection.out.startswith(b"HTTP/1.1 200 "))
        self.clock.advance(100)
        self.assertFalse(connection.aborted)
        connection.close()


class PeerLimitTests(SiteTestCase):
    """One peer address holds at most max_connections_per_peer connections."""

    def test_limit(self) -> None:
        held = [self.connect() for _ in range(3)]
        self.assertFalse(any(c.aborted for c in held))
        extra = self.connect()
        self.assertTrue(extra.aborted)
        self.assertEqual(self.site.refused, 1)
        other = self.connect(IPv4Address("TCP", "192.0.2.8", 40000))
        self.assertFalse(other.aborted)
        held[0].close()
        self.assertEqual(self.site.connections(PEER.host), 2)
        self.assertFalse(self.connect().aborted)


class StreamBackpressureTests(SiteTestCase):
    """An event stream whose client does not read is bounded, then dropped."""

    def test_dropAtLimit(self) -> None:
        connection = self.connect()
        connection.send(get_request("/v1/events"))
        self.assertEqual(self.api.streams.count, 1)
        connection.protocol.pauseProducing()  # the transport's buffer is full
        before = len(connection.out)
        for n in range(1, 100):
            if connection.aborted:
                break
            session = self.open(1 + n % 5)
            self.call("DELETE", f"/v1/sessions/{session}")
            self.advance(1)
        self.assertTrue(connection.aborted)
        self.assertEqual(len(connection.out), before)  # nothing written while paused
        connection.close()
        self.assertEqual(self.api.streams.count, 0)

    def test_resumeFlushes(self) -> None:
        """Frames queued while paused are written, in order, when the client reads again."""
        connection = self.connect()
        connection.send(get_request("/v1/events"))
        connection.protocol.pauseProducing()
        before = len(connection.out)
        session = self.open(1)
        self.assertEqual(len(connection.out), before)
        connection.protocol.resumeProducing()
        self.assertIn(session.encode(), connection.out[before:])
        self.assertFalse(connection.aborted)
        self.call("DELETE", f"/v1/sessions/{session}")
        connection.close()


class PipelineTests(SiteTestCase):
    """A pipelined request's partial headers are timed as the first request's are."""

    def test_pipelinedPartialHeaders(self) -> None:
        connection = self.connect()
        connection.send(get_request("/v1/openapi.json") + b"GET /v1/sessions/s1 HTTP/1.1\r\nX: ")
        self.assertTrue(connection.out.startswith(b"HTTP/1.1 200 "))
        for _ in range(60):
            connection.send(b"a")
            self.clock.advance(0.1)
        self.assertTrue(connection.aborted)


class NotUtf8UrlTests(SiteTestCase):
    """A path or Host that is not UTF-8 is refused without a traceback in the log.

    Klein answers such a request 400 and logs a traceback for each one; any
    peer could fill the log (found by tests/unit/web/test_fuzz_site.py).
    """

    def test_path(self) -> None:
        for path in (b"/\x801/openapi.json", b"/v1/sessions/%ff"):
            for token in (b"Authorization: Bearer " + TOKEN.encode() + b"\r\n", b""):
                connection = self.connect()
                connection.send(b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\n" + token + b"\r\n")
                status, body = status_of(connection.out)
                self.assertEqual((status, body["code"]), (404, "not-found"), (path, token))
                self.assertTrue(connection.transport.disconnecting)
                connection.close()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_host(self) -> None:
        connection = self.connect()
        connection.send(b"GET /v1/openapi.json HTTP/1.1\r\nHost: g\xffw\r\n\r\n")
        self.assertEqual(status_of(connection.out)[0], 404)
        self.assertEqual(self.flushLoggedErrors(), [])


class NotUtf8HeaderTests(WebTestCase):
    """A Content-Type that is not UTF-8 is a 415, not a 500 (found by the fuzzer)."""

    def test_contentType(self) -> None:
        answer = self.call(
            "POST",
            "/v1/sessions",
            raw=b"{}",
            headers={"Content-Type": b"\xc4pplication/json"},  # type: ignore[dict-item]
        )
        self.assertError(answer, 415, "unsupported-media-type")
        self.assertEqual(self.flushLoggedErrors(), [])


class ControlByteContentTypeTests(SiteTestCase):
    """A Content-Type with a control byte is a 415; nothing escapes the protocol."""

    def test_fileSeparator(self) -> None:
        connection = self.connect()
        head = post_head("/v1/sessions", 2, kind="\x1cS+lication/json")
        connection.send(head + b"{}")
        status, body = status_of(connection.out)
        self.assertEqual((status, body["code"]), (415, "unsupported-media-type"))
        self.assertEqual(self.flushLoggedErrors(), [])
