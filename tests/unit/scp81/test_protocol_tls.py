"""The admin protocol under real TLS-PSK, in memory (iosim), card and server both OpenSSL.

The server side is exactly what the service builds: L{PskServerOptions}
with a key lookup, L{TLSMemoryBIOFactory} around L{AdminFactory}, the
card's identity read with L{bipgw.tls.psk_identity} after the handshake.
"""

from __future__ import annotations

from twisted.protocols.tls import TLSMemoryBIOFactory

from bipgw.codec.admin_http import AdminRequest
from bipgw.core import FailureReason, SessionState
from bipgw.scp81 import AdminFactory
from bipgw.tls import PskServerOptions, PskServerStats
from tests.unit.core import GET_DATA, ICCID, ICCID2, SW_6A88_ANSWER, EngineTestCase, answer_post
from tests.unit.scp81 import KEY, KEY2, TlsLink


def _first(agent: str = "agent-1") -> AdminRequest:
    return AdminRequest(target="/admin", host="gw.example", admin_from=agent)


class TlsTests(EngineTestCase):
    """Cards authenticate with their PSK; the identity picks the session."""

    def setUp(self) -> None:
        super().setUp()
        self.sender.auto_accept = True
        keys = {ICCID.encode(): KEY, ICCID2.encode(): KEY2}
        self.options = PskServerOptions(keys.get)
        self.factory = AdminFactory(
            self.engine,
            lambda identity: identity.decode() if identity in keys else None,
            clock=self.clock,
        )
        self.tls_factory = TLSMemoryBIOFactory(self.options, False, self.factory, clock=self.clock)

    def link(self, identity: bytes = ICCID.encode(), key: bytes = KEY) -> TlsLink:
        link = TlsLink(self.tls_factory, identity, key, self.clock)
        self.addCleanup(self.closeLink, link)
        return link

    def closeLink(self, link: TlsLink) -> None:
        if link.card.lost is None:
            link.client_tls.transport.abortConnection()
            link.pump.flush()

    def test_sessionOverTls(self) -> None:
        """The whole loop: handshake, identity -> ICCID -> session, script, answer, 204, close."""
        session = self.open()
        link = self.link()
        self.assertTrue(link.card.handshook)
        link.card.post(_first())
        link.pump.flush()
        self.assertEqual(self.successResultOf(session.ready).iccid, ICCID)
        result = session.execute([GET_DATA])
        link.pump.flush()
        (script,) = link.card.responses
        self.assertEqual((script.status, script.next_uri), (200, "/admin/s/s1/1"))
        self.assertEqual(script.body.hex(), "ae80220580ca0085000000")
        link.card.post(answer_post(script.next_uri or "", SW_6A88_ANSWER), chunked=True)
        link.pump.flush()
        self.assertEqual(self.successResultOf(result).responses, (b"\x6a\x88",))
        closing = session.close()
        link.pump.flush()
        self.assertEqual([r.status for r in link.card.responses], [200, 204])
        self.assertIsNotNone(link.card.lost)
        self.assertIs(self.successResultOf(closing).state, SessionState.CLOSED)
        self.assertEqual(self.options.stats, PskServerStats(completed=1))
        self.assertEqual(self.factory.stats.requests, 2)

    def test_unknownIdentityRefused(self) -> None:
        """An identity the key lookup does not know never completes TLS; counted."""
        session = self.open()
        link = self.link(b"8988211000000000999", KEY)
        self.assertFalse(link.card.handshook)
        self.assertIsNotNone(link.card.lost)
        self.assertEqual(self.options.stats, PskServerStats(unknown_identity=1))
        self.assertEqual(self.factory.stats.requests, 0)
        self.assertIs(session.status().state, SessionState.AWAITING_CARD)

    def test_wrongKeyRefused(self) -> None:
        """A card with the wrong key fails the handshake; the mismatch is counted
        and its session keeps waiting."""
        session = self.open()
        link = self.link(ICCID.encode(), KEY2)
        self.assertFalse(link.card.handshook)
        self.assertEqual(self.options.stats, PskServerStats(key_mismatch=1))
        self.assertEqual(self.factory.connections, set())
        self.assertIs(session.status().state, SessionState.AWAITING_CARD)

    def test_twoCardsConcurrently(self) -> None:
        """Two cards at once each reach their own session; one card's garbage
        closes only its own connection."""
        first, second = self.open(ICCID), self.open(ICCID2)
        one = self.link(ICCID.encode(), KEY)
        two = self.link(ICCID2.encode(), KEY2)
        two.card.post(_first("two"))
        one.card.post(_first("one"))
        one.pump.flush()
        two.pump.flush()
        self.assertEqual(self.successResultOf(first.ready).agent_id, "one")
        self.assertEqual(self.successResultOf(second.ready).agent_id, "two")
        result = second.execute([GET_DATA])
        two.pump.flush()
        one.pump.flush()
        self.assertEqual(one.card.responses, [])
        self.assertEqual(two.card.responses[0].next_uri, "/admin/s/s2/1")
        one.card.send(b"POST /admin HTTP/1.0\r\n\r\n")
        one.pump.flush()
        self.assertEqual([r.status for r in one.card.responses], [505])
        self.assertIsNotNone(one.card.lost)
        self.assertIs(first.status().reason, FailureReason.CARD_DROPPED)
        two.card.post(answer_post("/admin/s/s2/1"))
        two.pump.flush()
        self.assertEqual(self.successResultOf(result).script, 1)
        self.assertIs(second.status().state, SessionState.CONNECTED)
        self.assertEqual(self.options.stats.completed, 2)
        self.engine.stop()
        two.pump.flush()
        self.assertEqual(two.card.responses[-1].status, 204)
