"""The dashboard's live stream (bipgw.web.portal._events): bounded, pushed, ended."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from bipgw.web.portal import PortalSettings, portal_site
from tests.unit.web.portal import PortalTestCase

PEER = IPv4Address("TCP", "198.51.100.91", 42001)


class EventTests(PortalTestCase):
    settings = PortalSettings(max_event_clients=2, idle_timeout=60.0)

    def setUp(self) -> None:
        super().setUp()
        self.site = portal_site(self.portal, self.clock)
        self.cookie = "bipgw_portal=" + self.browser("vic").cookies["bipgw_portal"]

    def stream(self) -> tuple[object, StringTransport]:
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(
            f"GET /events HTTP/1.1\r\nHost: p\r\nCookie: {self.cookie}\r\n\r\n".encode()
        )
        return protocol, transport

    def events(self, transport: StringTransport) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
        found = []
        for block in transport.value().split(b"\r\n\r\n", 1)[1].split(b"\n\n"):
            lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"event" in lines:
                # chunked framing: strip a chunk-size line before the event, if any
                found.append((lines[b"event"].decode(), json.loads(lines[b"data"])))
        return found

    def test_pushedEveryInterval(self) -> None:
        """The numbers at once, then every 2 s."""
        protocol, transport = self.stream()
        self.assertIn(b"Content-Type: text/event-stream", transport.value())
        self.assertEqual(len(self.events(transport)), 1)
        self.registry.get_sample_value("bipgw_sessions_open")
        self.clock.advance(2.0)
        self.clock.advance(2.0)
        events = self.events(transport)
        self.assertEqual([e for e, _ in events], ["numbers"] * 3)
        self.assertEqual(events[-1][1]["sessions_open"], 2.0)
        protocol.connectionLost(Failure(ConnectionLost()))  # type: ignore[attr-defined]
        self.assertEqual(len(self.portal.events), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bounded(self) -> None:
        """One stream more than max_event_clients is refused 503."""
        self.stream()
        self.stream()
        _, third = self.stream()
        self.assertTrue(third.value().startswith(b"HTTP/1.1 503 "), third.value()[:80])
        self.assertEqual(len(self.portal.events), 2)

    def test_expired(self) -> None:
        """When the login expires the stream says so and ends."""
        _, transport = self.stream()
        self.clock.advance(61.0)
        self.assertEqual(self.events(transport)[-1][0], "expired")
        self.assertEqual(len(self.portal.events), 0)

    def test_needsLogin(self) -> None:
        """No cookie, no stream."""
        protocol = self.site.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET /events HTTP/1.1\r\nHost: p\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 303 "))
