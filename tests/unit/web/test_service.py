"""Tests for HttpApiService and the site: listening by endpoint string, body caps, stopping."""

from __future__ import annotations

import json

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.server import Site

from bipgw.web import ApiResource, HttpApiService, api_site
from tests.unit.platform import TOKEN
from tests.unit.web import WebTestCase


class ServiceTests(WebTestCase):
    """The service listens on its endpoint string and closes the API's sessions on stop."""

    def test_listensOnEndpointString(self) -> None:
        """startService listens on the endpoint the string names, with the API's site."""
        reactor = MemoryReactorClock()
        service = HttpApiService(self.api, "tcp:8080:interface=127.0.0.1", reactor)
        service.startService()
        port, factory, _, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (8080, "127.0.0.1"))
        assert isinstance(factory, Site)
        self.assertIsInstance(factory.resource, ApiResource)
        self.assertIsNotNone(service.port)
        self.successResultOf(service.stopService())
        self.assertFalse(service.running)

    def test_stopClosesSessions(self) -> None:
        """Stopping closes every session the API opened; the cards get their 204."""
        reactor = MemoryReactorClock()
        service = HttpApiService(self.api, "tcp:0", reactor)
        service.startService()
        self.ready(1)
        self.ready(2)
        self.successResultOf(service.stopService())
        self.assertEqual([self.fleet.card(n).closes for n in (1, 2)], [1, 1])
        self.assertEqual(self.engine.sessions(), [])


class SiteTests(WebTestCase):
    """The site caps request bodies, also when their length is not announced."""

    def post_chunked(self, size: int) -> bytes:
        protocol = api_site(self.api, self.clock).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        fields = {"service": "demo", "iccid": self.iccid(1)}
        body = json.dumps({**fields, "pad": "x" * size} if size else fields).encode()
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 100]), body[i : i + 100])
            for i in range(0, len(body), 100)
        )
        protocol.dataReceived(
            b"POST /v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        )
        out = transport.value()
        protocol.connectionLost(None)
        return out

    def test_chunkedTooLarge(self) -> None:
        """A chunked body over the limit is answered 413 without being buffered whole."""
        out = self.post_chunked(5000)
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:80])
        self.assertIn(b'"code":"body-too-large"', out)
        self.assertEqual(self.fleet.pushes, [])

    def test_chunkedWithinLimit(self) -> None:
        """A chunked body within the limit is read and served."""
        out = self.post_chunked(0)
        self.assertTrue(out.startswith(b"HTTP/1.1 201 "), out[:200])
        self.call("DELETE", "/v1/sessions/s1")
