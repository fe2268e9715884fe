"""Explicit FTPS on the FTP door: the RFC 4217 commands, and a fuzzer of the control channel.

The control connection is a L{StringTransport} that also takes C{startTLS}
(recorded; the lines after it stay readable), so every state of a session,
before and after C{AUTH TLS}, logged in or not, is reached without sockets.
The real TLS handshakes are in tests/integration/test_feeds_ftps.py.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from bipgw.ingest._ftps import ftps_factory
from tests.unit.ingest.test_ftp import PASSWORD, FtpSessionTests


@implementer(ITLSTransport)
class _TlsStringTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__()
        self.tls: object = None

    def startTLS(self, contextFactory: object, normal: bool = True) -> None:
        self.tls = contextFactory


_REPLY = re.compile(r"\d{3}[ -]")
#: Commands the fuzzer draws from (besides random text); PASV/EPSV listen
#: on a real port, so they are left to the integration tests.
_VERBS = (
    "AUTH", "PBSZ", "PROT", "USER", "PASS", "FEAT", "PORT", "EPRT", "LIST", "NLST",
    "RETR", "STOR", "RNFR", "RNTO", "CWD", "TYPE", "SIZE", "NOOP", "SYST", "CCC",
    "ADAT", "MIC", "DELE", "MKD", "auth", "Prot",
)  # fmt: skip


class FtpsSessionTests(FtpSessionTests):
    """The plain FTP session tests hold with FTPS offered; then the RFC 4217 rules."""

    require_tls = False
    TLS_OPTIONS = object()  # what startTLS is given

    def connect(self) -> tuple[Any, StringTransport]:
        self.clock = Clock()
        factory = ftps_factory(
            self.store,
            self.intake,
            self.TLS_OPTIONS,
            clock=self.clock,
            require_tls=self.require_tls,
        )
        factory.doStart()
        self.addCleanup(factory.doStop)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = _TlsStringTransport()
        protocol.makeConnection(transport)
        self.addCleanup(lambda: protocol.connectionLost(Failure(ConnectionDone())))
        return protocol, transport

    def test_authTlsThenLogin(self) -> None:
        """AUTH TLS answers 234 and starts TLS; then login, PBSZ 0 and PROT P work."""
        protocol, transport = self.connect()
        self.assertTrue(self.say(protocol, transport, "AUTH TLS").startswith("234"))
        self.assertIs(transport.tls, self.TLS_OPTIONS)
        self.assertTrue(self.say(protocol, transport, "AUTH TLS").startswith("503"))
        self.assertTrue(self.say(protocol, transport, "USER vendor").startswith("331"))
        self.assertTrue(self.say(protocol, transport, f"PASS {PASSWORD}").startswith("230"))
        self.assertTrue(self.say(protocol, transport, "PROT P").startswith("503"))  # no PBSZ
        self.assertTrue(self.say(protocol, transport, "PBSZ 0").startswith("200"))
        self.assertTrue(self.say(protocol, transport, "PROT S").startswith("504"))
        self.assertTrue(self.say(protocol, transport, "PROT P").startswith("200"))
        self.assertTrue(self.say(protocol, transport, "PORT 127,0,0,1,4,1").startswith("534"))

    def test_authAfterUserRefused(self) -> None:
        """AUTH comes first: after USER it is refused (503), and other mechanisms (504)."""
        protocol, transport = self.connect()
        self.assertTrue(self.say(protocol, transport, "AUTH GSSAPI").startswith("504"))
        self.say(protocol, transport, "USER vendor")
        self.assertTrue(self.say(protocol, transport, "AUTH TLS").startswith("503"))
        self.assertIsNone(transport.tls)

    def test_quitOverTlsTimesOut(self) -> None:
        """QUIT over TLS closes; a partner that never answers the close is cut after 5 s."""
        protocol, transport = self.connect()
        self.say(protocol, transport, "AUTH TLS")
        self.assertTrue(self.say(protocol, transport, "QUIT").startswith("221"))
        self.assertTrue(transport.disconnecting)
        self.clock.advance(5)
        self.assertIsNone(protocol.wrappedProtocol._closing)

    @settings(
        max_examples=300,
        deadline=None,
        # Run by this class and by RequiredTlsTests (tls required): same test, two settings.
        suppress_health_check=[HealthCheck.differing_executors],
    )
    @given(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(_VERBS), st.text(max_size=40)).map(
                    lambda v: f"{v[0]} {v[1]}"
                ),
                st.sampled_from(_VERBS),
                st.text(max_size=80),
            ),
            max_size=25,
        )
    )
    def test_fuzzControlChannel(self, lines: list[str]) -> None:
        """Random command lines get FTP replies only; nothing raises; the session still answers."""
        protocol, transport = self.connect()
        for line in lines:
            line = line.replace("\r", " ").replace("\n", " ")
            if line.split(" ", 1)[0].upper() in ("PASV", "EPSV"):
                continue
            reply = self.say(protocol, transport, line)
            for answer in reply.splitlines():
                if answer and not answer.startswith(" "):  # FEAT's feature lines
                    self.assertRegex(answer, _REPLY)
            if transport.disconnecting:  # QUIT
                break
        if not transport.disconnecting:
            self.assertTrue(self.say(protocol, transport, "NOOP")[:1] in "25")
        self.assertEqual(self.flushLoggedErrors(), [])


class RequiredTlsTests(FtpsSessionTests):
    """With C{require_tls}: no login, no clear data connection before TLS."""

    require_tls = True

    def say_login(self, protocol: Any, transport: StringTransport) -> None:
        self.say(protocol, transport, "AUTH TLS")
        self.say(protocol, transport, "USER vendor")
        self.say(protocol, transport, f"PASS {PASSWORD}")

    # The plain tests log in without TLS: here that is refused (below).
    test_login = None  # type: ignore[assignment]
    test_changesRefused = None  # type: ignore[assignment]
    test_pathsThatClimbRefused = None  # type: ignore[assignment]
    test_connectionLimit = None  # type: ignore[assignment]
    test_authAfterUserRefused = None  # type: ignore[assignment]  # USER is refused first

    def test_userBeforeAuthRefused(self) -> None:
        """USER before AUTH TLS: 530, and PASS cannot follow."""
        protocol, transport = self.connect()
        reply = self.say(protocol, transport, "USER vendor")
        self.assertTrue(reply.startswith("530"), reply)
        self.assertIn("AUTH TLS", reply)
        self.assertFalse(self.say(protocol, transport, f"PASS {PASSWORD}").startswith("230"))

    def test_clearDataRefused(self) -> None:
        """Logged in over TLS, data connections need PROT P (521); PROT C is refused."""
        protocol, transport = self.connect()
        self.say_login(protocol, transport)
        for line in ("PASV", "EPSV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|"):
            with self.subTest(line=line):
                self.assertTrue(self.say(protocol, transport, line).startswith("521"))
        self.say(protocol, transport, "PBSZ 0")
        self.assertTrue(self.say(protocol, transport, "PROT C").startswith("534"))
